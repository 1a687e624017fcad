"""The live-migration flow (migplane.core.flow) with the fake driver and simulated time."""

import itertools
import json
import logging

import pytest

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.core import limiter
from migplane.core import monitor
from migplane.core import units
from migplane.core.settings import ConcurrencySettings
from migplane.core.settings import MigrationSettings

MiB = units.MiB
A, B = "host-a", "host-b"
B_MIG4, B_MIG6 = "198.51.100.12", "2001:db8:2::11"

# Every step of the driver API that a fault can be injected into, and where.
PRE_TRANSFER_STEPS = [
    (B, "check_can_live_migrate_destination"),
    (A, "check_can_live_migrate_source"),
    (B, "pre_live_migration"),
    (A, "get_instance_info"),
    (A, "live_migration"),
]
TRANSFER_STEPS = [
    (A, "get_job_progress"),
    (A, "set_max_downtime"),
]
# The step of the flow (named in the error) during which each driver method runs.
FLOW_STEP = {"get_instance_info": "resolve_uris", "get_job_progress": "live_migration",
             "set_max_downtime": "live_migration", "abort_job": "live_migration",
             "force_complete": "live_migration"}
POST_STEPS = [(B, "post_live_migration_at_destination"), (A, "post_live_migration_at_source")]
ROLLBACK_STEPS = [(A, "rollback_live_migration_at_source"),
                  (B, "rollback_live_migration_at_destination")]
ON_REQUEST_STEPS = [(A, "abort_job"), (A, "force_complete")]


def kinds(migration, skip=(events.PROGRESS,)):
    return [e.kind for e in migration.events if e.kind not in skip]


def steps(migration):
    return [e.step for e in migration.events if e.kind == events.STEP]


@pytest.fixture
def guest(world):
    return world.add_guest(A, "vm1", memory_mib=256, dirty_mib_s=10)


def run_failing(migration):
    with pytest.raises(exception.MigplaneError) as info:
        migration.run()
    return info.value


# -- success ----------------------------------------------------------------------------


def test_success_on_the_migration_plane(world, drivers, make_migration, guest):
    a, b = drivers
    boot_id, ticks = guest.boot_id, guest.ticks
    migration = make_migration(a, b)
    result = migration.run()

    assert result.status == flow.COMPLETED == migration.status
    assert (result.source, result.destination, result.running_on) == (A, B, B)
    assert result.error is None and result.instance == "vm1"
    assert world.where("vm1") == [B] and world.defined_on("vm1") == [B]
    moved = world.hosts[B].guests["vm1"]
    assert moved.state == "running" and moved.persistent
    assert moved.boot_id == boot_id
    assert moved.ticks > ticks  # the same guest kept running: its counter went on
    assert world.history[-1].plane == "migration"
    assert world.history[-1].data_host == B_MIG4
    assert result.uris.data_uri == "tcp://" + B_MIG4
    assert result.uris.control_uri == "qemu+tcp://host-b/system"
    planes = world.plane_bytes()
    assert planes["migration"] >= guest.memory_bytes
    assert planes["management"] < MiB  # only the control connection
    assert world.transfers == {} and world.hosts[B].prepared == {}
    assert result.progress.state == driver_mod.JOB_COMPLETED
    assert result.duration_s == pytest.approx(world.clock.now(), abs=0.01)
    assert json.loads(json.dumps(result.to_dict()))["uris"]["data_uri"] == "tcp://" + B_MIG4


def test_unset_migrates_on_the_management_plane(world, make_driver, make_migration, guest):
    a, b = make_driver(A), make_driver(B)
    result = make_migration(a, b).run()
    assert result.status == flow.COMPLETED
    assert world.where("vm1") == [B]
    assert world.history[-1].plane == "management"
    assert world.history[-1].data_host == B
    assert result.uris.data_uri is None and result.uris.plane == "management"
    assert world.plane_bytes()["migration"] == 0


def test_ipv6_inbound_address(world, make_driver, make_migration, guest):
    a, b = make_driver(A), make_driver(B, my_live_migration_ip=B_MIG6)
    result = make_migration(a, b).run()
    assert result.uris.data_uri == f"tcp://[{B_MIG6}]"
    assert world.history[-1].plane == "migration" and world.where("vm1") == [B]


