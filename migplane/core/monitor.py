"""The monitor's decisions, as small pure functions.

The flow's monitor loop only reads the job's progress, asks these functions
what to do, and does it. Each takes plain data (the progress history, the
settings or the plan, the time elapsed, what was already done) and returns a
frozen :class:`Decision` with its reason, in the manner of Nova's
``update_downtime`` and ``should_trigger_timeout_action`` (``virt/libvirt/
migration.py``), plus the convergence logic Nova lacks: :func:`trend` tells
a job that stopped converging within a few passes, and :func:`adapt` walks
the plan's escalations in order (raise the downtime within the budget ->
rely on auto-converge's rising throttle -> switch to post-copy).

Invariants, property-tested in ``tests/property/test_convergence_decisions.py``: no
decision sets a downtime above the budget; post-copy is never chosen unless
the plan armed it; a job that armed post-copy never has its downtime raised
and switches over through post-copy (:func:`switch_over`) before it would
end in pre-copy; a converging job is not escalated; a job that does not
converge is escalated within a few polls; nothing is decided for a job in
post-copy, and a job in post-copy is never aborted.
"""

import dataclasses
import itertools
import math
from typing import Dict
from typing import Iterable
from typing import Iterator
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple

from migplane.core import driver as driver_mod
from migplane.core import settings as settings_mod
from migplane.core import strategy as strategy_mod
from migplane.core import units

#: What a monitor decision asks the flow to do (``Decision.action``).
NONE = "none"
SET_DOWNTIME = "set_downtime"
RELY_ON_AUTO_CONVERGE = "auto_converge"
SWITCH_TO_POST_COPY = "post_copy"
PAUSE = "pause"
ABORT = "abort"

#: Polls after the first pass over which the rates must agree before acting.
CONFIRM_POLLS = 3
#: A guest dirtying this share of what is sent keeps pace with the link.
KEEPING_UP = 0.95
#: A pass counts as shrinking when it starts below this share of the one before.
SHRINKING = 0.9
#: Passes auto-converge gets, once relied on, before post-copy is next.
AUTO_CONVERGE_PASSES = 4
#: Margin over the computed switch-over time when raising the downtime.
DOWNTIME_MARGIN = 1.25


@dataclasses.dataclass(frozen=True)
class Decision:
    """One thing for the flow to do (or not), and why."""

    action: str = NONE
    value: Optional[int] = None
    reason: str = ""
    #: The plan's escalation this is (``strategy.LADDER``), if it is one.
    escalation: Optional[str] = None

    def __bool__(self) -> bool:
        return self.action != NONE


@dataclasses.dataclass(frozen=True)
class Trend:
    """Is the job converging? ``converging`` is None until it can be told."""

    converging: Optional[bool]
    reason: str
    transfer_rate: Optional[float] = None
    dirty_rate: Optional[float] = None
    #: Milliseconds a switch-over would take now (remaining / transfer rate).
    switch_over_ms: Optional[float] = None


# -- Nova's static algorithm ---------------------------------------------------------


def downtime_steps(settings: settings_mod.MigrationSettings, data_gib: float
                   ) -> Iterator[Tuple[int, int]]:
    """Nova's schedule of ``(seconds after start, max downtime ms)`` pairs."""
    delay = int(settings.downtime_delay * data_gib)
    base = settings.downtime_ms / settings.downtime_steps
    offset = (settings.downtime_ms - base) / settings.downtime_steps
    for i in range(settings.downtime_steps + 1):
        yield int(delay * i), int(base + offset * i)


def update_downtime(steps: Iterable[Tuple[float, int]], elapsed: float,
                    current_ms: Optional[int]) -> Decision:
    """Nova's ``update_downtime``: the last step whose time has come, if new.

    :param steps: the list from :func:`downtime_steps`.
    """
    due = due_downtime(steps, elapsed)
    if due is None or due == current_ms:
        return Decision()
    return Decision(SET_DOWNTIME, due, "max downtime %d ms (downtime step at %.0f s)"
                    % (due, elapsed))


def due_downtime(steps: Iterable[Tuple[float, int]], elapsed: float) -> Optional[int]:
    """The max downtime of the last step whose time has come (None: none yet)."""
    due = [downtime for at, downtime in steps if elapsed >= at]
    return due[-1] if due else None


def should_trigger_timeout_action(elapsed: float, timeout_s: float,
                                  progress: driver_mod.JobProgress, triggered: bool) -> bool:
    """Nova's question: has the completion timeout passed for this job?

    Never for a job in post-copy (it cannot be aborted and is completing),
    never twice, never when the timeout is disabled (0).
    """
    if triggered or not timeout_s or progress.postcopy:
        return False
    return elapsed > timeout_s


