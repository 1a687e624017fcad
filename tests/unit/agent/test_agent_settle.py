"""Agents settle what the flow could not (migplane.agent.reconcile), with the fake driver.

A partition at the switch-over leaves the migration unresolved (the guest paused
or kept where it is, nothing resumed blindly); the source agent goes on asking
both hosts and settles it as soon as they answer. A guest found running twice is
paused and refused further migrations (409).
"""

import time

import pytest

from migplane.agent import client as client_mod
from migplane.agent import reconcile
from migplane.agent import testing
from migplane.core import events
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.drivers.fake import world as world_mod

MIG_B = "198.51.100.12"
MANAGEMENT = world_mod.MANAGEMENT


def _client(local):
    return client_mod.AgentClient(local.url, testing.TOKEN, timeout=30)


def running(world):
    return sorted(h.name for h in world.hosts.values()
                  if "vm1" in h.guests and h.guests["vm1"].state == "running")


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(flow_mod.LiveMigration, "SETTLE_WAIT_S", 2.0)
    monkeypatch.setattr(reconcile.Reconciler, "RETRY_S", 0.5)


def _wait_verdict(client, migration_id, verdict, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        record = client.get("/v1/migrations/%s" % migration_id)
        if (record.get("result") or {}).get("verdict") == verdict:
            return record
        assert time.monotonic() < deadline, record.get("result")
        time.sleep(0.02)


def test_an_unresolved_migration_is_settled_once_both_hosts_answer(world, start_agent,
                                                                     quick):
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=10)
    a = start_agent("host-a")
    start_agent("host-b", my_live_migration_ip=MIG_B)
    twice = []
    real_step = world.step

    def step(dt):
        real_step(dt)
        if len(running(world)) > 1:
            twice.append(world.clock.now())

    world.step = step
    partition = []

    def cut():
        partition.append(world.clock.now())
        world.set_link("host-a", MANAGEMENT, False)
        world.cut_off("host-b")

    world.at(0.5, cut)
    record = _client(a).post("/v1/migrations", {"instance": "vm1",
                                                "destination": {"host": "host-b"}})
    first = testing.wait_for(_client(a), record["id"])
    assert first["result"]["verdict"] == events.VERDICT_UNRESOLVED
    assert first["result"]["running_on"] == "host-a"
    assert "Do not start vm1 by hand" in first["error"]
    # meanwhile nothing may move it
    with pytest.raises(exception.MigrationError, match="being settled"):
        _client(a).post("/v1/migrations", {"instance": "vm1",
                                           "destination": {"host": "host-b"}})
    world.set_link("host-a", MANAGEMENT, True)
    world.cut_off("host-b", answers=True)
    done = _wait_verdict(_client(a), record["id"], events.VERDICT_ROLLED_BACK)
    assert done["result"]["running_on"] == "host-a"
    kinds = [e["kind"] for e in done["events"]]
    assert "reconciling" in kinds and events.SETTLED in kinds
    assert running(world) == ["host-a"] and world.defined_on("vm1") == ["host-a"]
    assert partition and twice == []


def test_a_guest_found_running_twice_is_fenced_and_refused(world, start_agent):
    """Post-copy armed (no paused handover) and the confirm cancelled: libvirt's
    own resume made a second copy; the detector pauses it, the verdict is split
    and the agent refuses to migrate the guest again."""
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=10)
    a = start_agent("host-a")
    start_agent("host-b", my_live_migration_ip=MIG_B)
    world.at(0.5, lambda: world.set_link("host-a", MANAGEMENT, False))
    record = _client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"host": "host-b"},
        "options": {"permit_post_copy": True}})
    done = testing.wait_for(_client(a), record["id"])
    assert done["result"]["verdict"] == events.VERDICT_SPLIT
    assert any(e["kind"] == events.SPLIT_DETECTED and "GUEST RUNNING TWICE" in e["message"]
               for e in done["events"])
    assert running(world) == ["host-b"]
    assert world.hosts["host-a"].guests["vm1"].state == "paused"
    world.set_link("host-a", MANAGEMENT, True)
    with pytest.raises(exception.GuestSplit) as info:
        _client(a).post("/v1/migrations", {"instance": "vm1",
                                           "destination": {"host": "host-b"}})
    assert info.value.status == 409
    assert "running on two hosts" in str(info.value) and record["id"] in str(info.value)