def test_inbound_cidr(world, make_driver, make_migration, guest):
    a, b = make_driver(A), make_driver(B, inbound_cidr="198.51.100.0/24")
    result = make_migration(a, b).run()
    assert result.uris.data_uri == "tcp://" + B_MIG4
    assert "from cidr" in result.uris.reasons["data_uri"]
    assert world.history[-1].plane == "migration"


def test_link_local_inbound_address_with_zone(world, make_driver, make_migration, guest):
    world.hosts[B].addresses["fe80::12%mig0"] = "migration"
    a, b = make_driver(A), make_driver(B, inbound_cidr="fe80::/64")
    result = make_migration(a, b).run()
    assert result.uris.data_uri == "tcp://[fe80::12%25mig0]"
    assert world.history[-1].plane == "migration" and world.where("vm1") == [B]


def test_tunnelled_rides_the_migration_plane(world, make_driver, make_migration, guest):
    a = make_driver(A, tunnelled=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    result = make_migration(a, b).run()
    assert result.uris.control_uri == f"qemu+tcp://{B_MIG4}/system"
    assert world.history[-1].plane == "migration"
    assert world.history[-1].control_host == B_MIG4


def test_native_tls_verifies_the_host_name(world, make_driver, make_migration, guest):
    world.hosts[B].tls_names = (B,)
    a = make_driver(A, with_native_tls=True, scheme="tls")
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    result = make_migration(a, b).run()
    assert result.uris.tls_destination == B
    assert world.where("vm1") == [B]


def test_block_migration_copies_the_disk(world, drivers, make_migration):
    world.add_guest(A, "vm1", memory_mib=64, disk_mib=128)
    a, b = drivers
    result = make_migration(a, b, block_migration=True).run()
    assert result.status == flow.COMPLETED
    assert world.hosts[B].disks == {"vm1": 128 * MiB}
    assert "vm1" not in world.hosts[A].disks
    assert result.uris.disks_uri == "tcp://" + B_MIG4
    assert world.plane_bytes()["migration"] >= (64 + 128) * MiB
    assert result.progress.disk_processed == 128 * MiB


def test_non_shared_disk_without_block_migration_is_refused(world, drivers, make_migration,
                                                            assert_rolled_back):
    world.add_guest(A, "vm1", memory_mib=64, disk_mib=128)
    err = run_failing(make_migration(*drivers))
    assert isinstance(err, exception.SourceCheckFailed)
    assert "block migration" in str(err)
    assert_rolled_back()
    assert world.hosts[A].disks == {"vm1": 128 * MiB}


def test_limiter_slots_are_released(world, drivers, make_migration, guest):
    lim = limiter.HostLimiter(ConcurrencySettings(max_concurrent=1))
    result = make_migration(*drivers, limiter=lim).run()
    assert result.status == flow.COMPLETED
    assert lim.peak(A) == lim.peak(B) == 1
    assert lim.running(A) == lim.running(B) == 0


def test_limiter_refusal(world, drivers, make_migration, guest, assert_rolled_back):
    lim = limiter.HostLimiter(ConcurrencySettings(max_concurrent=1, when_busy="refuse"))
    lim.acquire(B, "host-c")
    migration = make_migration(*drivers, limiter=lim)
    err = run_failing(migration)
    assert isinstance(err, exception.TooManyMigrations)
    assert err.kwargs == {"host": B, "running": 1, "limit": 1}
    assert err.result.status == flow.FAILED and err.result.running_on == A
    assert kinds(migration) == [events.QUEUED, events.FAILED]
    assert world.history == []
    assert lim.running(A) == 0 and lim.running(B) == 1
    assert_rolled_back()


# -- events ----------------------------------------------------------------------------


def test_events_in_order(world, make_driver, make_migration, guest):
    a = make_driver(A, strategy="adaptive")
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b, migration_id="mig-1")
    migration.run()
    seen = kinds(migration)
    assert seen[0] == events.QUEUED and seen[-1] == events.COMPLETED
    assert steps(migration) == [
        "check_can_live_migrate_destination", "check_can_live_migrate_source",
        "pre_live_migration", "resolve_uris", "measure", "live_migration", "settle",
        "post_live_migration_at_destination", "post_live_migration_at_source"]
    assert seen.index(events.MEASURED) < seen.index(events.PLANNED) \
        < seen.index(events.TRANSFER_STARTED)
    started = seen.index(events.TRANSFER_STARTED)
    assert seen[started - 1] == events.STEP
    assert seen.index(events.DOWNTIME_CHANGED) > started
    progress = [e for e in migration.events if e.kind == events.PROGRESS]
    assert progress and all(e.progress is not None for e in progress)
    assert progress[-1].progress.state == driver_mod.JOB_COMPLETED
    first_progress = migration.events.index(progress[0])
    assert migration.events[first_progress - 1].kind == events.TRANSFER_STARTED
    assert all(e.migration_id == "mig-1" and e.instance == "vm1" for e in migration.events)
    elapsed = [e.elapsed for e in migration.events]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    processed = [e.progress.data_processed for e in progress]
    assert processed == sorted(processed)
    assert "migration plane" in migration.events[started].message
    assert migration.events[-1].progress.state == driver_mod.JOB_COMPLETED


