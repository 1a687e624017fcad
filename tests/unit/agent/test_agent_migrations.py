"""Migrations driven by a source agent whose destination is another agent."""

import time

import pytest

from migplane.agent import errors
from migplane.agent import testing
from migplane.core import exception

MIG_B = "198.51.100.12"


def start(c, dest, instance="vm1", **body):
    return c.post("/v1/migrations", dict({"instance": instance,
                                           "destination": {"url": dest.url}}, **body))


def wait_status(c, migration_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = c.get("/v1/migrations/%s" % migration_id)
        if record["status"] in statuses:
            return record
        time.sleep(0.01)
    raise AssertionError("migration %s is %s, not %s" % (migration_id, record["status"],
                                                         statuses))


def test_migration_runs_over_the_migration_plane(pair, world, client):
    a, b = pair
    record = start(client(a), b)
    assert record["status"] in ("pending", "queued", "running")
    assert record["destination"] == "host-b"
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == "completed", done["error"]
    assert done["result"]["running_on"] == "host-b"
    assert done["uris"]["data_uri"] == "tcp://%s" % MIG_B
    assert done["uris"]["control_uri"] == "qemu+tcp://host-b/system"
    assert done["uris"]["plane"] == "migration"
    assert world.where("vm1") == ["host-b"]
    assert world.history[-1].plane == "migration"
    planes = done["traffic"]["planes"]
    assert planes["migration"]["tx_bytes"] >= 256 * 1024 * 1024
    assert planes["management"]["tx_bytes"] < planes["migration"]["tx_bytes"] / 100
    kinds = [e["kind"] for e in done["events"]]
    assert kinds[0] == "queued" and kinds[-1] == "completed"
    assert "transfer_started" in kinds
    # the slots are given back on both hosts
    assert a.agent.slots.running == 0 and b.agent.slots.running == 0


def test_destination_without_inbound_address_migrates_as_before(world, start_agent,
                                                                 client):
    world.add_guest("host-a", "vm1")
    a, b = start_agent("host-a"), start_agent("host-b")
    done = testing.wait_for(client(a), start(client(a), b)["id"])
    assert done["status"] == "completed"
    assert done["uris"]["data_uri"] is None
    assert done["uris"]["plane"] == "management"
    assert "migration" not in done["traffic"]["planes"]


def test_each_hosts_own_configuration_applies(world, start_agent, client):
    """host-b's my_live_migration_ip is used, not the source's idea of it."""
    world.add_guest("host-a", "vm1")
    a = start_agent("host-a", my_live_migration_ip="198.51.100.11")
    b = start_agent("host-b", my_live_migration_ip="2001:db8:2::11")
    done = testing.wait_for(client(a), start(client(a), b)["id"])
    assert done["uris"]["data_uri"] == "tcp://[2001:db8:2::11]"


def test_bandwidth_and_post_copy_options_reach_the_source_driver(pair, world, client):
    a, b = pair
    record = start(client(a), b, options={"bandwidth_mib": 20, "permit_post_copy": True})
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == "completed"
    assert world.history[-1].settings.bandwidth_mib == 20
    assert world.history[-1].settings.permit_post_copy is True
    assert done["options"] == {"bandwidth_mib": 20, "permit_post_copy": True}


def test_failure_at_the_destination_rolls_back(pair, world, client, assert_rolled_back):
    a, b = pair
    world.fail("host-b", "pre_live_migration", exception.DestinationCheckFailed(
        host="host-b", instance="vm1", reason="no room"))
    done = testing.wait_for(client(a), start(client(a), b)["id"])
    assert done["status"] == "failed"
    assert "no room" in done["error"]
    assert done["result"]["running_on"] == "host-a"
    assert [e["kind"] for e in done["events"]][-2:] == ["rolled_back", "failed"]
    assert_rolled_back()
    assert b.agent.slots.running == 0


def test_missing_guest_fails_clearly(pair, client):
    a, b = pair
    done = testing.wait_for(client(a), start(client(a), b, instance="ghost")["id"])
    assert done["status"] == "failed"
    assert "ghost" in done["error"] and "host-a" in done["error"]


def _slow_guest(world):
    # dirties faster than the 100 MiB/s planes carry: never converges by itself
    world.add_guest("host-a", "slow", memory_mib=512, dirty_mib_s=150)


def test_abort_keeps_the_guest_on_the_source(pair, world, client, assert_rolled_back):
    a, b = pair
    _slow_guest(world)
    record = start(client(a), b, instance="slow", options={"completion_timeout": 0})
    wait_status(client(a), record["id"], ("running",))
    while not (client(a).get("/v1/migrations/%s" % record["id"])["progress"] or {}):
        time.sleep(0.01)
    client(a).post("/v1/migrations/%s/abort" % record["id"])
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == "aborted"
    assert_rolled_back("slow")
    with pytest.raises(exception.MigrationError, match="already ended"):
        client(a).post("/v1/migrations/%s/abort" % record["id"])


def test_force_complete_switches_to_post_copy(pair, world, client):
    a, b = pair
    _slow_guest(world)
    record = start(client(a), b, instance="slow",
                   options={"completion_timeout": 0, "permit_post_copy": True})
    while not (client(a).get("/v1/migrations/%s" % record["id"])["progress"] or {}):
        time.sleep(0.01)
    client(a).post("/v1/migrations/%s/force-complete" % record["id"])
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == "completed"
    assert done["progress"]["postcopy"] is True
    assert world.where("slow") == ["host-b"]


def test_unknown_migration_and_unreachable_destination(pair, client):
    a, _ = pair
    with pytest.raises(errors.NotFound, match="nope"):
        client(a).get("/v1/migrations/nope")
    a.agent.peers["host-c"] = "https://127.0.0.1:9"
    with pytest.raises(errors.AgentUnreachable, match="127.0.0.1:9"):
        client(a).post("/v1/migrations", {"instance": "vm1",
                                          "destination": {"host": "host-c"}})
    assert a.agent.registry.all() == []


def test_only_configured_peers_are_destinations(pair, client):
    a, b = pair
    for destination, message in [
            ({"url": a.url}, "not one of"),                    # itself: not a peer
            ({"url": "https://127.0.0.1:9"}, "not one of"),    # a URL a caller names
            ({"host": "host-c"}, "not one of"),
            ({"url": "https://127.0.0.1:9", "host": "host-b"}, "not https://127.0.0.1:9"),
    ]:
        with pytest.raises(errors.Forbidden, match=message):
            client(a).post("/v1/migrations", {"instance": "vm1",
                                              "destination": destination})
    assert a.agent.registry.all() == []
    record = start(client(a), b)  # by URL: the configured one
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"


def test_a_peer_whose_certificate_is_another_host_is_refused(pair, world, client):
    a, b = pair
    a.agent.peers["host-c"] = b.url  # host-b's agent posing as host-c
    with pytest.raises(errors.AgentUnreachable, match="host-c"):
        client(a).post("/v1/migrations", {"instance": "vm1",
                                          "destination": {"host": "host-c"}})
    assert world.where("vm1") == ["host-a"] and a.agent.registry.all() == []


def test_the_destination_must_know_the_source_as_a_peer(world, start_agent, client):
    world.add_guest("host-a", "vm1")
    b = start_agent("host-b", peers=False)
    a = start_agent("host-a", peers=False)
    a.agent.peers["host-b"] = b.url
    with pytest.raises(errors.PeerRefused, match="host-a in its"):
        start(client(a), b)
    assert world.where("vm1") == ["host-a"]


def test_a_guest_migrates_once_at_a_time(pair, world, client):
    a, b = pair
    _slow_guest(world)
    first = start(client(a), b, instance="slow", options={"completion_timeout": 0})
    with pytest.raises(exception.MigrationError, match="already"):
        start(client(a), b, instance="slow")
    client(a).post("/v1/migrations/%s/abort" % first["id"])
    testing.wait_for(client(a), first["id"])


def test_refused_when_the_source_is_busy(world, start_agent, client):
    _slow_guest(world)
    world.add_guest("host-a", "vm2")
    a = start_agent("host-a", when_busy="refuse", max_concurrent=1)
    b = start_agent("host-b", my_live_migration_ip=MIG_B, max_concurrent=5)
    first = start(client(a), b, instance="slow", options={"completion_timeout": 0})
    wait_status(client(a), first["id"], ("running",))
    second = testing.wait_for(client(a), start(client(a), b, instance="vm2")["id"])
    assert second["status"] == "failed"
    assert "host-a already runs 1 live migration(s)" in second["error"]
    assert world.where("vm2") == ["host-a"]
    client(a).post("/v1/migrations/%s/abort" % first["id"])
    assert testing.wait_for(client(a), first["id"])["status"] == "aborted"


def test_refused_when_the_destination_is_busy(world, start_agent, client):
    _slow_guest(world)
    world.add_guest("host-c", "vm3")
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip=MIG_B, max_concurrent=1,
                    when_busy="refuse")
    c = start_agent("host-c")
    first = start(client(a), b, instance="slow", options={"completion_timeout": 0})
    wait_status(client(a), first["id"], ("running",))
    assert [lease.instance for lease in b.agent.slots.leases()] == ["slow"]
    other = testing.wait_for(client(c), start(client(c), b, instance="vm3")["id"])
    assert other["status"] == "failed"
    assert "host-b already runs 1" in other["error"]
    assert c.agent.slots.running == 0
    client(a).post("/v1/migrations/%s/abort" % first["id"])
    testing.wait_for(client(a), first["id"])
    assert b.agent.slots.running == 0


