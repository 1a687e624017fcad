"""The adaptive strategy in the flow, and a flow that survives driver mistakes.

Fake driver, simulated time. The busy guest is the issue's: 128 MiB rewriting
a 48 MiB working set at 32 MiB/s over a link capped at 16 MiB/s, which
neither bare virsh nor Nova's algorithm converge.
"""

import asyncio

import pytest

from migplane.core import convergence
from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.core import strategy
from migplane.core import units

MiB = units.MiB
A, B = "host-a", "host-b"
B_MIG4 = "198.51.100.12"


def escalations(migration):
    return [e.message.split(":")[0] for e in migration.events if e.kind == events.ESCALATED]


def busy(world, dirty_mib_s=32, working_set_mib=48):
    return world.add_guest(A, "vm1", memory_mib=128, dirty_mib_s=dirty_mib_s,
                           working_set_mib=working_set_mib)


def pair(make_driver, **options):
    options.setdefault("bandwidth", 16)
    return (make_driver(A, strategy="adaptive", **options),
            make_driver(B, my_live_migration_ip=B_MIG4))


# -- the adaptive strategy ------------------------------------------------------------


def test_the_busy_guest_converges_with_defaults(world, make_driver, make_migration):
    guest = busy(world)
    boot_id = guest.boot_id
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == boot_id
    assert result.progress.postcopy
    assert escalations(migration) == [strategy.ESCALATE_POST_COPY]
    assert result.duration_s < 3 * 128 / 16
    assert result.plan.method == strategy.METHOD_POST_COPY
    # sampled although the sample costs more than 5 % of this short first pass:
    # only a measurement arms post-copy by default (and gives up the handover)
    assert result.measurement.source == convergence.SAMPLING
    assert result.to_dict()["escalations"][0]["escalation"] == strategy.ESCALATE_POST_COPY
    assert result.to_dict()["plan"]["predicted_time_s"] > 0


def test_static_keeps_novas_behaviour_and_does_not_converge(world, make_driver,
                                                            make_migration):
    busy(world)
    a = make_driver(A, strategy="static", bandwidth=16)
    migration = make_migration(a, make_driver(B, my_live_migration_ip=B_MIG4))
    world.at(60.0, migration.abort)
    with pytest.raises(exception.MigrationAborted):
        migration.run()
    assert escalations(migration) == []
    assert events.MEASURED not in [e.kind for e in migration.events]
    assert world.history[-1].settings.permit_post_copy is False
    assert world.history[-1].settings.auto_converge is False
    assert world.where("vm1") == [A]


def test_a_sampled_measurement_plans_before_anything_moves(world, make_driver,
                                                           make_migration):
    # A long transfer (2 GiB at 16 MiB/s): a 1 s sample is worth its cost.
    world.add_guest(A, "vm1", memory_mib=2048, dirty_mib_s=32, working_set_mib=48)
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.measurement.source == convergence.SAMPLING
    assert result.measurement.dirty_rate == 32 * MiB
    planned = [e for e in migration.events if e.kind == events.PLANNED]
    started = [e.kind for e in migration.events].index(events.TRANSFER_STARTED)
    assert migration.events.index(planned[0]) < started
    assert result.plan.link_rate_source == convergence.BANDWIDTH_LIMIT
    assert result.status == flow.COMPLETED


def test_a_short_transfer_learns_from_the_first_pass_instead(world, make_driver,
                                                             make_migration):
    # post-copy permitted outright: the sample would not decide the handover
    busy(world)
    migration = make_migration(*pair(make_driver, permit_post_copy=True))
    result = migration.run()
    measured = [e.message for e in migration.events if e.kind == events.MEASURED]
    assert "first pass" in measured[0] and "first-iteration" in measured[1]
    assert result.measurement.dirty_rate == 32 * MiB


