"""Property tests of the strategy (core.strategy) and the monitor (core.monitor).

The monitor's decisions are checked over synthetic progress traces: a job
whose passes shrink (converging) and one whose guest dirties at least as fast
as the link carries (not converging), each sampled every poll, with random
sizes, rates, plans and escalations already taken.
"""

import dataclasses

from hypothesis import assume
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import driver as driver_mod
from migplane.core import monitor
from migplane.core import settings as settings_mod
from migplane.core import strategy

MiB = 2 ** 20
ALL = caps_mod.Capabilities(post_copy=True, auto_converge=True, post_copy_recovery=True)
ESCALATIONS = (monitor.RELY_ON_AUTO_CONVERGE, monitor.SWITCH_TO_POST_COPY, monitor.PAUSE,
               monitor.ABORT)

permits = st.sampled_from([None, True, False])
memories = st.integers(16, 8192).map(lambda m: m * MiB)
links = st.integers(1, 2000).map(lambda r: r * MiB)
budgets = st.integers(100, 5000)


@st.composite
def plans(draw, strategy_name=strategy.ADAPTIVE):
    memory = draw(memories)
    link = draw(links)
    dirty = draw(st.one_of(st.none(), st.integers(0, 8 * link)))
    settings = settings_mod.MigrationSettings(
        strategy=strategy_name, permit_post_copy=draw(permits),
        permit_auto_converge=draw(permits), downtime_ms=draw(budgets),
        parallel_connections=draw(st.sampled_from([1, 1, 4])),
        tunnelled=draw(st.booleans()),
        max_parallel_connections=draw(st.sampled_from([1, 2, 8])),
        stream_rate_mib=draw(st.integers(1, 2000)),
        permit_compression=draw(st.booleans()))
    caps = caps_mod.Capabilities(post_copy=draw(st.booleans()),
                                 auto_converge=draw(st.booleans()),
                                 parallel_connections=draw(st.booleans()),
                                 compression=draw(st.sampled_from([(), ("xbzrle", "mt")])),
                                 post_copy_recovery=draw(st.booleans()))
    measurement = (convergence.DirtyRateMeasurement() if dirty is None else
                   convergence.DirtyRateMeasurement(dirty, convergence.SAMPLING, 1.0))
    # A plan before the transfer, or a re-plan once the first pass is done.
    remaining = draw(st.one_of(st.none(), st.integers(0, memory)))
    plan = strategy.choose(memory, measurement,
                           convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT),
                           caps, settings, remaining_bytes=remaining,
                           elapsed_s=0.0 if remaining is None else memory / link)
    return plan, settings, caps


def progress(iteration, remaining, processed, dirty, postcopy=False, throttle=0):
    return driver_mod.JobProgress(
        state=driver_mod.JOB_RUNNING, memory_remaining=int(remaining),
        memory_processed=int(processed), dirty_rate=int(dirty), iteration=iteration,
        postcopy=postcopy, cpu_throttle_pct=throttle)


def trace(memory, link, dirty, polls, poll_s=0.5, working_set=None, steps=50):
    """Samples of a simulated pre-copy job, one per poll (no switch-over)."""
    working_set = working_set or memory
    samples, t, remaining, pass_left, processed, iteration = [], 0.0, memory, memory, 0, 1
    dt = poll_s / steps
    for _ in range(polls):
        for _ in range(steps):
            t += dt
            sent = min(link * dt, remaining)
            remaining -= sent
            pass_left -= sent
            processed += sent
            remaining = min(max(pass_left, 0) + working_set, remaining + dirty * dt)
            if pass_left <= 0:
                iteration += 1
                pass_left = remaining
        samples.append((t, progress(iteration, remaining, processed, dirty)))
    return samples


# -- strategy -------------------------------------------------------------------------