def test_events_of_a_failure_in_order(world, drivers, make_migration, guest):
    world.fail(A, "get_job_progress")
    migration = make_migration(*drivers)
    run_failing(migration)
    seen = kinds(migration)
    assert seen[-3:] == [events.SETTLED, events.ROLLED_BACK, events.FAILED]
    assert steps(migration)[-2:] == ["settle", "rollback"]
    assert "guest kept on host-a" in migration.events[-2].message
    assert migration.events[-3].message.startswith("rolled-back: ")


def test_listener_exceptions_do_not_break_a_migration(world, drivers, make_migration, guest,
                                                      caplog):
    migration = make_migration(*drivers)
    calls = []

    def bad_listener(event):
        calls.append(event.kind)
        raise ValueError("listener bug")

    migration.subscribe(bad_listener)
    with caplog.at_level(logging.ERROR, logger="migplane.core.flow"):
        result = migration.run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]
    assert calls == [e.kind for e in migration.events]
    assert "listener" in caplog.text and "listener bug" in caplog.text


# -- faults at every step ---------------------------------------------------------------


def test_every_driver_step_is_covered_by_a_fault_test():
    covered = {s for _, s in PRE_TRANSFER_STEPS + TRANSFER_STEPS + POST_STEPS
               + ROLLBACK_STEPS + ON_REQUEST_STEPS}
    api = driver_mod.MigrationDriver.__abstractmethods__ | {
        "rollback_live_migration_at_source"}
    assert covered == api - {"describe", "local_addresses"}


@pytest.mark.parametrize("host, step", PRE_TRANSFER_STEPS + TRANSFER_STEPS)
def test_fault_rolls_back(world, drivers, make_migration, guest, assert_rolled_back,
                          host, step):
    world.fail(host, step)
    migration = make_migration(*drivers)
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationError)
    flow_step = FLOW_STEP.get(step, step)
    assert f"failed during {flow_step}: RuntimeError: injected fault in {step} on {host}" \
        in str(err)
    assert err.result.status == flow.FAILED == migration.status
    assert err.result.running_on == A
    assert err.result.error == str(err)
    assert_rolled_back(boot_id=guest.boot_id)
    assert kinds(migration)[-1] == events.FAILED
    assert world.faults == {}  # the fault did fire


@pytest.mark.parametrize("host, step", ON_REQUEST_STEPS)
def test_fault_in_a_requested_action_rolls_back(world, drivers, make_migration,
                                                assert_rolled_back, host, step):
    world.add_guest(A, "vm1", memory_mib=1024)
    world.fail(host, step)
    migration = make_migration(*drivers)
    world.at(1.0, migration.abort if step == "abort_job" else migration.force_complete)
    err = run_failing(migration)
    assert f"failed during live_migration: RuntimeError: injected fault in {step}" \
        in str(err)
    assert err.result.running_on == A
    assert_rolled_back()
    assert world.faults == {}