def test_the_re_plan_weighs_what_the_first_pass_left(world, make_driver, make_migration):
    # Half the link: pre-copy converges, but after the first pass switching to
    # post-copy at once sends what is left once instead of pass after pass;
    # permitted explicitly, post-copy is taken because it is faster.
    busy(world, dirty_mib_s=8, working_set_mib=64)
    migration = make_migration(*pair(make_driver, permit_post_copy=True))
    result = migration.run()
    assert result.status == flow.COMPLETED and result.progress.postcopy
    assert result.plan.method == strategy.METHOD_POST_COPY
    assert "after the first pass" in result.plan.reasons["predictions"]
    assert "re-planned" in result.plan.reasons["revised"]
    assert result.plan.predicted_time_s > 128 / 16 * 0.5   # the first pass counts
    assert result.plan.post_copy_for_s > 0
    assert "loses the guest" in result.plan.reasons["exposure"]


def test_by_default_post_copy_is_not_taken_for_a_small_gain(world, make_driver,
                                                           make_migration):
    busy(world, dirty_mib_s=8, working_set_mib=64)
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED and not result.progress.postcopy
    assert result.plan.method != strategy.METHOD_POST_COPY
    assert "not worth the risk" in result.plan.reasons["method"]
    assert escalations(migration) == []


def test_a_slow_guest_stays_in_pre_copy_after_the_re_plan(world, make_driver,
                                                          make_migration):
    busy(world, dirty_mib_s=2, working_set_mib=64)
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED and not result.progress.postcopy
    assert result.plan.method == strategy.METHOD_PRE_COPY and escalations(migration) == []


def test_without_sampling_it_says_so_and_learns(world, make_driver, make_migration):
    world.add_guest(A, "vm1", memory_mib=2048, dirty_mib_s=4)
    world.hosts[A].dirty_rate_sampling = False
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED
    assert result.measurement.source == convergence.FIRST_ITERATION
    assert "cannot sample" in [e.message for e in migration.events
                               if e.kind == events.MEASURED][0]


def test_link_rate_from_the_interface_when_unlimited(world, make_driver, make_migration):
    world.add_guest(A, "vm1", memory_mib=2048, dirty_mib_s=4)
    world.hosts[A].reports_link_speed = True
    migration = make_migration(*pair(make_driver, bandwidth=0))
    result = migration.run()
    assert result.plan.link_rate_source == convergence.INTERFACE_SPEED
    assert result.plan.link_rate == 100 * MiB


def test_auto_converge_when_post_copy_is_not_permitted(world, make_driver, make_migration):
    busy(world, dirty_mib_s=24, working_set_mib=128)
    migration = make_migration(*pair(make_driver, permit_post_copy=False))
    result = migration.run()
    assert result.status == flow.COMPLETED and not result.progress.postcopy
    transfer = world.history[-1]
    assert transfer.settings.auto_converge and transfer.throttle_pct > 0
    assert result.progress.cpu_throttle_pct == transfer.throttle_pct
    assert strategy.ESCALATE_AUTO_CONVERGE in escalations(migration)
    assert result.progress.downtime_ms <= 500


def test_post_copy_after_auto_converge_cannot_do_it(world, make_driver, make_migration):
    # A tiny budget and a guest that dirties a lot: throttling alone is too slow.
    busy(world, dirty_mib_s=400, working_set_mib=128)
    a, b = pair(make_driver, downtime=100, permit_post_copy=True)
    migration = make_migration(a, b)
    # Blind plan (nothing known up front), post-copy permitted: both armed, the
    # monitor walks the ladder.
    migration.settings = migration.settings.replace(dirty_rate_window=0)
    world.hosts[A].dirty_rate_sampling = False
    result = migration.run()
    assert result.status == flow.COMPLETED and result.progress.postcopy
    assert world.where("vm1") == [B]