@given(plans())
def test_a_plan_never_arms_what_is_not_permitted_or_supported(found):
    plan, settings, caps = found
    assert not plan.post_copy or (settings.permit_post_copy is not False and caps.post_copy
                                  and not settings.tunnelled
                                  and settings.parallel_connections == 1)
    assert not plan.auto_converge or (settings.permit_auto_converge is not False
                                      and caps.auto_converge)
    assert (strategy.ESCALATE_POST_COPY in plan.escalations) <= plan.post_copy
    assert (strategy.ESCALATE_AUTO_CONVERGE in plan.escalations) <= plan.auto_converge
    assert plan.post_copy_after_first_pass <= plan.post_copy
    order = [strategy.LADDER.index(e) for e in plan.escalations]
    assert order == sorted(order)
    assert plan.downtime_budget_ms == settings.downtime_ms
    if plan.predicted_downtime_ms is not None:
        assert plan.predicted_downtime_ms <= settings.downtime_ms
    assert plan.reasons["method"] and plan.reasons["measurement"]
    assert strategy.MigrationPlan.from_dict(plan.to_dict()) == plan


@given(plans(), plans(strategy_name=strategy.STATIC))
def test_connections_and_compression_only_when_permitted_and_declared(found, static):
    for plan, settings, caps in (found, static):
        chosen = plan.parallel_connections != settings.parallel_connections
        assert not chosen or (
            plan.strategy == strategy.ADAPTIVE and settings.parallel_connections == 1
            and 1 < plan.parallel_connections <= settings.max_parallel_connections
            and caps.parallel_connections and not settings.tunnelled
            and plan.link_rate > settings.stream_rate_mib * MiB)
        assert not plan.compression or (
            plan.strategy == strategy.ADAPTIVE and settings.permit_compression
            and plan.compression == (strategy.XBZRLE,)
            and strategy.XBZRLE in caps.compression and plan.parallel_connections == 1
            and plan.dirty_rate is not None)
        assert plan.parallel_connections == 1 or not plan.post_copy
        assert plan.reasons["parallel_connections"] and plan.reasons["compression"]
        transfer = plan.transfer_settings(settings)
        assert transfer.parallel_connections == plan.parallel_connections
        assert transfer.compression == plan.compression


@given(memories, st.integers(2, 16), st.floats(0, 0.3), st.integers(2, 8))
def test_a_link_faster_than_one_connection_gets_parallel_connections(
        memory, times, ratio, most):
    """A guest that converges by pre-copy over a link several connections wide
    gets them (as many as the link needs, at most the permitted), the same way
    every time."""
    stream = 100 * MiB
    link = convergence.LinkRate(times * stream, convergence.BANDWIDTH_LIMIT)
    args = (memory, convergence.DirtyRateMeasurement(int(ratio * stream),
                                                     convergence.SAMPLING),
            link, caps_mod.Capabilities(post_copy=True, auto_converge=True,
                                        parallel_connections=True),
            settings_mod.MigrationSettings(max_parallel_connections=most,
                                           stream_rate_mib=100))
    plan = strategy.choose(*args)
    assert plan == strategy.choose(*args)
    assert plan.parallel_connections == min(most, times)
    assert not plan.post_copy and plan.method == strategy.METHOD_PRE_COPY


@given(memories, links, st.floats(1.05, 8.0))
def test_xbzrle_is_armed_for_a_guest_rewriting_its_working_set(memory, link, ratio):
    args = (memory, convergence.DirtyRateMeasurement(int(ratio * link),
                                                     convergence.SAMPLING),
            convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT),
            caps_mod.Capabilities(post_copy=True, compression=("xbzrle",)))
    on = strategy.choose(*args, settings_mod.MigrationSettings(
        permit_compression=True, stream_rate_mib=2000))
    assert on.compression == (strategy.XBZRLE,)
    assert "xbzrle armed" in on.reasons["compression"]
    off = strategy.choose(*args, settings_mod.MigrationSettings(stream_rate_mib=2000))
    assert off.compression == () and "not permitted" in off.reasons["compression"]


