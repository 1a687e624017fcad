"""A rolling upgrade: agents speaking adjacent wire versions migrate on the lab.

host-b's agent stands for the previous release: it is pinned
(``MIGPLANE_WIRE_PINS``) to ``MigrateData`` 1.0, the version before the split
migration plane, so it sends no inbound address, whatever its configuration,
and to the previous versions of its bodies (``HostFacts`` 1.0, without the
body versions it speaks). host-a's agent is the current release. Both
directions must work: to the older agent exactly as before the split plane
(legacy: management plane), and from it to the newer one. The first
migration is started by a CLI of the release before versioned bodies (plain
request bodies, ``envelopes=off``), the second by the current one.
"""

import json
import sys

import pytest

from migplane.agent import wire
from migplane.lab import agents as lab_agents
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

PREVIOUS_RELEASE = {wire.PINS_ENV: "MigrateData=1.0,HostFacts=1.0,DriverInfo=1.0"}
#: Raw answers of GET /v1/host from both agents, as the controller sees them.
RAW_FACTS = """
import json, sys, requests
token, ca, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
print(json.dumps([requests.get(url + "/v1/host", headers={"Authorization": "Bearer " + token},
                               verify=ca, timeout=30).json() for url in urls]))
"""


@pytest.fixture(scope="module")
def mixed_agents(lab):
    agents = lab_agents.LabAgents(lab)
    a, b = lab.hosts
    try:
        agents.start(a, my_ip=a.mig_ip)
        agents.start(b, my_ip=b.mig_ip, env=PREVIOUS_RELEASE)
        yield agents
    finally:
        agents.stop_all()


@pytest.fixture
def guest_name(lab):
    name = "rolling-upgrade"
    yield name
    for host in lab.hosts:
        guest.destroy_guest(host, name)


def _raw_facts(lab, agents, *hosts):
    done = lab.run_controller([sys.executable, "-c", RAW_FACTS, agents.token, agents.ca_file,
                               *(agents.url(h) for h in hosts)], check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _migrate(agents, name, frm, to):
    done = agents.run_cli("migrate", name, "--from", frm, "--to", to,
                          *agents.cli_args(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = agents.run_cli("list", "--json", *agents.cli_args())
    records = [m for m in json.loads(listed.stdout)["migrations"] if m["instance"] == name]
    shown = agents.run_cli("show", records[-1]["id"], "--json", *agents.cli_args())
    return json.loads(shown.stdout)


def test_migrations_between_adjacent_wire_versions(lab, mixed_agents, guest_name):
    a, b = lab.hosts
    kernel = lab.build_guest()
    cmd = guest.cmdline(tick_ms=50, dirty_mib=8, rate_mib_s=10)
    with ConsoleWatcher.for_domain(lab.hosts, guest_name) as watcher:
        guest.define_guest(a, guest_name, kernel, memory_mib=64, cmdline=cmd)
        watcher.wait_ticks(3, host="host-a", timeout=60)

        # new source -> old destination: the old one sends MigrateData 1.0, so the
        # migration runs exactly as before the split plane; an old CLI (plain bodies)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(wire.PINS_ENV, "envelopes=off")
            to_old = _migrate(mixed_agents, guest_name, "host-a", "host-b")
        assert to_old["status"] == "completed"
        assert to_old["uris"]["data_uri"] is None
        assert to_old["uris"]["plane"] == "management"
        assert to_old["uris"]["control_uri"] == "qemu+tcp://host-b/system"
        watcher.wait_ticks(5, host="host-b", timeout=60)

        # old source -> new destination: the newer MigrateData is understood
        to_new = _migrate(mixed_agents, guest_name, "host-b", "host-a")
        assert to_new["status"] == "completed"
        assert to_new["uris"]["data_uri"] == "tcp://%s" % a.mig_ip
        watcher.wait_ticks(5, host="host-a", timeout=60)

    # the bodies: each agent answers at the versions it speaks or is pinned to
    new, old = _raw_facts(lab, mixed_agents, a, b)
    assert new["migplane.name"] == old["migplane.name"] == "HostFacts"
    assert (new["migplane.version"], old["migplane.version"]) == (
        wire.HostFacts.VERSION, "1.0")
    assert "wire" in new["migplane.data"] and "wire" not in old["migplane.data"]
    assert old["migplane.data"]["driver"]["migplane.version"] == "1.0"

    continuity = watcher.continuity()
    assert continuity, continuity
    assert [(h.frm, h.to) for h in continuity.handovers] == [("host-a", "host-b"),
                                                              ("host-b", "host-a")]
