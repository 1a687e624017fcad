"""A peer cannot harm a host: the file and guest attacks against libvirt, on the lab.

Real libvirtd on both hosts. A hostile source (a client holding host-a's
valid agent certificate, on the management plane) drives host-b's real agent;
a hostile destination (host-b's driver wrapped to lie in its answers) drives
host-a's driver through a real migration. Sentinel guests (one running, one
shut off) and sentinel files (inside and outside the storage root) must
survive every attack. The pure checks are in
``tests/unit/agent/test_agent_hostile_peers.py`` (fake driver).
"""

import json
import sys

import pytest

from migplane import testing as testing_mod
from migplane.core import flow
from migplane.core import loader
from migplane.lab import agents as agents_mod
from migplane.lab import guest

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

IMAGES = "/var/lib/libvirt/images"
OUTSIDE = "/var/lib/libvirt/hostile-sentinel.txt"   # private per lab host

#: Run on the lab's controller: each call as the agent holding (cert, key).
CALLS = r"""
import json, sys
import requests
url, cert, key, ca = sys.argv[1:5]
out = []
for method, path, body in json.loads(sys.stdin.read()):
    r = requests.request(method, url + path, json=body, cert=(cert, key), verify=ca,
                         timeout=120)
    out.append([r.status_code, r.text[:400]])
print(json.dumps(out))
"""


def _as_peer(lab, agents, caller, target, calls):
    cert, key = agents.cert(caller)
    done = lab.run_controller([sys.executable, "-c", CALLS, agents.url(target), str(cert),
                               str(key), agents.ca_file], input=json.dumps(calls),
                              env=agents_mod.agent_env(), timeout=300)
    return json.loads(done.stdout)


def _data(block=False, **driver_data):
    return {"migplane.name": "MigrateData", "migplane.version": "1.0",
            "migplane.data": {"dest_hostname": "host-b", "block_migration": block,
                              "driver_data": driver_data}}


def _disk(path, capacity=1 << 20):
    return {"target": "vda", "path": path, "format": "qcow2", "kind": "file",
            "capacity": capacity}


def _state(host, name):
    conn = libvirt.open(host.uri)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        return dom.state()[0], dom.UUIDString()
    finally:
        conn.close()


@pytest.fixture
def sentinels(lab):
    """On each host: a running guest, a shut-off one, an image in the storage root
    and a file outside it; removed afterwards."""
    kernel = lab.build_guest()
    made = []
    for host in lab.hosts:
        for name, start in (("hp-run-" + host.name[-1], True),
                            ("hp-off-" + host.name[-1], False)):
            guest.define_guest(host, name, kernel, start=start, memory_mib=32,
                               cmdline=guest.cmdline(tick_ms=500))
            made.append((host, name))
        guest.create_disk(host, "hp-disk-" + host.name[-1], size_mib=1)
        host.host_path(OUTSIDE).write_text("sentinel\n")
    yield
    for host, name in made:
        guest.destroy_guest(host, name)
    for host in lab.hosts:
        host.run(["rm", "-f", OUTSIDE, "%s/hp-disk-%s.qcow2" % (IMAGES, host.name[-1]),
                  "%s/hp-huge.qcow2" % IMAGES], check=False)


def _intact(lab):
    for host in lab.hosts:
        tag = host.name[-1]
        assert _state(host, "hp-run-" + tag)[0] == libvirt.VIR_DOMAIN_RUNNING, host.name
        assert _state(host, "hp-off-" + tag)[0] == libvirt.VIR_DOMAIN_SHUTOFF, host.name
        assert host.host_path("%s/hp-disk-%s.qcow2" % (IMAGES, tag)).exists(), host.name
        assert host.host_path(OUTSIDE).read_text() == "sentinel\n", host.name