@pytest.mark.parametrize("host, step", POST_STEPS)
def test_fault_after_the_switch_over_completes_with_an_error(world, drivers,
                                                             make_migration, guest, host,
                                                             step):
    world.fail(host, step)
    migration = make_migration(*drivers)
    result = migration.run()
    assert result.status == flow.COMPLETED and result.running_on == B
    if host == A:  # retried until the source answers: its definition is removed
        assert result.error is None and world.defined_on("vm1") == [B]
    else:
        assert f"{step}: injected fault" in result.error
    assert world.where("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id
    assert kinds(migration)[-1] == events.COMPLETED


def test_a_job_the_source_lost_but_that_arrived_is_finished(world, drivers, make_migration,
                                                           guest):
    """The source's daemon restarted as the job ended and calls it failed, yet the
    guest runs on the destination: the flow finishes the migration, not rolls back
    (found by the fault matrix: libvirtd of the source killed at the switch-over)."""
    a, b = drivers
    real = a.get_job_progress

    def lost(instance):
        progress = real(instance)
        if progress.state == driver_mod.JOB_COMPLETED:
            return driver_mod.JobProgress(state=driver_mod.JOB_FAILED,
                                          error="connection to the daemon lost")
        return progress

    a.get_job_progress = lost
    result = make_migration(a, b).run()
    assert result.status == flow.COMPLETED and result.running_on == B
    assert world.where("vm1") == [B] and world.defined_on("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id


def test_a_failed_job_with_the_guest_still_here_rolls_back(world, drivers, make_migration,
                                                          guest, assert_rolled_back):
    """The same lost job, but the guest never left: rolled back as before."""
    a, b = drivers
    a.get_job_progress = lambda instance: driver_mod.JobProgress(
        state=driver_mod.JOB_FAILED, error="connection to the daemon lost")
    migration = make_migration(a, b)
    run_failing(migration)
    assert migration.status == flow.FAILED
    assert world.where("vm1") == [A]


@pytest.mark.parametrize("host, step", ROLLBACK_STEPS)
def test_fault_during_rollback_keeps_the_original_error(world, drivers, make_migration,
                                                        guest, host, step, caplog):
    original = exception.HypervisorUnavailable(host=A, reason="monitor lost")
    world.fail(A, "get_job_progress", original)  # mid-transfer: both rollbacks run
    world.fail(host, step)
    with caplog.at_level(logging.ERROR, logger="migplane.core.flow"):
        err = run_failing(make_migration(*drivers))
    assert err is original and err.result.running_on == A
    assert f"{step} of vm1 failed during rollback" in caplog.text
    assert world.where("vm1") == [A]
    assert world.faults == {}


def test_inbound_address_not_on_the_destination(world, make_driver, make_migration, guest,
                                                assert_rolled_back):
    a, b = make_driver(A), make_driver(B, my_live_migration_ip="198.51.100.99")
    err = run_failing(make_migration(a, b))
    assert isinstance(err, exception.InboundAddressError)
    assert "198.51.100.99" in str(err) and B in str(err)
    assert world.history == []
    assert_rolled_back()


def test_driver_step_returning_no_migrate_data(world, drivers, make_migration, guest,
                                               assert_rolled_back, monkeypatch):
    a, b = drivers
    monkeypatch.setattr(b, "check_can_live_migrate_destination",
                        lambda instance, block: {"dest_hostname": B})
    err = run_failing(make_migration(a, b))
    assert isinstance(err, exception.InvalidMigrateData)
    assert err.kwargs["field"] == "<check_can_live_migrate_destination result>"
    assert_rolled_back()


def test_unexpected_error_in_the_flow_is_wrapped(world, drivers, make_migration, guest,
                                                 assert_rolled_back, monkeypatch):
    a, b = drivers
    monkeypatch.setattr(a, "describe", lambda: 1 / 0)
    err = run_failing(make_migration(a, b))
    assert type(err) is exception.MigrationError
    assert "during resolve_uris: ZeroDivisionError" in str(err)
    assert_rolled_back()


# -- abort, timeout, force-complete ---------------------------------------------------------


def test_abort_mid_transfer(world, drivers, make_migration, assert_rolled_back):
    guest = world.add_guest(A, "vm1", memory_mib=1024)
    migration = make_migration(*drivers)
    world.at(2.0, migration.abort)
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationAborted)
    assert err.result.status == flow.ABORTED == migration.status
    assert "canceled by client" in str(err)
    assert_rolled_back(boot_id=guest.boot_id)
    seen = kinds(migration)
    assert seen.index(events.ABORT_REQUESTED) < seen.index(events.ROLLED_BACK)
    assert 0 < world.history[-1].memory_processed < guest.memory_bytes
    assert world.clock.now() < 3.0


def test_abort_before_the_transfer(world, drivers, make_migration, guest,
                                   assert_rolled_back):
    migration = make_migration(*drivers)
    migration.abort()
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationAborted)
    assert err.result.status == flow.ABORTED
    assert world.history == []
    assert_rolled_back()