@given(plans(strategy_name=strategy.STATIC))
def test_static_is_novas_choice(found):
    plan, settings, caps = found
    assert plan.escalations == () and not plan.post_copy_after_first_pass
    assert plan.post_copy == bool(settings.permit_post_copy and caps.post_copy
                                  and not settings.tunnelled
                                  and settings.parallel_connections == 1)
    assert plan.auto_converge == bool(settings.permit_auto_converge and caps.auto_converge
                                      and not plan.post_copy)
    # What the driver gets is what Nova would ask for.
    transfer = plan.transfer_settings(settings)
    assert transfer.auto_converge == plan.auto_converge
    assert transfer.post_copy == plan.post_copy


@given(memories, links, st.floats(0, 0.3), budgets)
def test_a_guest_slower_than_a_third_of_the_link_gets_plain_pre_copy(memory, link, ratio,
                                                                     budget):
    plan = strategy.choose(
        memory, convergence.DirtyRateMeasurement(int(ratio * link), convergence.SAMPLING),
        convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT), ALL,
        settings_mod.MigrationSettings(downtime_ms=budget, stream_rate_mib=2000))
    assert plan.method == strategy.METHOD_PRE_COPY and plan.predicted_time_s is not None


@given(memories, links, st.floats(1.0, 8.0), budgets)
def test_a_guest_dirtying_faster_than_the_link_is_given_an_escalation(memory, link, ratio,
                                                                      budget):
    assume(memory / link > budget / 1000.0)  # not a single short pass
    plan = strategy.choose(
        memory, convergence.DirtyRateMeasurement(int(ratio * link), convergence.SAMPLING),
        convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT), ALL,
        settings_mod.MigrationSettings(downtime_ms=budget))
    assert plan.method in (strategy.METHOD_AUTO_CONVERGE, strategy.METHOD_POST_COPY)
    assert plan.predicted_time_s is not None


@given(memories, links, st.floats(0, 8.0), budgets, st.integers(0, 8))
def test_predictions_respect_the_budget_and_take_at_least_one_pass(memory, link, ratio,
                                                                   budget, initial):
    throttle = (10 + initial * 10, 10) if initial else None
    found = strategy.predict(memory, ratio * link, link, budget, throttle=throttle)
    if found.converges:
        assert found.downtime_ms <= budget
        assert found.total_s >= memory / link - 1e-3  # rounded to ms


@given(memories, links, st.floats(0, 8.0), budgets, st.floats(0, 1), st.floats(0, 600))
def test_a_re_plan_weighs_only_what_is_left(memory, link, ratio, budget, left, elapsed):
    """After the first pass, post-copy is chosen (permit_post_copy unset) only
    when finishing by pre-copy is predicted not to converge or to take at least
    post_copy_min_gain times as long as switching now; the total
    prediction includes the time already spent; the same inputs, the same plan."""
    args = (memory, convergence.DirtyRateMeasurement(int(ratio * link),
                                                     convergence.FIRST_ITERATION),
            convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT), ALL,
            settings_mod.MigrationSettings(downtime_ms=budget, permit_auto_converge=False,
                                           stream_rate_mib=2000))
    remaining = int(left * memory)
    plan = strategy.choose(*args, remaining_bytes=remaining, elapsed_s=elapsed)
    assert plan == strategy.choose(*args, remaining_bytes=remaining, elapsed_s=elapsed)
    pre = strategy.predict(memory, int(ratio * link), link, budget, start=remaining)
    now = strategy.post_copy_now(remaining, link)
    if plan.method == strategy.METHOD_POST_COPY:
        assert plan.post_copy_after_first_pass
        assert not pre.converges or pre.total_s >= strategy.POST_COPY_MIN_GAIN * now.total_s
    elif pre.converges:
        assert plan.method == strategy.METHOD_PRE_COPY
    if plan.predicted_time_s is not None:
        assert plan.predicted_time_s >= elapsed - 1e-3


# -- monitor ----------------------------------------------------------------------------


@given(plans(), st.integers(1, 120), st.integers(0, 5000),
       st.dictionaries(st.sampled_from(strategy.LADDER), st.integers(1, 20)))