def timeout_action(action: str, post_copy_armed: bool) -> Decision:
    """What ``timeout_action`` means for this job: abort, or converge now."""
    if action == "abort":
        return Decision(ABORT, reason="completion timeout: abort")
    if post_copy_armed:
        return Decision(SWITCH_TO_POST_COPY, reason="completion timeout: switch to post-copy")
    return Decision(PAUSE, reason="completion timeout: pause the guest so the copy ends")


# -- abort --------------------------------------------------------------------------------

#: What :func:`abort_resend` tells the monitor: send the abort (again), or give up.
SEND_ABORT = "send_abort"
GIVE_UP = "give_up"


@dataclasses.dataclass(frozen=True)
class AbortState:
    """When an abort was first sent outside post-copy, and last sent (monitor time)."""

    first_s: Optional[float] = None
    last_s: Optional[float] = None


def abort_resend(state: AbortState, now: float, postcopy: bool, retry_s: float,
                 give_up_s: float) -> Tuple[Optional[str], AbortState]:
    """Whether to send an abort again while the job runs on.

    A hypervisor may accept an abort that arrives before its transfer really
    started and drop it (libvirt's migrate_cancel before QEMU's migrate), so it
    is resent every ``retry_s``; a pre-copy job still running ``give_up_s``
    after the first abort is given up on (the flow fails it and settles). A
    job in post-copy cannot be aborted: the clock of the give-up never starts
    there, and nothing is given up.

    :returns: ``(action, new state)``, the action :data:`SEND_ABORT`,
        :data:`GIVE_UP` or None (wait).
    """
    if not postcopy and state.first_s is not None and now - state.first_s > give_up_s:
        return GIVE_UP, state
    if state.last_s is None or now - state.last_s >= retry_s:
        first = state.first_s if state.first_s is not None or postcopy else now
        return SEND_ABORT, AbortState(first, now)
    return None, state


# -- convergence --------------------------------------------------------------------------


def _pass_starts(history: Iterable[Tuple[float, driver_mod.JobProgress]]) -> Dict[int, int]:
    """``{iteration: memory_remaining}`` at the first sample seen of each pass."""
    starts: Dict[int, int] = {}
    for _, progress in history:
        if progress.iteration and progress.iteration not in starts:
            starts[progress.iteration] = progress.memory_remaining
    return starts


def _transfer_rate(history: Iterable[Tuple[float, driver_mod.JobProgress]],
                   polls: int) -> Optional[float]:
    """Bytes per second sent over the last ``polls`` samples, or None."""
    recent = list(history)[-(polls + 1):]
    if len(recent) < 2:
        return None
    (t0, p0), (t1, p1) = recent[0], recent[-1]
    if t1 <= t0 or p1.memory_processed < p0.memory_processed:
        return None
    return (p1.memory_processed - p0.memory_processed) / (t1 - t0)


def trend(history: Iterable[Tuple[float, driver_mod.JobProgress]],
          polls: int = CONFIRM_POLLS) -> Trend:
    """Whether a running pre-copy job converges, from its statistics.

    Not converging: after the first pass, either the last ``polls`` samples
    all show the guest dirtying memory about as fast as it is sent (at least
    :data:`KEEPING_UP` of it), or a
    pass started no smaller than the one before it. Converging: passes
    shrink and the dirty rate stays below the transfer rate.

    :param history: ``(elapsed_s, JobProgress)`` samples, oldest first.
    """
    history = list(history)
    if not history:
        return Trend(None, "no progress yet")
    last = history[-1][1]
    rate = _transfer_rate(history, polls)
    switch_over = (1000.0 * last.memory_remaining / rate) if rate else None
    after_first = [(t, p) for t, p in history if p.iteration >= 2]
    if not after_first:
        return Trend(None, "the first pass is not done", rate, last.dirty_rate, switch_over)
    recent = after_first[-(polls + 1):]
    if len(recent) > polls:
        faster = []
        for (t0, p0), (t1, p1) in itertools.pairwise(recent):
            sent = (p1.memory_processed - p0.memory_processed) / (t1 - t0) if t1 > t0 else 0
            faster.append(p1.dirty_rate >= KEEPING_UP * sent > 0
                          or (sent <= 0 and p1.dirty_rate > 0))
        if all(faster):
            return Trend(False, "the guest dirties %.1f MiB/s, at least what is sent "
                         "(%s) over the last %d polls"
                         % (last.dirty_rate / units.MiB, units.mib_s(rate), polls),
                         rate, last.dirty_rate, switch_over)
    starts = _pass_starts(after_first)
    passes = sorted(starts)
    if len(passes) >= 2:
        before, now = starts[passes[-2]], starts[passes[-1]]
        if now >= SHRINKING * before and now > 0:
            return Trend(False, "pass %d started with %.1f MiB to send, pass %d with %.1f "
                         "MiB: not shrinking" % (passes[-2], before / units.MiB, passes[-1],
                                                 now / units.MiB),
                         rate, last.dirty_rate, switch_over)
        return Trend(True, "passes shrink (%.1f -> %.1f MiB)"
                     % (before / units.MiB, now / units.MiB), rate, last.dirty_rate, switch_over)
    return Trend(None, "too few passes to tell", rate, last.dirty_rate, switch_over)