def test_completion_timeout_aborts(world, make_driver, make_migration, assert_rolled_back):
    guest = world.add_guest(A, "vm1", memory_mib=1024)
    a = make_driver(A, completion_timeout=1, timeout_action="abort")
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)
    world.at(0.5, lambda: world.set_link(B, "migration", False))  # the transfer stalls
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationTimeout)
    assert err.result.status == flow.TIMED_OUT == migration.status
    assert err.result.timeout_action == "abort"
    assert "within 2 s" in str(err) and "1 s/GiB for 2.0 GiB" in str(err)
    assert_rolled_back(boot_id=guest.boot_id)
    assert 2.0 < world.clock.now() < 3.5
    assert events.TIMEOUT_ACTION in kinds(migration)


@pytest.mark.parametrize("post_copy", [False, True])
def test_completion_timeout_forces_completion(world, make_driver, make_migration, post_copy):
    # dirtying faster than the link carries: pre-copy alone never converges
    guest = world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a = make_driver(A, completion_timeout=1, timeout_action="force_complete",
                    permit_post_copy=post_copy)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)
    result = migration.run()
    assert result.status == flow.COMPLETED and result.timeout_action == "force_complete"
    assert result.duration_s > 2.0  # not before the timeout
    assert result.progress.postcopy is post_copy
    assert world.history[-1].postcopy is post_copy
    assert world.where("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id
    assert events.TIMEOUT_ACTION in kinds(migration)


def test_without_a_timeout_a_busy_guest_does_not_converge(world, make_driver,
                                                          make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a = make_driver(A, strategy="static")
    migration = make_migration(a, make_driver(B, my_live_migration_ip=B_MIG4))
    world.at(30.0, migration.abort)
    assert isinstance(run_failing(migration), exception.MigrationAborted)


def test_force_complete_by_the_user_switches_to_post_copy(world, make_driver,
                                                          make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)
    world.at(1.0, migration.force_complete)
    result = migration.run()
    assert result.status == flow.COMPLETED and result.progress.postcopy
    assert result.timeout_action is None
    assert events.FORCE_COMPLETE_REQUESTED in kinds(migration)


def test_abort_during_post_copy_lets_the_migration_complete(world, make_driver,
                                                            make_migration, caplog):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=300)
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)
    world.at(1.0, migration.force_complete)
    world.at(1.6, migration.abort)
    with caplog.at_level(logging.WARNING, logger="migplane.core.flow"):
        result = migration.run()
    assert result.status == flow.COMPLETED and result.running_on == B
    assert world.where("vm1") == [B] and world.defined_on("vm1") == [B]
    assert "cannot be aborted" in caplog.text


def test_error_while_in_post_copy_finishes_instead_of_rolling_back(world, make_driver,
                                                                   make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=300)
    a = make_driver(A, permit_post_copy=True)
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    migration = make_migration(a, b)
    world.at(1.0, migration.force_complete)
    world.at(1.6, lambda: world.fail(A, "get_job_progress"))
    result = migration.run()
    assert result.status == flow.COMPLETED
    assert world.where("vm1") == [B] and world.defined_on("vm1") == [B]


def test_downtime_steps_follow_novas_schedule():
    settings = MigrationSettings(downtime_ms=400, downtime_steps=10, downtime_delay=30)
    assert list(monitor.downtime_steps(settings, 3.0)) == [
        (0, 40), (90, 76), (180, 112), (270, 148), (360, 184), (450, 220), (540, 256),
        (630, 292), (720, 328), (810, 364), (900, 400)]


@pytest.mark.parametrize("memory, disk, block, gib", [
    (256 * MiB, 0, False, 2.0), (3 * 1024 * MiB, 1024 * MiB, False, 3.0),
    (3 * 1024 * MiB, 1024 * MiB, True, 5.0), (256 * MiB, 3 * 1024 * MiB, True, 5.0),
    (2560 * MiB, 0, True, 2.5)])
def test_data_gib_counts_ram_and_copied_disk_at_least_two_each(memory, disk, block, gib):
    info = driver_mod.InstanceInfo("vm1", "running", memory, disk)
    assert flow.data_gib(info, block) == gib