def test_no_decision_exceeds_the_budget_or_post_copies_unarmed(found, polls, current, taken):
    plan, _, _ = found
    link = plan.link_rate
    dirty = plan.dirty_rate if plan.dirty_rate is not None else link
    samples = trace(plan.memory_bytes, link, dirty, polls, steps=5)
    decision = monitor.adapt(plan, samples, taken, current)
    if decision.action == monitor.SET_DOWNTIME:
        assert current < decision.value <= plan.downtime_budget_ms
    if decision.action == monitor.SWITCH_TO_POST_COPY:
        assert plan.post_copy and strategy.ESCALATE_POST_COPY in plan.escalations
    assert decision.action not in (monitor.ABORT, monitor.PAUSE)
    if decision.escalation:
        assert decision.escalation in plan.escalations
        assert decision.escalation not in taken
    assert decision.reason or decision.action == monitor.NONE


@given(plans(), st.integers(1, 120), st.integers(0, 5000),
       st.dictionaries(st.sampled_from(strategy.LADDER), st.integers(1, 20)))
def test_an_armed_job_never_has_its_downtime_raised(found, polls, current, taken):
    """Armed post-copy rules out the paused handover: a raised downtime would
    let the job end in pre-copy, so the switch-over is left to switch_over."""
    plan, _, _ = found
    if plan.post_copy:
        assert strategy.RAISE_DOWNTIME not in plan.escalations
    armed = dataclasses.replace(plan, post_copy=True)
    link = plan.link_rate
    dirty = plan.dirty_rate if plan.dirty_rate is not None else link
    samples = trace(plan.memory_bytes, link, dirty, polls, steps=5)
    assert monitor.adapt(armed, samples, taken, current).action != monitor.SET_DOWNTIME


@given(st.integers(16, 4096), st.integers(1, 2000), st.floats(0.0, 3.0),
       st.integers(1, 200), st.one_of(st.none(), st.integers(1, 5000)),
       st.booleans(), st.one_of(st.none(), st.floats(0, 4000 * MiB)))
def test_switch_over_only_where_pre_copy_would_end(memory_mib, link_mib, ratio, polls,
                                                   allowed, postcopy, hint):
    """Never in post-copy or without a downtime allowed; after the first pass
    only for a pass that fits it, or at a pass's end whose dirtying fits it."""
    memory, link = memory_mib * MiB, link_mib * MiB
    samples = trace(memory, link, ratio * link, polls, steps=5)
    if postcopy:
        t, last = samples[-1]
        samples[-1] = (t, dataclasses.replace(last, postcopy=True))
    decision = monitor.switch_over(samples, allowed, 0.05, hint)
    last = samples[-1][1]
    if decision.action != monitor.SWITCH_TO_POST_COPY:
        assert decision.action == monitor.NONE
        return
    assert not postcopy and allowed is not None
    assert decision.escalation is None and "switch-over through post-copy" in decision.reason
    (t0, p0), (t1, p1) = samples[-(monitor.CONFIRM_POLLS + 1):][0], samples[-1]
    rate = ((p1.memory_processed - p0.memory_processed) / (t1 - t0) if t1 > t0 else 0) \
        or p1.memory_processed / t1
    start = next(p.memory_remaining for _, p in samples if p.iteration == last.iteration)
    fits = last.iteration >= 2 and 1000.0 * max(start, last.memory_remaining) / rate \
        <= allowed
    assert fits or last.memory_remaining <= 0.1 * rate