def switch_over(history: Iterable[Tuple[float, driver_mod.JobProgress]],
                allowed_ms: Optional[int], watch_s: float,
                dirty_rate: Optional[float] = None) -> Decision:
    """When a job that armed post-copy switches over: through post-copy, at the
    latest where the same job with a max downtime of ``allowed_ms`` would end
    in pre-copy (held at :data:`~migplane.core.strategy.ARMED_DOWNTIME_MS`,
    the hypervisor ends it in pre-copy only once a pass leaves less than that).

    Either a pass after the first started with no more than ``allowed_ms`` of
    sending at the transfer rate; or the pass being sent ends before the next
    look (``watch_s`` from now) and what the guest dirties meanwhile fits
    ``allowed_ms`` (a pass after it may be too short to be seen) or nothing
    tells what it dirties (the first pass of a job planned without a dirty rate).

    :param history: ``(elapsed_s, JobProgress)`` samples, oldest first.
    :param allowed_ms: the max downtime a pre-copy switch-over would be allowed
        now (the budget, or Nova's step due); None: none yet.
    :param watch_s: seconds until the job is looked at again.
    :param dirty_rate: bytes/s the guest dirties as measured before the move
        (the job's statistics tell it only after the first pass), or None.
    """
    history = list(history)
    if not history or allowed_ms is None or history[-1][1].postcopy:
        return Decision()
    now, last = history[-1]
    # (a job seen once yet: its average since the start)
    rate = _transfer_rate(history, CONFIRM_POLLS) or (
        last.memory_processed / now if now > 0 else None)
    if not rate:
        return Decision()
    first = next(t for t, p in history if p.iteration == last.iteration)
    started = _pass_starts(history)[last.iteration]
    if last.iteration >= 2 and 1000.0 * max(started, last.memory_remaining) / rate \
            <= allowed_ms:
        why = "pass %d started with %.1f MiB, about %.0f ms at %s" % (
            last.iteration, started / units.MiB, 1000.0 * started / rate, units.mib_s(rate))
    elif last.memory_remaining <= 2 * watch_s * rate:
        dirty = last.dirty_rate if last.iteration >= 2 else dirty_rate
        lasts_s = now - first + last.memory_remaining / rate
        if dirty is None:
            why = ("pass %d ends within %.0f ms and nothing tells what the guest dirties "
                   "meanwhile" % (last.iteration, 1000.0 * last.memory_remaining / rate))
        elif 1000.0 * dirty * lasts_s / rate <= allowed_ms:
            why = ("pass %d ends within %.0f ms, leaving about %.1f MiB (%.0f ms at %s)"
                   % (last.iteration, 1000.0 * last.memory_remaining / rate,
                      dirty * lasts_s / units.MiB, 1000.0 * dirty * lasts_s / rate,
                      units.mib_s(rate)))
        else:
            return Decision(reason="pass %d leaves more than %d ms of sending" % (
                last.iteration, allowed_ms))
    else:
        return Decision(reason="pass %d goes on (%.1f MiB to send)" % (
            last.iteration, last.memory_remaining / units.MiB))
    return Decision(SWITCH_TO_POST_COPY, reason="switch-over through post-copy: %s, within "
                    "the %d ms allowed (post-copy is armed, so there is no paused handover; "
                    "once post-copy begins the source's copy is never resumed)"
                    % (why, allowed_ms))


# -- the adaptive strategy ---------------------------------------------------------------


