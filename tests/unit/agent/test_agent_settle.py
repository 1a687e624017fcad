"""Agents settle what the flow could not (migplane.agent.reconcile), with the fake driver.

A partition at the switch-over leaves the migration unresolved (the guest paused
or kept where it is, nothing resumed blindly); the source agent goes on asking
both hosts and settles it as soon as they answer. A guest found running twice is
paused and refused further migrations (409).
"""

import threading
import time
import types

import pytest

from migplane.agent import client as client_mod
from migplane.agent import reconcile
from migplane.agent import testing
from migplane.core import events
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import monitor
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


def _split(world, start_agent, monkeypatch):
    """A migration of vm1 from host-a that ends split: post-copy armed (no
    paused handover) but ended in pre-copy (as a nearly idle guest's job may,
    before the monitor switches it over through post-copy), and host-a's
    management link cut, so the confirm is cancelled and libvirt's own resume
    makes a second copy. ``(agent a, the started record, the ended record)``."""
    monkeypatch.setattr(monitor, "switch_over", lambda *args, **kwargs: monitor.Decision())
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=10)
    a = start_agent("host-a")
    start_agent("host-b", my_live_migration_ip=MIG_B)
    world.at(0.5, lambda: world.set_link("host-a", MANAGEMENT, False))
    record = _client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"host": "host-b"},
        "options": {"permit_post_copy": True}})
    return a, record, testing.wait_for(_client(a), record["id"])


def test_a_guest_found_running_twice_is_fenced_and_refused(world, start_agent, monkeypatch):
    """Post-copy armed (no paused handover) and the confirm cancelled: libvirt's
    own resume made a second copy; the detector pauses it, the verdict is split
    and the agent refuses to migrate the guest again."""
    a, record, done = _split(world, start_agent, monkeypatch)
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


def test_a_split_guest_is_released_only_once_one_copy_is_left(world, start_agent,
                                                               monkeypatch):
    """``migplane release``: refused while both hosts hold a copy or a shut-off
    definition could boot beside the one left; once the operator destroyed and
    undefined one copy by hand, the guest may migrate again."""
    a, record, done = _split(world, start_agent, monkeypatch)
    assert done["result"]["verdict"] == events.VERDICT_SPLIT
    world.set_link("host-a", MANAGEMENT, True)
    release = "/v1/migrations/%s/release" % record["id"]
    # the detector paused host-a's copy; host-b's runs: two copies held
    with pytest.raises(exception.MigrationError, match="both hosts still hold") as info:
        _client(a).post(release)
    assert info.value.status == 409
    # stopped by hand, still defined: it could be booted beside host-b's
    world.hosts["host-a"].guests["vm1"].state = "shutoff"
    with pytest.raises(exception.MigrationError, match="undefine that one first"):
        _client(a).post(release)
    del world.hosts["host-a"].guests["vm1"]
    answer = _client(a).post(release)
    assert answer["id"] == record["id"]
    shown = _client(a).get("/v1/migrations/%s" % record["id"])
    assert shown["result"]["verdict"] == events.VERDICT_SPLIT  # history stays true
    assert any(e["kind"] == events.SPLIT_RELEASED and "only the destination holds"
               in e["message"] for e in shown["events"])
    with pytest.raises(exception.MigrationError, match="released already"):
        _client(a).post(release)
    # no longer refused as split (the flow then finds no copy on host-a to move)
    again = _client(a).post("/v1/migrations", {"instance": "vm1",
                                               "destination": {"host": "host-b"}})
    assert again["id"] != record["id"]
    testing.wait_for(_client(a), again["id"])


def test_a_late_pre_live_migration_is_undone_when_the_source_rolled_back(world, pair):
    """The source's step deadline passed while pre_live_migration still ran here
    (it pre-creates the disks); its rollback came first. Nothing of that
    migration may be left once the late call returns."""

    a, b = pair
    slot = testing.request(b, "POST", "/v1/slots", peer=a, body={
        "migration_id": "m1", "source": "host-a", "instance": "vm1"})
    assert slot.status_code == 201
    data = {"migration_id": "m1", "instance": "vm1", "migrate_data": {
        "migplane.name": "MigrateData", "migplane.version": "1.0",
        "migplane.data": {"dest_hostname": "host-b", "block_migration": True,
                          "driver_data": {"memory_bytes": 1}}}}
    driver = b.agent.driver
    slow, entered = threading.Event(), threading.Event()
    real_pre = driver.pre_live_migration

    def pre(instance, migrate_data):
        entered.set()
        assert slow.wait(60)  # a hang guard: the test releases it
        return real_pre(instance, migrate_data)

    driver.pre_live_migration = pre
    answers = []
    late = threading.Thread(target=lambda: answers.append(testing.request(
        b, "POST", "/v1/steps/pre_live_migration", peer=a, body=data)))
    late.start()
    assert entered.wait(60)
    rolled = testing.request(b, "POST", "/v1/steps/rollback_live_migration_at_destination",
                             peer=a, body=data)
    assert rolled.status_code == 200
    slow.set()
    late.join(60)
    assert answers and answers[0].status_code == 409
    assert "rolled back while this host prepared it" in answers[0].text
    host = world.hosts["host-b"]
    assert "vm1" not in host.disks and "vm1" not in host.prepared
    assert "vm1" not in host.guests


def test_a_pre_live_migration_that_finished_is_rolled_back_at_once(world, pair):
    a, b = pair
    testing.request(b, "POST", "/v1/slots", peer=a, body={
        "migration_id": "m2", "source": "host-a", "instance": "vm1"})
    data = {"migration_id": "m2", "instance": "vm1", "migrate_data": {
        "migplane.name": "MigrateData", "migplane.version": "1.0",
        "migplane.data": {"dest_hostname": "host-b", "block_migration": True,
                          "driver_data": {"memory_bytes": 1}}}}
    assert testing.request(b, "POST", "/v1/steps/pre_live_migration", peer=a,
                           body=data).status_code == 200
    assert "vm1" in world.hosts["host-b"].disks
    assert testing.request(b, "POST", "/v1/steps/rollback_live_migration_at_destination",
                           peer=a, body=data).status_code == 200
    assert "vm1" not in world.hosts["host-b"].disks


def test_a_slot_the_settling_could_not_release_is_released_once_the_agent_answers():
    """Settled while the destination's agent did not answer (the guest asked over
    the migration plane): its slot is released as soon as that agent is back."""
    released, answers = [], [reconcile.Unreachable("host-b", "down"),
                             reconcile.Unreachable("host-b", "still down")]
    client = types.SimpleNamespace(release_slot=released.append)
    agent = types.SimpleNamespace(sleep=lambda s: None)
    reconciler = reconcile.Reconciler(agent, sleep=lambda s: None)
    reconciler.destination = lambda record, take_slot=True: (
        answers.pop(0) if answers else types.SimpleNamespace(client=client))
    record = types.SimpleNamespace(id="m1")
    settler = types.SimpleNamespace(destination=reconcile.Unreachable("host-b", "down"))
    reconciler._release_slot(record, settler)
    reconciler.join(60)
    assert released == ["m1"] and answers == []
    # reachable as it settled: released at once, in the settling thread
    reconciler._release_slot(record, types.SimpleNamespace(
        destination=types.SimpleNamespace(client=client)))
    assert released == ["m1", "m1"]