def qemu_trace(memory, link, dirty, watch_s, threshold_ms):
    """Samples every ``watch_s`` of a converging pre-copy job as QEMU runs it:
    what the guest dirties during a pass is counted at the pass's end (the
    bitmap sync), and the job ends in pre-copy at a sync that leaves no more
    than ``threshold_ms`` of sending. Returns (samples, index of the sample
    from which the job has ended) or None for an end after the samples."""
    samples, t, left, processed, iteration, dirtied = [], 0.0, memory, 0.0, 1, 0.0
    steps = 20
    dt = watch_s / steps
    end = None
    while end is None and t < 40 * memory / link + 10:
        for _ in range(steps):
            t += dt
            sent = min(link * dt, left)
            left -= sent
            processed += sent
            dirtied = min(memory, dirtied + dirty * dt)
            if left <= 0:
                if 1000.0 * dirtied / link <= threshold_ms:
                    end = len(samples)  # stopped: the next sample does not come
                    break
                iteration, left, dirtied = iteration + 1, dirtied, 0.0
        samples.append((t, driver_mod.JobProgress(
            state=driver_mod.JOB_RUNNING, memory_remaining=int(left),
            memory_processed=int(processed), iteration=iteration,
            dirty_rate=int(dirty) if iteration >= 2 else 0)))
    return samples, end


@given(st.integers(64, 2048), st.integers(10, 1000), st.floats(0.0, 0.9), budgets,
       st.booleans())
def test_an_armed_converging_job_switches_over_before_pre_copy_would_end(
        memory_mib, link_mib, ratio, budget, measured):
    """Looked at every 50 ms, a converging job that armed post-copy switches
    over before the hypervisor, holding the downtime at ARMED_DOWNTIME_MS, ends
    it in pre-copy (without a handover), measured before the move or not."""
    memory, link = memory_mib * MiB, link_mib * MiB
    assume(memory / link <= 20)
    watch = 0.05
    samples, end = qemu_trace(memory, link, ratio * link, watch, strategy.ARMED_DOWNTIME_MS)
    for i in range(1, len(samples) + 1):
        if end is not None and i > end:
            break
        if monitor.switch_over(samples[:i], budget, watch,
                               ratio * link if measured else None):
            return
    raise AssertionError("the job ended in pre-copy before it switched over")


def _run(plan, samples, start_downtime):
    """Feed samples one poll at a time, as the flow does; return the decisions
    (until the job would switch over within its max downtime)."""
    taken, downtime, decisions = {}, start_downtime, []
    for i in range(1, len(samples) + 1):
        seen = samples[:i]
        if seen[-1][1].memory_remaining <= plan.link_rate * downtime / 1000.0:
            break
        decision = monitor.adapt(plan, seen, taken, downtime)
        if decision.action == monitor.SET_DOWNTIME:
            downtime = decision.value
        if decision.escalation:
            taken[decision.escalation] = seen[-1][1].iteration
        decisions.append((i, decision))
        if decision.action == monitor.SWITCH_TO_POST_COPY:
            break
    return decisions


def _blind(memory, link, budget, **permits):
    """An adaptive plan made without a dirty rate: only the monitor can tell."""
    return strategy.choose(memory, convergence.DirtyRateMeasurement(),
                           convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT), ALL,
                           settings_mod.MigrationSettings(downtime_ms=budget, **permits))


@given(st.integers(64, 2048), st.integers(10, 1000), st.floats(0.0, 0.4), budgets)
def test_a_converging_job_is_never_escalated(memory_mib, link_mib, ratio, budget):
    memory, link = memory_mib * MiB, link_mib * MiB
    assume(memory / link <= 20)
    plan = _blind(memory, link, budget)
    samples = trace(memory, link, ratio * link, polls=int(4 * memory / link / 0.5) + 4,
                    steps=20)
    for _, decision in _run(plan, samples, 50):
        assert decision.escalation is None, decision
        assert decision.action in (monitor.NONE, monitor.SET_DOWNTIME)


@given(st.integers(64, 2048), st.integers(10, 200), st.floats(1.0, 6.0),
       st.sampled_from([None, True]), st.sampled_from([None, True]))
