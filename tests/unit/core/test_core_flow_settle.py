"""Settling a migration (migplane.core.settle in the flow) with the fake driver.

The fake models migplane's handover (the destination's copy held paused after
the switch-over until the flow resumes it) and libvirt's own resume of the
source when its confirm phase is cancelled (the management link down at the
switch-over). Whatever the fault, the guest never runs on two hosts.
"""

import pytest

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.core import monitor
from migplane.drivers.fake import world as world_mod

A, B = "host-a", "host-b"
B_MIG4 = "198.51.100.12"
MANAGEMENT = world_mod.MANAGEMENT


def running(world, instance="vm1"):
    return sorted(h.name for h in world.hosts.values()
                  if instance in h.guests and h.guests[instance].state == "running")


class Watch:
    """Checks, at every tick of simulated time, that the guest never runs twice."""

    def __init__(self, world):
        self.world, self.twice = world, []
        real = world.step

        def step(dt):
            real(dt)
            if len(running(world)) > 1:
                self.twice.append(world.clock.now())
        world.step = step


def run_failing(migration):
    with pytest.raises(exception.MigplaneError) as info:
        migration.run()
    return info.value


@pytest.fixture
def guest(world):
    return world.add_guest(A, "vm1", memory_mib=256, dirty_mib_s=10)


def test_the_handover_holds_the_destination_until_the_source_stopped(
        world, drivers, make_migration, guest):
    a, b = drivers
    seen = []
    real_post = b.post_live_migration_at_destination

    def post(instance, data):  # what the destination holds when the flow resumes it
        seen.append((world.hosts[B].guests[instance].state,
                     world.hosts[A].guests[instance].state))
        real_post(instance, data)

    b.post_live_migration_at_destination = post
    watch = Watch(world)
    migration = make_migration(a, b)
    result = migration.run()
    assert seen == [("paused", "shutoff")]
    assert result.verdict == events.VERDICT_COMPLETED and result.running_on == B
    assert result.progress.handover
    assert running(world) == [B] and world.defined_on("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id
    assert watch.twice == []
    settled = [e for e in migration.events if e.kind == events.SETTLED]
    assert settled and settled[0].message.startswith("completed: ")


def test_management_link_down_at_the_switch_over_never_makes_two_copies(
        world, drivers, make_migration, guest):
    """The issue's partition: the data arrives over the migration plane, the
    source's libvirt never hears of the destination's finish and resumes its own
    copy; the flow cannot reach the destination either."""
    a, b = drivers
    watch = Watch(world)
    world.at(0.5, lambda: (world.set_link(A, MANAGEMENT, False), world.cut_off(B)))
    migration = make_migration(a, b)
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationNotSettled)
    assert err.result.verdict == events.VERDICT_UNRESOLVED
    assert err.result.running_on == A
    assert "Do not start vm1 by hand" in str(err)
    assert "host-a" in str(err) and "host-b" in str(err)
    # libvirt resumed the source; the destination's copy stayed held, never ran
    assert running(world) == [A]
    assert world.hosts[B].guests["vm1"].state == "paused"
    assert watch.twice == []


def test_a_partition_that_heals_while_settling_rolls_back(world, drivers, make_migration,
                                                          guest, assert_rolled_back):
    a, b = drivers
    watch = Watch(world)
    world.at(0.5, lambda: (world.set_link(A, MANAGEMENT, False), world.cut_off(B)))
    world.at(10.0, lambda: (world.set_link(A, MANAGEMENT, True),
                            world.cut_off(B, answers=True)))
    migration = make_migration(a, b)
    err = run_failing(migration)
    assert err.result.verdict == events.VERDICT_ROLLED_BACK
    assert "client socket is closed" in str(err)
    assert_rolled_back(boot_id=guest.boot_id)
    assert watch.twice == []


def test_post_copy_armed_switches_over_through_post_copy_under_a_cut(
        world, make_driver, make_migration, guest):
    """libvirt refuses the paused handover with post-copy armed: the switch-over
    then goes through post-copy, after which libvirt never resumes the source,
    so the same management cut leaves one copy, on the destination."""
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    world.at(0.5, lambda: world.set_link(A, MANAGEMENT, False))
    world.at(30.0, lambda: world.set_link(A, MANAGEMENT, True))
    watch = Watch(world)
    migration = make_migration(a, b)
    result = migration.run()
    assert result.verdict == events.VERDICT_COMPLETED and result.progress.postcopy
    assert [e for e in migration.events if e.kind == events.SWITCH_OVER]
    assert running(world) == [B] and watch.twice == []
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id


