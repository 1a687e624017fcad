"""Agents in the lab hosts' namespaces, the CLI on the controller, the real libvirt driver.

The controller reaches the management plane only, like an operator's
workstation; every agent binds its host's management address and serves
HTTPS with a token; the destination's my_live_migration_ip decides where
the data goes.
"""

import concurrent.futures
import json
import sys
import time

import pytest

from migplane.core import units
from migplane.lab import agents as agents_mod
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

GUEST_PREFIX = "ag"


def cli(agents, *argv, timeout=600):
    done = agents.run_cli(*argv, *agents.cli_args(), timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def _counters(lab):
    return {h.name: h.counters() for h in lab.hosts}


def test_cli_migrates_a_dirtying_guest_through_two_agents(lab, agents, kernel, guest_name):
    a, b = lab.hosts
    cmd = guest.cmdline(tick_ms=50, dirty_mib=24, rate_mib_s=40, stamp_mib=32)
    with ConsoleWatcher.for_domain(lab.hosts, guest_name) as w:
        guest.define_guest(a, guest_name, kernel, memory_mib=96, cmdline=cmd)
        w.wait_ready()

        code, out, err = cli(agents, "explain", guest_name, "--from", "host-a", "--to",
                             "host-b", "--json")
        assert code == 0, err
        plan = json.loads(out)
        assert guest.state_of(a, guest_name) == libvirt.VIR_DOMAIN_RUNNING
        assert guest.state_of(b, guest_name) is None  # explain changed nothing

        before = _counters(lab)
        code, out, err = cli(agents, "migrate", guest_name, "--from", "host-a", "--to",
                             "host-b")
        after = _counters(lab)
        assert code == 0, out + err
        w.wait_ticks(10, host="host-b", timeout=30)

    # the progress and the summary, as an operator sees them
    assert "transfer started: data to tcp://%s (migration plane)" % b.mig_ip in err
    assert "completed (guest running on host-b)" in out
    assert "data URI          tcp://%s" % b.mig_ip in out
    assert "mig0" in out and "bytes per plane" in out

    # the guest runs on B, same boot, its counter continues, its memory intact
    assert guest.state_of(b, guest_name) == libvirt.VIR_DOMAIN_RUNNING
    assert len(w.boot_ids()) == 1 and w.max_bad() == 0
    continuity = w.continuity()
    assert continuity, continuity
    assert [(h.frm, h.to) for h in continuity.handovers] == [("host-a", "host-b")]
    assert w.handover()[:2] == ("host-a", "host-b")

    # the data rode the migration plane, by the lab's own counters
    sent = {p: after["host-a"][p]["tx_bytes"] - before["host-a"][p]["tx_bytes"]
            for p in ("migration", "management")}
    assert sent["migration"] > 32 * units.MiB
    assert sent["management"] < 4 * units.MiB

    # what explain said is what the migration used
    code, out, err = cli(agents, "list", "--json")
    record = [m for m in json.loads(out)["migrations"] if m["instance"] == guest_name][-1]
    code, out, err = cli(agents, "show", record["id"], "--json")
    shown = json.loads(out)
    assert shown["status"] == "completed"
    assert shown["uris"] == plan["uris"]
    assert shown["uris"]["data_uri"] == "tcp://%s" % b.mig_ip
    assert shown["uris"]["control_uri"] == "qemu+tcp://host-b/system"
    assert shown["traffic"]["planes"]["migration"]["tx_bytes"] > 32 * units.MiB
    if plan.get("hypervisor"):
        params = plan["hypervisor"].get("params", {})
        assert params.get("migrate_uri") in (None, "tcp://%s" % b.mig_ip)


def test_check_passes_between_the_lab_hosts(agents):
    code, out, err = cli(agents, "check", "--from", "host-a", "--to", "host-b")
    assert code == 0, out + err
    assert out.count("PASS") == 4
    assert "via mig0" in out and "via mgmt0" in out


def test_check_detects_a_missing_inbound_address(lab, agents):
    b = lab.hosts[1]
    try:
        agents.start(b, my_ip="198.51.100.99")
        code, out, _ = cli(agents, "check", "--from", "host-a", "--to", "host-b")
        assert code == 1
        assert "FAIL  inbound address present" in out and "198.51.100.99" in out
        agents.start(b, my_ip=None)
        code, out, _ = cli(agents, "check", "--from", "host-a", "--to", "host-b")
        assert code == 1 and "FAIL  inbound address configured" in out
    finally:
        agents.start(b, my_ip=b.mig_ip)


def test_check_detects_a_route_over_the_management_interface(lab, agents):
    a, b = lab.hosts
    route = ["ip", "route", "replace", "%s/32" % b.mig_ip, "dev", a.mgmt_if]
    a.run(route)
    try:
        code, out, _ = cli(agents, "check", "--from", "host-a", "--to", "host-b")
        assert code == 1
        assert "FAIL  separate route" in out
        assert "share the management interface" in out and "via %s" % a.mgmt_if in out
    finally:
        a.run(["ip", "route", "del", "%s/32" % b.mig_ip, "dev", a.mgmt_if], check=False)


PROBE = r"""
import json, sys, requests
url, token, ca, peer_cert, peer_key = sys.argv[1:6]
out = {}
def call(name, method, path, **kw):
    r = requests.request(method, url + path, verify=ca, timeout=10, **kw)
    out[name] = [r.status_code, r.json()["error"]["message"] if r.status_code >= 400
                 else None]
call("no_token", "GET", "/v1/host")
call("bad_token", "GET", "/v1/host", headers={"Authorization": "Bearer nope"})
auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
call("not_json", "POST", "/v1/migrations", headers=auth, data="{oops")
call("missing", "POST", "/v1/migrations", headers=auth, data="{}")
peer = {"cert": (peer_cert, peer_key), "headers": {"Content-Type": "application/json"}}
call("step_by_token", "POST", "/v1/steps/pre_live_migration", headers=auth, data="{}")
call("slot", "POST", "/v1/slots", **peer, data=json.dumps(
    {"migration_id": "m1", "source": "host-a", "instance": "x"}))
call("bad_type", "POST", "/v1/steps/pre_live_migration", **peer,
     data=json.dumps({"instance": "x", "migration_id": "m1", "migrate_data": {
         "migplane.name": 1, "migplane.version": "1.1", "migplane.data": {}}}))
call("bad_addr", "POST", "/v1/steps/pre_live_migration", **peer, data=json.dumps(
    {"instance": "x", "migration_id": "m1", "migrate_data": {
     "migplane.name": "MigrateData",
     "migplane.version": "1.1", "migplane.data": {"target_connect_addr": "1.2.3.4/x",
     "inbound_addr_source": "option"}}}))
call("released", "DELETE", "/v1/slots/m1", **peer)
call("no_slot", "POST", "/v1/steps/pre_live_migration", **peer, data=json.dumps(
    {"instance": "x", "migration_id": "m1", "migrate_data": {
     "migplane.name": "MigrateData", "migplane.version": "1.1", "migplane.data": {}}}))
call("source_step", "POST", "/v1/steps/live_migration", **peer, data="{}")
call("peer_as_operator", "GET", "/v1/migrations", cert=(peer_cert, peer_key))
call("ok", "GET", "/v1/host", headers=auth)
print(json.dumps(out))
"""


def test_unauthenticated_and_malformed_requests_are_refused(lab, agents):
    a, b = lab.hosts
    done = lab.run_controller(
        [sys.executable, "-c", PROBE, agents.urls[b.name], agents.token,
         agents.ca_file, *map(str, agents.cert(a))], env=agents_mod.agent_env(), check=False,
        timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["no_token"][0] == 401 and seen["bad_token"][0] == 401
    assert seen["not_json"][0] == 400 and "not valid JSON" in seen["not_json"][1]
    assert seen["missing"][0] == 400 and "'instance'" in seen["missing"][1]
    # destination steps: a token is not enough; a peer's data is validated, and
    # a peer without a slot for the migration is refused; source steps are not served
    assert seen["step_by_token"][0] == 401 and "peer agents only" in seen["step_by_token"][1]
    assert seen["bad_type"][0] == 400 and "migplane.name" in seen["bad_type"][1]
    assert seen["bad_addr"][0] == 400 and "target_connect_addr" in seen["bad_addr"][1]
    assert seen["slot"][0] == 201 and seen["released"][0] == 200
    assert seen["no_slot"][0] == 403 and "no slot" in seen["no_slot"][1]
    assert seen["source_step"][0] == 404
    assert seen["peer_as_operator"][0] == 401
    assert seen["ok"][0] == 200
    # and the agent goes on serving the CLI
    code, _, err = cli(agents, "check", "--from", "host-a", "--to", "host-b")
    assert code == 0, err
    assert agents.token not in agents.tail(b, 100000)


def test_agents_listen_on_the_management_plane_only(lab, agents):
    a, b = lab.hosts
    listening = a.run(["ss", "-Hltn"]).stdout
    assert "%s:%d" % (a.mgmt_ip, agents_mod.PORT) in listening
    assert "%s:%d" % (a.mig_ip, agents_mod.PORT) not in listening
    assert "*:%d" % agents_mod.PORT not in listening and "0.0.0.0:%d" % agents_mod.PORT \
        not in listening
    tried = b.run(["timeout", "5", "bash", "-c", "echo > /dev/tcp/%s/%d" % (
        a.mig_ip, agents_mod.PORT)], check=False)
    assert tried.returncode != 0
    # on the migration plane only the one question for peers, on its explicit address
    assert "%s:%d" % (a.mig_ip, agents_mod.MIGRATION_PLANE_PORT) in listening
    assert "*:%d" % agents_mod.MIGRATION_PLANE_PORT not in listening
    assert "0.0.0.0:%d" % agents_mod.MIGRATION_PLANE_PORT not in listening


def test_cli_without_the_token_is_refused(lab, agents):
    done = lab.run_controller(agents.cli_argv("list", *agents.cli_args(), "--token",
                                              "wrong"), env=agents_mod.agent_env(), check=False)
    assert done.returncode == 3 and "not accepted" in done.stderr


def _wait_record(agents, migration_id, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, out, _ = cli(agents, "show", migration_id, "--json")
        record = json.loads(out)
        if record["status"] in statuses:
            return record
        time.sleep(0.5)
    raise AssertionError("migration %s is still %s" % (migration_id, record["status"]))


@pytest.mark.parametrize("when_busy", ["refuse", "wait"])
def test_the_per_host_limit_refuses_or_queues(lab, agents, kernel, when_busy):
    a, b = lab.hosts
    names = ["ag-busy-%s-%d" % (when_busy, i) for i in (1, 2)]
    try:
        agents.start(a, my_ip=a.mig_ip,
                     live_migration={"max_concurrent": 1, "when_busy": when_busy})
        with ConsoleWatcher.for_domain(lab.hosts, names[0]) as w:
            for name in names:
                guest.define_guest(a, name, kernel, memory_mib=64,
                                   cmdline=guest.cmdline(tick_ms=100, stamp_mib=48))
            w.wait_for(lambda w: w.stamped(), 120, "MPSTAMPED")
        # Both at once, so that the second arrives while the first runs however
        # slowly each CLI starts; which one is first is the agent's to decide.
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            submitted = list(pool.map(lambda name: cli(
                agents, "migrate", name, "--from", "host-a", "--to", "host-b",
                "--bandwidth", "8", "--detach"), names))
        ids = []
        for code, out, err in submitted:
            assert code == 0, err
            ids.append(out.strip())
        records = [_wait_record(agents, i, ("completed", "failed")) for i in ids]
        if when_busy == "refuse":
            first, second = sorted(records, key=lambda r: r["status"] != "completed")
            assert first["status"] == "completed", first["error"]
            assert second["status"] == "failed"
            assert "host-a already runs 1 live migration(s)" in second["error"]
            assert guest.state_of(a, second["instance"]) == libvirt.VIR_DOMAIN_RUNNING
        else:
            first, second = sorted(records, key=lambda r: r["finished"])
            assert first["status"] == "completed", first["error"]
            assert second["status"] == "completed", second["error"]
            kinds = [e["kind"] for e in second["events"]]
            assert kinds[0] == "queued"
            # it started only once the first had finished
            assert second["created"] < first["finished"] <= second["finished"]
            assert guest.state_of(b, second["instance"]) == libvirt.VIR_DOMAIN_RUNNING
    finally:
        for name in names:
            for host in lab.hosts:
                guest.destroy_guest(host, name)
        agents.start(a, my_ip=a.mig_ip)


def test_a_destination_answering_its_management_address_moves_nothing(
        lab, agents, kernel, guest_name):
    a, b = lab.hosts
    rogue = "192.0.2.112"  # another address of host-b, on the management network
    b.run(["ip", "addr", "add", rogue + "/24", "dev", b.mgmt_if])
    try:
        agents.start(b, my_ip=rogue)  # a compromised or misconfigured destination
        guest.define_guest(a, guest_name, kernel, memory_mib=64,
                           cmdline=guest.cmdline(tick_ms=100))
        before = _counters(lab)
        code, out, err = cli(agents, "migrate", guest_name, "--from", "host-a", "--to",
                             "host-b")
        after = _counters(lab)
        assert code != 0
        assert rogue in out + err and "'management'" in out + err
        assert guest.state_of(a, guest_name) == libvirt.VIR_DOMAIN_RUNNING
        assert guest.state_of(b, guest_name) is None
        sent = after["host-a"]["management"]["tx_bytes"] - \
            before["host-a"]["management"]["tx_bytes"]
        assert sent < 4 * units.MiB  # no guest memory went anywhere
    finally:
        b.run(["ip", "addr", "del", rogue + "/24", "dev", b.mgmt_if], check=False)
        agents.start(b, my_ip=b.mig_ip)