def test_a_job_that_does_not_converge_is_escalated_within_a_few_polls(
        memory_mib, link_mib, ratio, permit_post_copy, permit_auto_converge):
    memory, link = memory_mib * MiB, link_mib * MiB
    assume(1.0 < memory / link <= 20)
    plan = _blind(memory, link, 100, permit_post_copy=permit_post_copy,
                  permit_auto_converge=permit_auto_converge)
    first_pass_polls = int(memory / link / 0.5) + 1
    samples = trace(memory, link, ratio * link, polls=first_pass_polls + 40, steps=20)
    escalated = [(i, d) for i, d in _run(plan, samples, 50) if d.escalation]
    assert escalated, "never escalated"
    first = escalated[0][0]
    assert first <= first_pass_polls + monitor.CONFIRM_POLLS + 2
    names = [d.escalation for _, d in escalated]
    assert names == [e for e in strategy.LADDER if e in names]  # in the ladder's order


@given(plans(), st.floats(0, 1e5), st.floats(0, 1e5), st.booleans())
def test_post_copy_is_never_aborted_nor_escalated(found, elapsed, timeout, triggered):
    plan, _, _ = found
    in_post_copy = progress(5, 10 * MiB, 100 * MiB, 50 * MiB, postcopy=True)
    assert not monitor.should_trigger_timeout_action(elapsed, timeout, in_post_copy,
                                                     triggered)
    assert not monitor.adapt(plan, [(elapsed, in_post_copy)], {}, 50)


@given(st.integers(100, 5000), st.integers(3, 20), st.integers(3, 300),
       st.floats(0, 1e4), st.integers(0, 5000))
def test_nova_downtime_steps_stay_within_the_budget(budget, steps, delay, elapsed, current):
    settings = settings_mod.MigrationSettings(downtime_ms=budget, downtime_steps=steps,
                                              downtime_delay=delay)
    schedule = list(monitor.downtime_steps(settings, 2.0))
    # Nova truncates each step: the last one may fall 1 ms short of the budget.
    assert budget - 1 <= schedule[-1][1] <= budget
    assert all(d <= budget for _, d in schedule)
    decision = monitor.update_downtime(schedule, elapsed, current)
    if decision:
        assert decision.value <= budget and decision.value != current


@given(st.floats(0, 1e4), st.floats(0, 1e4), st.booleans())
def test_timeout_action_fires_once_after_the_timeout(elapsed, timeout, triggered):
    running = progress(3, 10 * MiB, 100 * MiB, 0)
    fires = monitor.should_trigger_timeout_action(elapsed, timeout, running, triggered)
    assert fires == (not triggered and timeout > 0 and elapsed > timeout)


# -- post-copy only when it pays -------------------------------------------------------

predictions = st.one_of(
    st.none(), st.builds(strategy.Prediction, converges=st.just(False)),
    st.builds(strategy.Prediction, converges=st.just(True),
              total_s=st.floats(0, 1e4, allow_nan=False)))
gains = st.floats(1.0, 10.0)


@given(predictions, st.floats(0, 1e4), permits, gains)
def test_post_copy_pays_only_as_permitted(best, post_s, permit, gain):
    post = strategy.Prediction(True, post_s, 100.0, 1, post_copy_s=post_s)
    found = strategy.post_copy_pays(best, post, permit, gain)
    assert isinstance(found.use, bool) and found.reason
    if permit is False:
        assert not found.use
    elif best is None or not best.converges:
        assert found.use  # pre-copy cannot finish: post-copy is the way out
    elif permit is None:
        assert found.use == (best.total_s > 0 and best.total_s >= gain * post_s)
    else:
        assert found.use == (best.total_s > 0 and post_s * strategy.DISPLACE < best.total_s)
    # a higher bar never makes post-copy more likely
    assert strategy.post_copy_pays(best, post, permit, gain * 2).use <= found.use


@given(predictions, st.floats(0, 1e4), permits, gains)
def test_without_recovery_the_default_takes_post_copy_only_as_the_way_out(
        best, post_s, permit, gain):
    """A driver that cannot recover a broken post-copy stream (QEMU < 8.2): a
    broken link in post-copy loses the guest, so the gain alone never pays;
    an explicit permit_post_copy still decides as the operator asked."""
    post = strategy.Prediction(True, post_s, 100.0, 1, post_copy_s=post_s)
    found = strategy.post_copy_pays(best, post, permit, gain, recoverable=False)
    if permit is None:
        assert found.use == (best is None or not best.converges)
    else:
        assert found == strategy.post_copy_pays(best, post, permit, gain)