def test_waits_for_a_slot_then_runs(world, start_agent, client):
    for name in ("vm1", "vm2", "vm3"):
        world.add_guest("host-a", name, memory_mib=64)
    a = start_agent("host-a", max_concurrent=2, when_busy="wait")
    b = start_agent("host-b", my_live_migration_ip=MIG_B, max_concurrent=2)
    ids = [start(client(a), b, instance=n)["id"] for n in ("vm1", "vm2", "vm3")]
    done = [testing.wait_for(client(a), i) for i in ids]
    assert [d["status"] for d in done] == ["completed"] * 3
    assert a.agent.slots.peak <= 2 and b.agent.slots.peak <= 2
    assert world.where("vm3") == ["host-b"]


def test_abort_while_queued(world, start_agent, client):
    _slow_guest(world)
    world.add_guest("host-a", "vm2")
    a = start_agent("host-a", max_concurrent=1, when_busy="wait")
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    first = start(client(a), b, instance="slow", options={"completion_timeout": 0})
    wait_status(client(a), first["id"], ("running",))
    second = start(client(a), b, instance="vm2")
    wait_status(client(a), second["id"], ("queued",))
    client(a).post("/v1/migrations/%s/abort" % second["id"])
    assert testing.wait_for(client(a), second["id"])["status"] == "aborted"
    client(a).post("/v1/migrations/%s/abort" % first["id"])
    testing.wait_for(client(a), first["id"])
    assert world.where("vm2") == ["host-a"]