def test_downtime_steps_applied_during_the_migration(world, make_driver, make_migration,
                                                     monkeypatch):
    world.add_guest(A, "vm1", memory_mib=1024)
    a = make_driver(A, downtime=500, downtime_steps=3, downtime_delay=3,
                    completion_timeout=0, strategy="static")
    b = make_driver(B, my_live_migration_ip=B_MIG4)
    calls = []
    original = a.set_max_downtime

    def record(instance, downtime_ms):
        calls.append((world.clock.now(), downtime_ms))
        original(instance, downtime_ms)

    monkeypatch.setattr(a, "set_max_downtime", record)
    migration = make_migration(a, b)
    world.at(0.1, lambda: world.set_link(A, "migration", False))  # stalls: never converges
    world.at(20.0, migration.abort)
    run_failing(migration)
    schedule = list(monitor.downtime_steps(a.settings.migration, 2.0))
    assert schedule == [(0, 166), (6, 277), (12, 388), (18, 500)]
    assert [d for _, d in calls] == [d for _, d in schedule]
    poll = a.settings.migration.poll_interval
    for (at, _), (due, _) in zip(calls, schedule, strict=False):
        assert due <= at < due + poll + 1e-6
    assert migration.downtime_ms == 500
    assert kinds(migration).count(events.DOWNTIME_CHANGED) == 4
    assert world.history[-1].max_downtime_ms == 500


# -- daemons dying ---------------------------------------------------------------------------


def test_destination_daemon_killed_mid_transfer(world, drivers, make_migration):
    guest = world.add_guest(A, "vm1", memory_mib=1024)
    migration = make_migration(*drivers)
    world.at(1.0, lambda: world.kill_daemon(B))
    err = run_failing(migration)
    # The guest runs on the source; the destination, which cannot be asked, is not
    # known to be clean: unresolved, and nothing was resumed or destroyed blindly.
    assert isinstance(err, exception.MigrationNotSettled)
    assert "Unable to read from monitor" in str(err)
    assert err.result.status == flow.FAILED and err.result.running_on == A
    assert err.result.verdict == events.VERDICT_UNRESOLVED
    assert world.where("vm1") == [A]
    source = world.hosts[A].guests["vm1"]
    assert source.state == "running" and source.boot_id == guest.boot_id
    assert "vm1" not in world.transfers
    world.restart_daemon(B)
    assert world.defined_on("vm1") == [A]
    assert world.hosts[B].guests == {}
    # host-b is usable again
    assert make_migration(*drivers).run().status == flow.COMPLETED
    assert world.where("vm1") == [B]


def test_source_daemon_killed_mid_transfer(world, drivers, make_migration,
                                           assert_rolled_back):
    guest = world.add_guest(A, "vm1", memory_mib=1024)
    migration = make_migration(*drivers)
    world.at(1.0, lambda: world.kill_daemon(A))
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationNotSettled)
    assert "Cannot reach the hypervisor on %s" % A in str(err)
    assert err.result.running_on == A
    assert err.result.verdict == events.VERDICT_UNRESOLVED
    assert world.where("vm1") == [A]
    assert world.defined_on("vm1") == [A]
    assert world.hosts[A].guests["vm1"].boot_id == guest.boot_id
    assert world.hosts[B].prepared == {} and world.hosts[B].guests == {}
    world.restart_daemon(A)
    assert make_migration(*drivers).run().running_on == B