@given(memories, links, st.floats(0, 8.0), budgets, gains)
def test_without_recovery_the_default_plans_post_copy_only_when_pre_copy_cannot_converge(
        memory, link, ratio, budget, gain):
    settings = settings_mod.MigrationSettings(downtime_ms=budget, post_copy_min_gain=gain,
                                              stream_rate_mib=2000)
    dirty = int(ratio * link)
    plan = strategy.choose(memory, convergence.DirtyRateMeasurement(
        dirty, convergence.SAMPLING), convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT),
        dataclasses.replace(ALL, post_copy_recovery=False), settings)
    if plan.method == strategy.METHOD_POST_COPY:
        for throttle in (None, (strategy.THROTTLE_INITIAL, strategy.THROTTLE_INCREMENT)):
            assert not strategy.predict(memory, dirty, link, budget,
                                        throttle=throttle).converges


@given(predictions, st.floats(0, 1e4), permits, gains)
def test_a_post_copy_that_never_switches_never_pays(best, total_s, permit, gain):
    """When the first pass fits the budget the job ends in pre-copy: there is
    no post-copy to plan, whatever the totals say."""
    never_switches = strategy.Prediction(True, total_s, 100.0, 1)
    assert not strategy.post_copy_pays(best, never_switches, permit, gain).use


@given(memories, links, st.floats(0, 8.0), budgets, permits, permits, gains,
       st.one_of(st.none(), st.floats(0, 1)))
@example(memory=16 * MiB, link=16 * MiB, ratio=0.0, budget=1000, permit_post_copy=None,
         permit_auto_converge=None, gain=1.0, left=None)
def test_the_default_takes_post_copy_only_when_pre_copy_is_far_slower(
        memory, link, ratio, budget, permit_post_copy, permit_auto_converge, gain, left):
    """Before the move and in the re-plan: with permit_post_copy unset, post-copy
    is the method only when pre-copy with its escalations is predicted not to
    converge or to take post_copy_min_gain times as long; False never; True
    whenever faster. What is not armed is never planned."""
    settings = settings_mod.MigrationSettings(
        downtime_ms=budget, permit_post_copy=permit_post_copy,
        permit_auto_converge=permit_auto_converge, post_copy_min_gain=gain,
        stream_rate_mib=2000)
    dirty = int(ratio * link)
    remaining = None if left is None else int(left * memory)
    plan = strategy.choose(memory, convergence.DirtyRateMeasurement(
        dirty, convergence.SAMPLING), convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT),
        ALL, settings, remaining_bytes=remaining,
        elapsed_s=0.0 if remaining is None else memory / link)
    if permit_post_copy is False:
        assert not plan.post_copy and plan.method != strategy.METHOD_POST_COPY
    if plan.method != strategy.METHOD_POST_COPY:
        assert plan.post_copy_from_s is None and plan.post_copy_for_s is None
        return
    assert plan.post_copy and plan.post_copy_after_first_pass
    assert plan.post_copy_for_s is not None and "loses the guest" in plan.reasons["exposure"]
    if permit_post_copy:
        return
    pre = strategy.predict(memory, dirty, link, budget, start=remaining)
    ac = (strategy.predict(memory, dirty, link, budget, throttle=(
        strategy.THROTTLE_INITIAL, strategy.THROTTLE_INCREMENT), start=remaining)
        if permit_auto_converge is not False else None)
    family = [p.total_s for p in (pre, ac) if p is not None and p.converges]
    post = (strategy.post_copy_now(remaining, link) if remaining is not None else
            strategy.predict(memory, dirty, link, budget, post_copy_after_first_pass=True))
    assert not family or min(family) >= gain * post.total_s - 1e-9