def test_a_hostile_source_cannot_touch_the_destinations_guests_or_files(lab, lab_agents,
                                                                        sentinels):
    a, b = lab.hosts
    run_uuid = _state(b, "hp-run-b")[1]
    step = "/v1/steps/%s"

    def slot(mid, instance):
        return ["POST", "/v1/slots", {"migration_id": mid, "source": "host-a",
                                      "instance": instance}]

    def call(name, mid, instance, data):
        return ["POST", step % name, {"migration_id": mid, "instance": instance,
                                      "migrate_data": data}]

    answers = _as_peer(lab, lab_agents, a, b, [
        slot("hp1", "hp-run-b"),                                   # 0: its running guest
        slot("hp2", "hp-off-b"),                                   # 1: its shut-off one
        slot("hp3", "hp-evil"),                                    # 2: a new name: granted
        call("pre_live_migration", "hp3", "hp-evil",               # 3: a file outside
             _data(True, disks=[_disk(OUTSIDE)])),
        call("pre_live_migration", "hp3", "hp-evil",               # 4: another's image
             _data(True, disks=[_disk("%s/hp-disk-b.qcow2" % IMAGES)])),
        call("pre_live_migration", "hp3", "hp-evil",               # 5: 1 PiB sparse file
             _data(True, disks=[_disk("%s/hp-huge.qcow2" % IMAGES, 1 << 50)])),
        call("pre_live_migration", "hp3", "hp-evil",               # 6: a way out of the root
             _data(True, disks=[_disk("%s/../hostile-sentinel.txt" % IMAGES)])),
        call("pre_live_migration", "hp3", "hp-evil",               # 7: another's UUID
             _data(uuid=run_uuid)),
        call("rollback_live_migration_at_destination", "hp3", "hp-evil",  # 8: "undo" them
             _data(True, created_disks=[OUTSIDE, "%s/hp-disk-b.qcow2" % IMAGES],
                   incoming={"uuid": run_uuid})),
        call("rollback_live_migration_at_destination", "hp3", "hp-run-b",  # 9: not its slot
             _data()),
        ["DELETE", "/v1/slots/hp3", None],
        slot("hp3", "hp-evil"),                                    # 11: a used id
    ])
    statuses = [status for status, _ in answers]
    assert statuses == [409, 409, 201, 409, 409, 409, 409, 409, 200, 403, 200, 409], answers
    assert "storage_root" in answers[3][1] and "already exists" in answers[4][1]
    assert "bytes" in answers[5][1] and "storage_root" in answers[6][1]
    assert not b.host_path("%s/hp-huge.qcow2" % IMAGES).exists()
    _intact(lab)


def _driver(host, my_ip=None):
    from migplane.drivers.libvirt import opts

    conf = testing_mod.host_conf(host.name, my_ip, poll_interval=0.1, strategy="static")
    opts.register_opts(conf)
    conf.set_override("connection_uri", host.uri, group=opts.GROUP)
    conf.set_override("netns", host.netns, group=opts.GROUP)
    return loader.load_driver(conf, "libvirt")


class LyingDestination:
    """host-b's driver, answering pre_live_migration as a hostile agent did: a block
    migration with images 'created' that are host-a's sentinel files."""

    def __init__(self, driver, claimed):
        self._driver = driver
        self._claimed = claimed

    def __getattr__(self, name):
        return getattr(self._driver, name)

    def pre_live_migration(self, instance, migrate_data):
        data = self._driver.pre_live_migration(instance, migrate_data)
        return data.replace(block_migration=True, driver_data=dict(
            data.driver_data, created_disks=self._claimed))


def test_a_hostile_destination_cannot_make_the_source_delete_files(lab, sentinels):
    a, b = lab.hosts
    name = "hp-moving"
    claimed = ["%s/hp-disk-a.qcow2" % IMAGES, OUTSIDE]
    src, dst = _driver(a), _driver(b, b.mig_ip)
    guest.define_guest(a, name, lab.build_guest(), memory_mib=32,
                       cmdline=guest.cmdline(tick_ms=500))
    try:
        result = flow.LiveMigration(name, src, LyingDestination(dst, claimed),
                                    src.settings.migration).run()
        assert result.status == flow.COMPLETED
        assert _state(b, name)[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        for host in lab.hosts:
            guest.destroy_guest(host, name)
        src.close()
        dst.close()
    _intact(lab)