def test_post_copy_armed_and_a_cancelled_confirm_is_detected_and_fenced(
        world, make_driver, make_migration, guest, monkeypatch):
    """A job that armed post-copy but ended in pre-copy (the hypervisor ends one
    whose pass leaves under ARMED_DOWNTIME_MS before it is switched over) has no
    handover: libvirt may resume both copies. The detector pauses the one a
    cancelled migration resumed, says so loudly and refuses further migrations."""
    monkeypatch.setattr(monitor, "switch_over", lambda *args, **kwargs: monitor.Decision())
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    world.at(0.5, lambda: world.set_link(A, MANAGEMENT, False))
    migration = make_migration(a, b)
    err = run_failing(migration)
    assert err.result.verdict == events.VERDICT_SPLIT
    assert "GUEST RUNNING TWICE" in " ".join(
        e.message for e in migration.events if e.kind == events.SPLIT_DETECTED)
    assert running(world) == [B]
    source = world.hosts[A].guests["vm1"]
    assert source.state == "paused"
    again = make_migration(a, b)
    refused = run_failing(again)
    assert isinstance(refused, exception.GuestSplit)
    assert migration.id in str(refused)
    assert flow.release_split("vm1")


def test_an_unknown_job_state_fails_at_once(world, drivers, make_migration, guest,
                                            assert_rolled_back):
    a, b = drivers
    real = a.get_job_progress
    aborts = []
    real_abort = a.abort_job

    def weird(instance):
        progress = real(instance)
        if progress.state == driver_mod.JOB_RUNNING and progress.time_elapsed_ms > 500:
            return driver_mod.JobProgress(state="exploded")
        return progress

    def abort(instance):
        aborts.append(world.clock.now())
        real_abort(instance)

    a.get_job_progress, a.abort_job = weird, abort
    migration = make_migration(a, b)
    err = run_failing(migration)
    assert "unknown job state 'exploded'" in str(err)
    assert len(aborts) == 1  # aborted, not polled for 600 rounds
    assert err.result.verdict == events.VERDICT_ROLLED_BACK
    assert_rolled_back(boot_id=guest.boot_id)


def test_a_qemu_killed_in_post_copy_is_lost_and_neither_half_touched(
        world, make_driver, make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=300)
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)

    def kill_source_qemu():
        transfer = world.transfers["vm1"]
        transfer.state, transfer.error = "failed", "QEMU unexpectedly closed the monitor"
        world.hosts[A].guests["vm1"].state = "shutoff"
        world.hosts[A].guests["vm1"].reason = None
        world.hosts[B].guests["vm1"].reason = "postcopy-failed"

    world.at(1.0, migration.force_complete)
    world.at(1.6, kill_source_qemu)
    err = run_failing(migration)
    assert err.result.verdict == events.VERDICT_LOST
    assert "neither may be resumed" in str(err)
    assert "Do not start vm1 by hand" in str(err)
    # nothing destroyed, undefined or resumed: both halves as the fault left them
    assert world.hosts[A].guests["vm1"].state == "shutoff"
    assert world.hosts[B].guests["vm1"].state == "running"
    assert world.hosts[B].guests["vm1"].reason == "postcopy-failed"


def test_the_source_definition_is_removed_once_its_daemon_answers_again(
        world, drivers, make_migration, guest):
    """libvirtd of the source restarts as the guest arrives: the flow retries the
    removal of the source's definition until it answers (bounded)."""
    a, b = drivers
    real_post = a.post_live_migration_at_source
    calls = []

    def post(instance, data):
        calls.append(world.clock.now())
        if len(calls) < 3:
            raise exception.HypervisorUnavailable(host=A, reason="restarting")
        real_post(instance, data)

    a.post_live_migration_at_source = post
    result = make_migration(a, b).run()
    assert len(calls) == 3
    assert result.verdict == events.VERDICT_COMPLETED and result.error is None
    assert world.defined_on("vm1") == [B]


def test_a_source_definition_that_cannot_be_removed_leaves_it_unresolved(
        world, drivers, make_migration, guest):
    """No host is left with a bootable copy while the verdict says completed."""
    a, b = drivers

    def down(instance, data):
        raise exception.HypervisorUnavailable(host=A, reason="libvirtd restarting")

    a.post_live_migration_at_source = down
    err = run_failing(make_migration(a, b))
    assert err.result.verdict == events.VERDICT_UNRESOLVED
    assert err.result.running_on == B
    assert "still holds a bootable definition" in str(err)
    assert running(world) == [B] and world.defined_on("vm1") == [A, B]