@given(memories, links, st.floats(0, 0.3), budgets)
def test_a_guest_that_converges_easily_does_not_arm_post_copy_by_default(
        memory, link, ratio, budget):
    """Nothing to recover and nothing to risk: the paused handover stays possible."""
    plan = strategy.choose(
        memory, convergence.DirtyRateMeasurement(int(ratio * link), convergence.SAMPLING),
        convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT), ALL,
        settings_mod.MigrationSettings(downtime_ms=budget, stream_rate_mib=2000))
    assert not plan.post_copy and strategy.ESCALATE_POST_COPY not in plan.escalations
    assert "not armed" in plan.reasons["post_copy"]



# -- the re-plan after the first pass and the abort resend ----------------------------

@given(plans(), st.floats(0, 8.0), st.floats(0, 1), st.integers(1, 2000))
def test_a_replan_uses_only_what_the_job_armed(drawn, ratio, left, link_mib):
    plan, settings, caps = drawn
    link = plan.link_rate or link_mib * MiB
    remaining = int(left * plan.memory_bytes)
    revised = strategy.replan(
        plan, convergence.DirtyRateMeasurement(int(ratio * link),
                                               convergence.FIRST_ITERATION),
        convergence.LinkRate(link, convergence.LEARNED), caps, settings, remaining,
        plan.memory_bytes / link)
    assert (revised.auto_converge, revised.post_copy) == (plan.auto_converge, plan.post_copy)
    assert (revised.auto_converge_initial, revised.auto_converge_increment) == (
        plan.auto_converge_initial, plan.auto_converge_increment)
    assert revised.parallel_connections == plan.parallel_connections
    assert revised.compression == plan.compression
    assert set(revised.escalations) <= set(plan.escalations)
    if revised.method == strategy.METHOD_POST_COPY or revised.post_copy_after_first_pass:
        assert plan.post_copy
    if revised.method == strategy.METHOD_AUTO_CONVERGE:
        assert plan.auto_converge
    if not revised.post_copy_after_first_pass:
        assert revised.post_copy_from_s is None and revised.post_copy_for_s is None


@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=60),
       st.floats(0.5, 10), st.floats(10, 200))
def test_an_abort_is_resent_and_given_up_only_outside_post_copy(polls, retry_s, give_up_s):
    """Sent at once, resent no more often than every retry_s, given up only
    give_up_s after a first abort sent outside post-copy, never in post-copy."""
    state, now, sent = monitor.AbortState(), 0.0, []
    for gap, postcopy in polls:
        now += gap
        action, new = monitor.abort_resend(state, now, postcopy, retry_s, give_up_s)
        if action == monitor.GIVE_UP:
            assert not postcopy and now - state.first_s > give_up_s
            assert new == state
            return
        if action == monitor.SEND_ABORT:
            assert not sent or now - sent[-1] >= retry_s
            sent.append(now)
            assert new.last_s == now
        else:
            assert sent and now - sent[-1] < retry_s and new == state
        if new.first_s is not None:
            assert state.first_s in (None, new.first_s)
        state = new
    assert not polls or sent


@given(memories, links, budgets, st.booleans(), permits)
def test_unmeasured_post_copy_is_armed_only_when_permitted(
        memory, link, budget, recoverable, permit):
    """Nothing measured before the move: arming post-copy gives up the paused
    handover, so it is armed only when the operator permits post-copy
    outright, whether or not the driver recovers a broken post-copy."""
    plan = strategy.choose(
        memory, convergence.DirtyRateMeasurement(),
        convergence.LinkRate(link, convergence.BANDWIDTH_LIMIT),
        dataclasses.replace(ALL, post_copy_recovery=recoverable),
        settings_mod.MigrationSettings(downtime_ms=budget, permit_post_copy=permit))
    assert plan.post_copy == (permit is True)
    if not plan.post_copy:
        assert strategy.ESCALATE_POST_COPY not in plan.escalations