def test_list_and_show_since(pair, client):
    a, b = pair
    done = testing.wait_for(client(a), start(client(a), b)["id"])
    listed = client(a).get("/v1/migrations")["migrations"]
    assert [m["id"] for m in listed] == [done["id"]]
    assert "events" not in listed[0]
    tail = client(a).get("/v1/migrations/%s" % done["id"],
                         params={"since": str(done["last_event"] - 1)})
    assert [e["seq"] for e in tail["events"]] == [done["last_event"]]


def test_plan_changes_nothing_and_matches_the_migration(pair, world, client):
    a, b = pair
    body = {"instance": "vm1", "destination": {"url": b.url}, "block_migration": False}
    plan = client(a).post("/v1/plans", body)
    assert world.hosts["host-b"].prepared == {} and world.where("vm1") == ["host-a"]
    assert world.transfers == {}
    assert plan["uris"]["reasons"]["data_uri"].startswith("migration plane")
    assert plan["migrate_data"]["migplane.data"]["target_connect_addr"] == MIG_B
    done = testing.wait_for(client(a), client(a).post("/v1/migrations", body)["id"])
    assert done["uris"] == plan["uris"]


def test_plan_refuses_what_the_driver_cannot_do(world, start_agent, client):
    world.add_guest("host-a", "vm1")
    a = start_agent("host-a", scheme="gopher")
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    with pytest.raises(exception.UnsupportedFeature, match="gopher"):
        client(a).post("/v1/plans", {"instance": "vm1", "destination": {"url": b.url}})


def test_operator_tokens_never_reach_a_peer(pair, world, client):
    a, b = pair
    seen = []
    app = b.server.app

    def spy(environ, start_response):
        seen.append((environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION"),
                     environ.get("HTTP_X_AUTH_TOKEN"), bool(environ["migplane.peer_cert"])))
        return app(environ, start_response)

    b.server.app = spy
    record = start(client(a), b)
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"
    paths = {path for path, *_ in seen}
    assert {"/v1/host", "/v1/slots", "/v1/steps/pre_live_migration"} <= paths
    assert all(auth is None and token is None and cert for _, auth, token, cert in seen)