def test_progress_error_after_the_job_completed_finishes_the_migration(
        world, drivers, make_migration, caplog):
    guest = world.add_guest(A, "vm1", memory_mib=32)  # done in about 0.32 s
    migration = make_migration(*drivers)
    world.at(0.4, lambda: world.fail(A, "get_job_progress"))  # before the 0.5 s poll
    with caplog.at_level(logging.WARNING, logger="migplane.core.flow"):
        result = migration.run()
    assert world.faults == {}
    assert result.status == flow.COMPLETED and result.running_on == B
    assert world.where("vm1") == [B] and world.defined_on("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id
    assert result.verdict == events.VERDICT_COMPLETED
    assert events.ROLLED_BACK not in kinds(migration)


def test_job_state_unknown_after_an_error_rolls_back(world, drivers, make_migration,
                                                     assert_rolled_back, monkeypatch):
    world.add_guest(A, "vm1", memory_mib=1024)
    a, b = drivers

    def broken(instance):
        raise exception.HypervisorUnavailable(host=A, reason="flaky")

    migration = make_migration(a, b)
    world.at(1.0, lambda: monkeypatch.setattr(a, "get_job_progress", broken))
    err = run_failing(migration)
    assert isinstance(err, exception.HypervisorUnavailable)
    assert_rolled_back()


def test_job_failure_reported_by_the_hypervisor(world, drivers, make_migration,
                                                assert_rolled_back):
    world.add_guest(A, "vm1", memory_mib=1024)

    def fail_job():
        transfer = world.transfers["vm1"]
        transfer.state, transfer.error = "failed", None
        world.hosts[B].guests.pop("vm1")

    migration = make_migration(*drivers)
    world.at(1.0, fail_job)
    err = run_failing(migration)
    assert type(err) is exception.MigrationError
    assert "the job failed" in str(err)
    assert_rolled_back()


def test_a_job_that_never_ends_is_left_unresolved(world, drivers, make_migration,
                                                 monkeypatch):
    """An abort the hypervisor ignores: the job may still move the guest, so the
    flow neither rolls back nor claims it did; the guest keeps running where it is."""
    world.add_guest(A, "vm1", memory_mib=1024)
    a, b = drivers
    aborts = []
    monkeypatch.setattr(a, "abort_job", aborts.append)  # the hypervisor ignores it
    migration = make_migration(a, b, settings=a.settings.migration.replace(
        poll_interval=0.01))
    world.at(0.1, lambda: world.set_link(B, "migration", False))  # never completes
    world.fail(A, "set_max_downtime")
    err = run_failing(migration)
    assert "injected fault in set_max_downtime" in str(err)
    assert aborts == ["vm1"]
    assert err.result.progress.state == driver_mod.JOB_RUNNING
    assert isinstance(err, exception.MigrationNotSettled)
    assert err.result.verdict == events.VERDICT_UNRESOLVED
    assert "the migration job still runs" in str(err)
    assert world.where("vm1") == [A]


def test_an_abort_the_hypervisor_dropped_is_sent_again(world, drivers, make_migration,
                                                       assert_rolled_back, monkeypatch):
    """libvirt accepts an abort that arrives before QEMU migrates, and drops it."""
    guest = world.add_guest(A, "vm1", memory_mib=2048)
    source = drivers[0]
    real_abort, calls = source.abort_job, []

    def first_abort_is_lost(instance):
        calls.append(world.clock.now())
        if len(calls) > 1:
            real_abort(instance)

    monkeypatch.setattr(source, "abort_job", first_abort_is_lost)
    migration = make_migration(*drivers)
    world.at(1.0, migration.abort)
    err = run_failing(migration)
    assert isinstance(err, exception.MigrationAborted)
    assert len(calls) == 2
    assert calls[1] - calls[0] >= flow.LiveMigration.ABORT_RETRY_S
    assert_rolled_back(boot_id=guest.boot_id)


# -- monitor_interval --------------------------------------------------------------------


class _SimulatedTimes(logging.Handler):
    """The world's simulated time of every progress line logged."""

    def __init__(self, world):
        super().__init__(logging.INFO)
        self.world, self.times = world, []

    def emit(self, record):
        if "% sent" in record.getMessage():
            self.times.append(self.world.clock.now())


@pytest.mark.parametrize("interval", [2, 7])
def test_progress_is_logged_every_monitor_interval(world, drivers, make_migration, interval):
    world.add_guest(A, "vm1", memory_mib=2048, dirty_mib_s=10)
    a, b = drivers
    settings = MigrationSettings(monitor_interval=interval, poll_interval=0.5)
    migration = make_migration(a, b, settings=settings)
    handler = _SimulatedTimes(world)
    log = logging.getLogger("migplane.core.flow")
    log.addHandler(handler)
    # setLevel, not an assignment to ``level``: only setLevel clears the logger's
    # cache of enabled levels, which an earlier migration's INFO lines filled.
    level = log.level
    log.setLevel(logging.INFO)
    try:
        migration.run()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    polls = [e for e in migration.events if e.kind == events.PROGRESS]
    assert len(handler.times) >= 3 and len(polls) > 2 * len(handler.times)
    gaps = [b - a for a, b in itertools.pairwise(handler.times)]
    # Progress is read every poll, logged once per monitor_interval (the poll after it).
    assert all(interval <= gap < interval + 1 for gap in gaps), gaps


def test_monitor_interval_zero_logs_no_progress(world, drivers, make_migration, caplog,
                                                guest):
    a, b = drivers
    migration = make_migration(a, b, settings=MigrationSettings(monitor_interval=0))
    with caplog.at_level(logging.INFO, logger="migplane.core.flow"):
        migration.run()
    assert not [r for r in caplog.records if "% sent" in r.getMessage()]