def test_escalations_follow_the_ladder_when_blind(world, make_driver, make_migration,
                                                  monkeypatch):
    busy(world, dirty_mib_s=24, working_set_mib=128)
    # No re-planning from the first pass: only the monitor decides.
    monkeypatch.setattr(flow.LiveMigration, "_learn_from_first_pass",
                        lambda self, history, caps: None)
    world.hosts[A].dirty_rate_sampling = False   # blind: post-copy not armed
    migration = make_migration(*pair(make_driver, downtime=100))
    result = migration.run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]
    assert not result.plan.post_copy and not result.progress.postcopy
    taken = escalations(migration)
    assert taken == [e for e in strategy.LADDER if e in taken]
    assert taken[0] == strategy.RAISE_DOWNTIME
    downtimes = [e.message for e in migration.events if e.kind == events.DOWNTIME_CHANGED]
    assert downtimes[0] == "max downtime 50 ms (downtime step at 0 s)"  # half the budget
    assert downtimes[-1].endswith("raised to the budget, 100 ms")
    assert migration.downtime_ms == world.history[-1].max_downtime_ms == 100


def test_an_armed_job_holds_its_downtime_and_switches_over_through_post_copy(
        world, make_driver, make_migration, monkeypatch):
    """Armed post-copy rules out the paused handover: the downtime stays at its
    floor, never raised, and the job switches over through post-copy."""
    busy(world, dirty_mib_s=24, working_set_mib=128)
    monkeypatch.setattr(flow.LiveMigration, "_learn_from_first_pass",
                        lambda self, history, caps: None)
    world.hosts[A].dirty_rate_sampling = False
    migration = make_migration(*pair(make_driver, downtime=100, permit_post_copy=True))
    result = migration.run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]
    assert result.plan.post_copy and result.progress.postcopy
    assert strategy.RAISE_DOWNTIME not in result.plan.escalations
    downtimes = [e.message for e in migration.events if e.kind == events.DOWNTIME_CHANGED]
    assert downtimes == ["max downtime %d ms (downtime step at 0 s)"
                         % strategy.ARMED_DOWNTIME_MS]
    assert world.history[-1].max_downtime_ms == strategy.ARMED_DOWNTIME_MS
    assert result.plan.reasons["handover"].startswith("through post-copy")


def test_an_armed_converging_job_switches_over_through_post_copy(
        world, make_driver, make_migration):
    """A guest that pre-copy would finish still switches over through post-copy
    when post-copy is armed, once a pass fits the budget: and so a management
    link cut at the switch-over cannot make libvirt resume the source."""
    guest = world.add_guest(A, "vm1", memory_mib=128, dirty_mib_s=2, working_set_mib=16)
    migration = make_migration(*pair(make_driver, downtime=300, permit_post_copy=True))
    result = migration.run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]
    assert result.progress.postcopy and escalations(migration) == []
    switch = [e.message for e in migration.events if e.kind == events.SWITCH_OVER]
    assert len(switch) == 1 and "within the 300 ms allowed" in switch[0], switch
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id


def test_nothing_escalates_for_an_idle_guest(world, make_driver, make_migration):
    world.add_guest(A, "vm1", memory_mib=128, dirty_mib_s=1)
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED and not result.progress.postcopy
    assert escalations(migration) == []
    assert result.plan.method == strategy.METHOD_PRE_COPY


def test_permit_false_is_obeyed(world, make_driver, make_migration):
    busy(world)
    a, b = pair(make_driver, permit_post_copy=False, permit_auto_converge=False)
    migration = make_migration(a, b)
    world.at(60.0, migration.abort)
    with pytest.raises(exception.MigrationAborted):
        migration.run()
    assert world.history[-1].settings.permit_post_copy is False
    assert strategy.ESCALATE_POST_COPY not in escalations(migration)
    assert world.where("vm1") == [A]


# -- robustness: driver mistakes and a second flow ------------------------------------