def adapt(plan: strategy_mod.MigrationPlan,
          history: Sequence[Tuple[float, driver_mod.JobProgress]],
          taken: Mapping[str, int], current_downtime_ms: Optional[int]) -> Decision:
    """The next step of an adaptive migration, or :data:`NONE`.

    :param plan: the :class:`~migplane.core.strategy.MigrationPlan`.
    :param history: ``(elapsed_s, JobProgress)`` samples, oldest first.
    :param taken: ``{escalation: iteration when taken}`` of escalations done.
    :param current_downtime_ms: the max downtime the job has now (None: unset).
    """
    if not history:
        return Decision()
    last = history[-1][1]
    if last.postcopy or strategy_mod.ESCALATE_POST_COPY in taken:
        return Decision(reason="in post-copy: the job completes on its own")
    can_post_copy = plan.post_copy and strategy_mod.ESCALATE_POST_COPY in plan.escalations
    if plan.post_copy_after_first_pass and can_post_copy and last.iteration >= 2:
        return Decision(SWITCH_TO_POST_COPY, reason="the plan: post-copy once the first pass "
                        "is done (%s)" % plan.reasons.get("method", ""),
                        escalation=strategy_mod.ESCALATE_POST_COPY)
    state = trend(history)
    current = current_downtime_ms or 0
    # Armed, the downtime stays at ARMED_DOWNTIME_MS: the flow switches the job
    # over through post-copy (switch_over), never in pre-copy.
    if not plan.post_copy:
        step = _downtime_for_the_switch_over(plan, state, last, current)
        if step is not None:
            return step
    if state.converging is not False:
        return Decision(reason=state.reason)
    return _escalate(plan, state, last, taken, current, can_post_copy)


def _downtime_for_the_switch_over(plan: strategy_mod.MigrationPlan, state: Trend,
                                  last: driver_mod.JobProgress, current: int
                                  ) -> Optional[Decision]:
    """Raise the max downtime to what a switch-over now takes, when that fits
    the budget; None when there is nothing to raise."""
    budget = plan.downtime_budget_ms
    if state.switch_over_ms is None or current >= budget or last.iteration < 2:
        return None
    wanted = min(budget, int(math.ceil(state.switch_over_ms * DOWNTIME_MARGIN)))
    if current >= wanted or state.switch_over_ms > budget:
        return None
    return Decision(SET_DOWNTIME, wanted, "%.1f MiB remain at %s: a switch-over now takes "
                    "about %.0f ms, within the %d ms budget"
                    % (last.memory_remaining / units.MiB, units.mib_s(state.transfer_rate),
                       state.switch_over_ms, budget))


def _escalate(plan: strategy_mod.MigrationPlan, state: Trend, last: driver_mod.JobProgress,
              taken: Mapping[str, int], current: int, can_post_copy: bool) -> Decision:
    """The next rung of the plan's ladder for a job that does not converge."""
    ladder, budget = plan.escalations, plan.downtime_budget_ms
    if strategy_mod.RAISE_DOWNTIME in ladder and strategy_mod.RAISE_DOWNTIME not in taken \
            and current < budget and not plan.post_copy:
        return Decision(SET_DOWNTIME, budget, "not converging (%s): max downtime raised to "
                        "the budget, %d ms" % (state.reason, budget),
                        escalation=strategy_mod.RAISE_DOWNTIME)
    relying = strategy_mod.ESCALATE_AUTO_CONVERGE in taken
    if plan.auto_converge and strategy_mod.ESCALATE_AUTO_CONVERGE in ladder and not relying:
        return Decision(RELY_ON_AUTO_CONVERGE, reason="not converging (%s): relying on "
                        "auto-converge (armed at the start: throttle from %s %%, +%s %% per "
                        "pass)"
                        % (state.reason, plan.auto_converge_initial or "the default",
                           plan.auto_converge_increment or "the default"),
                        escalation=strategy_mod.ESCALATE_AUTO_CONVERGE)
    if not can_post_copy:
        return Decision(reason="not converging (%s) and no escalation left; the completion "
                        "timeout applies" % state.reason)
    if relying:
        since = taken[strategy_mod.ESCALATE_AUTO_CONVERGE]
        throttled_out = last.cpu_throttle_pct >= strategy_mod.THROTTLE_MAX
        if last.iteration - since < AUTO_CONVERGE_PASSES and not throttled_out:
            return Decision(reason="auto-converge has had %d of %d passes (throttle "
                            "%d %%)" % (last.iteration - since, AUTO_CONVERGE_PASSES,
                                        last.cpu_throttle_pct))
    return Decision(SWITCH_TO_POST_COPY, reason="not converging (%s)%s: switch to post-copy"
                    % (state.reason, " despite auto-converge (throttle %d %%)"
                       % last.cpu_throttle_pct if relying else ""),
                    escalation=strategy_mod.ESCALATE_POST_COPY)