class Wrapped:
    """A driver proxy overriding some methods."""

    def __init__(self, inner, **overrides):
        self._inner = inner
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_unknown_job_state_is_a_typed_error_naming_driver_and_step(
        world, drivers, make_migration, assert_rolled_back):
    world.add_guest(A, "vm1", memory_mib=256, dirty_mib_s=10)
    a, b = drivers
    done = driver_mod.JobProgress(state="done")
    source = Wrapped(a, get_job_progress=lambda instance: done)
    migration = make_migration(source, b)
    with pytest.raises(exception.DriverContractError) as info:
        migration.run()
    assert "fake" in str(info.value) and "get_job_progress" in str(info.value)
    assert "'done'" in str(info.value)
    assert world.where("vm1") == [A]


def test_a_wrong_instance_info_is_refused_before_the_transfer(world, drivers,
                                                              make_migration,
                                                              assert_rolled_back):
    world.add_guest(A, "vm1", memory_mib=256)
    a, b = drivers
    source = Wrapped(a, get_instance_info=lambda instance: {"memory_bytes": 1})
    migration = make_migration(source, b)
    with pytest.raises(exception.DriverContractError, match="get_instance_info"):
        migration.run()
    assert world.history == []  # nothing moved
    assert_rolled_back()


def test_polling_after_an_abort_is_bounded(world, drivers, make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a, b = drivers
    ignored = []
    source = Wrapped(a, abort_job=lambda instance: ignored.append(world.clock.now()))
    poll = 0.05
    migration = make_migration(source, b, settings=a.settings.migration.replace(
        poll_interval=poll))
    world.at(2.0, migration.abort)
    with pytest.raises(exception.MigplaneError, match="still runs 120 s after"):
        migration.run()
    assert len(ignored) >= 2
    # Gave up after ABORT_GIVE_UP_S, then the bounded waits of settling: for the
    # job to end, then for the hosts to settle (the job still runs: unresolved).
    assert world.clock.now() < (2.0 + flow.LiveMigration.ABORT_GIVE_UP_S
                                + 2 * flow.LiveMigration.SETTLE_WAIT_S + 1)


def test_a_second_flow_for_the_same_guest_is_refused_and_touches_nothing(
        world, drivers, make_migration):
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a, b = drivers
    first = make_migration(a, b)
    second = make_migration(a, b)
    outcome = {}

    def run_second():  # in the middle of the first's transfer
        try:
            second.run()
        except exception.MigplaneError as err:
            outcome["error"] = err
        outcome["transfer"] = world.transfers["vm1"].state
        outcome["incoming"] = world.hosts[B].guests["vm1"].state

    world.at(3.0, run_second)
    world.at(6.0, first.abort)
    with pytest.raises(exception.MigrationAborted):
        first.run()
    err = outcome["error"]
    assert isinstance(err, exception.MigrationInProgress)
    assert first.id in str(err) and err.result.running_on is None
    assert [e.kind for e in second.events] == [events.FAILED]
    assert outcome["transfer"] == "running" and outcome["incoming"] == "incoming"
    # The first flow ran to its own end: aborted by its own request only.
    assert [e.kind for e in first.events].count(events.ABORT_REQUESTED) == 1
    assert world.where("vm1") == [A]
    # Free again afterwards.
    third = make_migration(a, b, settings=a.settings.migration.replace(
        permit_post_copy=True, timeout_action="force_complete", completion_timeout=1))
    assert third.run().status == flow.COMPLETED


def test_the_switch_to_post_copy_waits_for_a_destination_that_answers(
        world, make_driver, make_migration, caplog):
    """The switch needs the control plane: while the destination cannot be
    asked, pre-copy goes on and the switch waits for it."""
    guest = busy(world)
    world.at(4.0, lambda: world.cut_off(B))
    world.at(12.0, lambda: world.cut_off(B, answers=True))
    migration = make_migration(*pair(make_driver))
    result = migration.run()
    assert result.status == flow.COMPLETED and result.progress.postcopy
    switched = [e.elapsed for e in migration.events if e.kind == events.ESCALATED]
    assert len(switched) == 1 and switched[0] >= 12.0 - migration._start, switched
    assert any("the switch to post-copy waits" in r.getMessage() for r in caplog.records)
    assert world.hosts[B].guests["vm1"].boot_id == guest.boot_id


def test_a_claim_passes_to_the_flow_of_its_id_and_refuses_any_other(
        world, drivers, make_migration):
    """One guard: a caller (the agent) claims the guest before it has a flow;
    the flow of that id takes the claim over and ends it, another is refused."""
    world.add_guest(A, "vm1", memory_mib=128, dirty_mib_s=1)
    a, b = drivers
    mine = make_migration(a, b)
    flow.claim(A, "vm1", mine.id)
    try:
        with pytest.raises(exception.MigrationInProgress, match=mine.id):
            flow.claim(A, "vm1", "another")
        other = make_migration(a, b)
        with pytest.raises(exception.MigrationInProgress):
            other.run()
        assert mine.run().status == flow.COMPLETED
    except BaseException:
        flow.release(A, "vm1", mine.id)   # not to leave it to the next tests
        raise
    flow.claim(A, "vm1", "another")   # ended by the flow that took it over
    flow.release(A, "vm1", "another")


def test_a_duplicate_from_elsewhere_never_touches_the_running_migration(
        world, drivers, make_migration):
    """A second flow this process does not know of (another process, another
    agent) is refused by the destination before anything is prepared, so its
    rollback neither aborts the first job nor removes the incoming guest."""
    world.add_guest(A, "vm1", memory_mib=512, dirty_mib_s=150)
    a, b = drivers
    first = make_migration(a, b)
    outcome = {}

    def duplicate():
        running, flow._running = dict(flow._running), {}  # as if in another process
        try:
            make_migration(a, b).run()
        except exception.MigplaneError as err:
            outcome["error"] = err
        finally:
            flow._running.update(running)
        outcome["transfer"] = world.transfers["vm1"].state
        outcome["incoming"] = world.hosts[B].guests["vm1"].state

    world.at(2.0, duplicate)
    world.at(4.0, first.abort)
    with pytest.raises(exception.MigrationAborted):
        first.run()
    assert isinstance(outcome["error"], exception.DestinationCheckFailed)
    assert outcome["transfer"] == "running" and outcome["incoming"] == "incoming"
    aborts = [e for e in first.events if e.kind == events.ABORT_REQUESTED]
    assert len(aborts) == 1 and aborts[0].elapsed >= 4.0
    assert world.where("vm1") == [A]


def test_a_driver_refusing_to_start_is_not_aborted_by_the_flow(world, drivers,
                                                             make_migration):
    world.add_guest(A, "vm1", memory_mib=512)
    a, b = drivers
    calls = []

    def refuse(*args):
        raise exception.MigrationError(instance="vm1", step="live_migration",
                                       reason="a migration job is already running")

    source = Wrapped(a, live_migration=refuse,
                     abort_job=lambda instance: calls.append("abort_job"),
                     rollback_live_migration_at_source=lambda *a: calls.append("rb"))
    with pytest.raises(exception.MigrationError, match="already running"):
        make_migration(source, b).run()
    assert calls == []


def test_clock_and_sleep_come_from_the_driver(world, drivers):
    world.add_guest(A, "vm1", memory_mib=64)
    a, b = drivers
    migration = flow.LiveMigration("vm1", a, b, a.settings.migration)
    result = migration.run()  # would hang at 0 % on real time
    assert result.status == flow.COMPLETED
    assert result.duration_s == pytest.approx(world.clock.now(), abs=0.01)


def test_async_listeners_are_refused(world, drivers):
    a, b = drivers
    migration = flow.LiveMigration("vm1", a, b, a.settings.migration)

    async def listener(event):
        pass

    class AsyncCallable:
        async def __call__(self, event):
            pass

    for bad in (listener, AsyncCallable()):
        with pytest.raises(TypeError, match="coroutine"):
            migration.subscribe(bad)
    with pytest.raises(TypeError, match="not callable"):
        migration.subscribe(42)
    assert asyncio.iscoroutinefunction(listener)
