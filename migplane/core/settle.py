"""Settling a migration: what may be done to each copy of the guest, and the verdict.

One pure function, :func:`settle`, turns what each host reported of the guest
(:class:`Report`) into one frozen :class:`Decision`: an action, the verdict
and its reason, and the concrete steps that are allowed. The flow's failure
path and post steps, the agent's reconciliation and the CLI all ask it; none
decides inline. The rule it keeps: **never two copies**. A copy runs again
only with proof that the other cannot run; a host that cannot be asked is
"unreachable", and "cannot tell" means paused and unresolved, never resumed.

Each side reports one of :data:`SIDE_STATES`, with libvirt's state reason
where it matters (:data:`REASON_MIGRATION`, :data:`REASON_POSTCOPY`,
:data:`REASON_POSTCOPY_FAILED`, :data:`REASON_MIGRATION_CANCELED`). The rows,
first match wins:

=========================================================  ===========  ===============
what the hosts report                                       action       verdict
=========================================================  ===========  ===============
both run                                                    fence        split
post-copy asked, the source runs, the destination holds none  (pre-copy rows: it never began)
post-copy entered, job completed, destination runs alone    finish       completed
post-copy entered, a host unreachable or the job unknown    keep-paused  unresolved
post-copy entered, job running / recovering                 wait         unresolved
post-copy entered, recovery gave up, or the stream broke    keep-paused  postcopy-paused
post-copy entered, a QEMU gone                              keep-paused  lost
job still running (pre-copy)                                wait         unresolved
job unknown, the destination's copy still incoming          wait         unresolved
a host unreachable (pre-copy)                               keep-paused  unresolved
destination runs, source stopped (pre-copy)                 finish       completed
destination held paused by the handover, source gone        finish       completed
source runs or is paused, destination not running           roll-back    rolled-back
neither holds a runnable copy                               keep-paused  lost
=========================================================  ===========  ===============

A finish is ``completed`` once the guest runs on the destination and the
source holds no definition of it (``absent``); until then (the held copy not
resumed yet, a shut-off, bootable definition left on the source) it is
``unresolved`` and allows the steps that get there.

In any post-copy state nothing destroys, undefines or resumes either half:
the source holds pages the destination lacks, the destination holds the
guest's newest state. Pausing a running copy (``fence``) is the only action
that is never unsafe, and it is the answer to two running copies: pause the
one a cancelled migration resumed (reason ``migration-canceled``), or both
when that cannot be told.

Steps come in order and the caller asks again after each one: a roll-back
first destroys the destination's copy (``may_destroy_destination``); only a
report of the destination absent then allows ``may_resume_source``. A finish
resumes the destination held by the handover (``may_resume_destination``)
only when the source's job has ended and its copy is gone or shut off.
"""

import dataclasses
from typing import Any
from typing import Dict
from typing import Optional
from typing import Tuple

from migplane.core import driver as driver_mod
from migplane.core import events

# -- what a host reports of the guest -------------------------------------------------

RUNNING = "running"
PAUSED = "paused"
SHUT_OFF = "shut-off"
ABSENT = "absent"
UNREACHABLE = "unreachable"
SIDE_STATES = (RUNNING, PAUSED, SHUT_OFF, ABSENT, UNREACHABLE)

#: Paused mid-migration: outgoing before the switch-over, or incoming not finished.
REASON_MIGRATION = "migration"
#: Paused (source) or running (destination) in post-copy.
REASON_POSTCOPY = "postcopy"
#: A post-copy whose stream broke (libvirt's ``*_POSTCOPY_FAILED``).
REASON_POSTCOPY_FAILED = "postcopy-failed"
#: Running again because a migration was cancelled (libvirt resumed it itself).
REASON_MIGRATION_CANCELED = "migration-canceled"
#: Held paused by migplane's handover after the switch-over, or paused by migplane.
REASON_HELD = "held"
#: Running on the destination once its incoming migration finished (libvirt's
#: ``VIR_DOMAIN_RUNNING_MIGRATED``): every page arrived.
REASON_MIGRATED = "migrated"

#: Hypervisor states (``InstanceInfo.state``) and the side state each counts as
#: (looked up with None too: an info without a state).
_HYPERVISOR_STATES: Dict[Optional[str], str] = {
    "running": RUNNING, "paused": PAUSED, "incoming": PAUSED, "suspended": PAUSED,
    "shutoff": SHUT_OFF, "shutdown": SHUT_OFF, "crashed": SHUT_OFF,
}

# -- decisions -------------------------------------------------------------------------

FINISH = "finish"
ROLL_BACK = "roll-back"
WAIT = "wait"
FENCE = "fence"
KEEP_PAUSED = "keep-paused"
ACTIONS = (FINISH, ROLL_BACK, WAIT, FENCE, KEEP_PAUSED)

#: The one verdict table: verdict -> exit code of ``migplane`` and what it means.
VERDICTS = {
    events.VERDICT_COMPLETED: (
        0, "the job completed, the guest runs on the destination, the source is clean"),
    events.VERDICT_ROLLED_BACK: (
        1, "the guest runs on the source, the destination is clean"),
    events.VERDICT_UNRESOLVED: (
        5, "a host could not be asked; the guest is left paused where it is and the "
           "agent keeps settling it"),
    events.VERDICT_POSTCOPY_PAUSED: (
        6, "post-copy recovery gave up; both halves are kept paused (migplane resume)"),
    events.VERDICT_LOST: (
        7, "a QEMU died in post-copy: the guest cannot survive; neither half may be "
           "resumed"),
    events.VERDICT_SPLIT: (
        8, "both copies were found running; the detector paused what it could; further "
           "migrations of the guest are refused"),
}
#: Verdicts after which nothing may be started by hand.
HANDS_OFF = (events.VERDICT_UNRESOLVED, events.VERDICT_POSTCOPY_PAUSED,
             events.VERDICT_LOST, events.VERDICT_SPLIT)
#: Verdicts that waiting cannot change (the agent stops settling).
FINAL = (events.VERDICT_COMPLETED, events.VERDICT_ROLLED_BACK,
         events.VERDICT_POSTCOPY_PAUSED, events.VERDICT_LOST, events.VERDICT_SPLIT)

_POSTCOPY_JOBS = (driver_mod.JOB_POSTCOPY_RECOVERING, driver_mod.JOB_POSTCOPY_PAUSED)
_GONE = (SHUT_OFF, ABSENT)


def may_release_split(source: "Side", destination: "Side") -> Tuple[bool, str]:
    """May a guest found running twice migrate again, now that an operator
    settled it by hand? Only when both hosts answer and at most one holds a
    copy: a running or paused one, with no definition left on the other host
    (a shut-off definition there could be booted beside it).

    :param source: the source's :class:`Side`; ``destination`` likewise.
    :returns: ``(allowed, reason)``.
    """
    sides = (("the source", source), ("the destination", destination))
    for name, side in sides:
        if side.state == UNREACHABLE:
            return False, "%s cannot say whether it runs the guest" % name
    live = [name for name, side in sides if side.state in (RUNNING, PAUSED)]
    defined = [name for name, side in sides if side.state == SHUT_OFF]
    if len(live) > 1:
        return False, "both hosts still hold a running or paused copy"
    if live and defined:
        return False, ("%s holds the guest and %s still a shut-off definition of it: "
                       "undefine that one first" % (live[0], defined[0]))
    if live:
        return True, "only %s holds the guest" % live[0]
    return True, "no host runs the guest"


def exit_code(verdict: str) -> int:
    """The exit code of ``verdict``; an unknown one counts as unresolved."""
    return VERDICTS.get(verdict, VERDICTS[events.VERDICT_UNRESOLVED])[0]


@dataclasses.dataclass(frozen=True)
class Side:
    """What one host said of the guest."""

    state: str
    reason: Optional[str] = None

    def __post_init__(self) -> None:
        if self.state not in SIDE_STATES:
            raise ValueError("side state %r is not one of %s"
                             % (self.state, ", ".join(SIDE_STATES)))

    def describe(self) -> str:
        return self.state + (" (%s)" % self.reason if self.reason else "")


def side_of(info: driver_mod.InstanceInfo) -> Side:
    """The :class:`Side` of a driver's :class:`~migplane.core.driver.InstanceInfo`.

    A state the table does not know (libvirt's ``unknown``) counts as
    unreachable: it cannot be told whether that copy runs.
    """
    state = _HYPERVISOR_STATES.get(getattr(info, "state", None))
    if state is None:
        return Side(UNREACHABLE, "state %r" % (getattr(info, "state", None),))
    reason = getattr(info, "reason", None)
    if info.state == "incoming":
        reason = REASON_MIGRATION
    return Side(state, reason)


@dataclasses.dataclass(frozen=True)
class Report:
    """What both hosts said, and what the source's job and the flow know."""

    source: Side
    destination: Side
    #: The source's job state (``driver.JOB_*``); None when it could not be read.
    job: Optional[str] = None
    #: The job switched to post-copy (or the source said so).
    postcopy: bool = False
    #: The destination's copy was started paused by the handover and migplane
    #: has not resumed it: it cannot run unless migplane resumes it.
    handover: bool = False


@dataclasses.dataclass(frozen=True)
class Decision:
    """What may be done, the verdict and why (pure data; the caller acts)."""

    action: str
    verdict: str
    reason: str
    #: ``"source"``, ``"destination"`` or None: where the guest runs (or will, on finish).
    running_on: Optional[str] = None
    may_resume_source: bool = False
    may_resume_destination: bool = False
    may_destroy_source: bool = False
    may_destroy_destination: bool = False
    may_undefine_source: bool = False
    #: The destination holds no copy: what was prepared there may be removed.
    may_clean_destination: bool = False
    may_abort_job: bool = False
    pause_source: bool = False
    pause_destination: bool = False

    @property
    def final(self) -> bool:
        return self.verdict in FINAL and self.action != WAIT

    @property
    def hands_off(self) -> bool:
        return self.verdict in HANDS_OFF

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdict)


# ``Any``: the keyword arguments of Decision, each of its own type.
def _d(action: str, verdict: str, reason: str, **allowed: Any) -> Decision:
    return Decision(action=action, verdict=verdict, reason=reason, **allowed)


def _hold(reason: str, verdict: str = events.VERDICT_UNRESOLVED, action: str = KEEP_PAUSED,
          running_on: Optional[str] = None) -> Decision:
    return _d(action, verdict, reason, running_on=running_on)


def settle(report: Report) -> Decision:
    """The :class:`Decision` for a :class:`Report` (pure)."""
    src, dst = report.source, report.destination
    job = report.job if report.job in driver_mod.JOB_STATES else None
    where = "source %s, destination %s" % (src.describe(), dst.describe())
    if src.state == RUNNING and dst.state == RUNNING:
        return _fence(src, dst, where)
    if (report.postcopy or job in _POSTCOPY_JOBS or REASON_POSTCOPY_FAILED in (
            src.reason, dst.reason) or (src.state == PAUSED
                                        and src.reason == REASON_POSTCOPY)) \
            and not _post_copy_never_began(src, dst, job):
        return _postcopy(src, dst, job, where)
    return _precopy(report, src, dst, job, where)


def _post_copy_never_began(src: Side, dst: Side, job: Optional[str]) -> bool:
    """Post-copy was asked for (the flow cannot tell whether the switch happened,
    e.g. the source's daemon died as it was asked, or libvirt gave up on the
    migration as it was asked) but the source's copy runs, and a post-copy's
    source never runs again (libvirt keeps it paused, postcopy-failed). Either
    the destination holds nothing, or libvirt says it resumed the source after
    cancelling the migration and the destination holds only the incoming copy,
    which never ran."""
    if src.state != RUNNING or job in _POSTCOPY_JOBS or src.reason == REASON_POSTCOPY \
            or REASON_POSTCOPY_FAILED in (src.reason, dst.reason):
        return False
    return dst.state == ABSENT or (src.reason == REASON_MIGRATION_CANCELED
                                   and dst.state == PAUSED and dst.reason == REASON_MIGRATION)


def _fence(src: Side, dst: Side, where: str) -> Decision:
    """Both run: pause the copy a cancelled migration resumed, or both."""
    src_resumed = src.reason == REASON_MIGRATION_CANCELED
    dst_resumed = dst.reason == REASON_MIGRATION_CANCELED
    if src_resumed != dst_resumed:
        return _d(FENCE, events.VERDICT_SPLIT,
                  "the guest runs on both hosts (%s); pausing the %s copy, which a "
                  "cancelled migration resumed" % (where, "source's" if src_resumed
                                                   else "destination's"),
                  running_on="destination" if src_resumed else "source",
                  pause_source=src_resumed, pause_destination=dst_resumed)
    return _d(FENCE, events.VERDICT_SPLIT,
              "the guest runs on both hosts (%s) and it cannot be told which copy is "
              "the newer: pausing both" % where, pause_source=True, pause_destination=True)


def _finish(reason: str, src: Side, **allowed: Any) -> Decision:
    """The guest runs (or is resumed) on the destination: completed once the
    source holds no bootable definition of it any more."""
    if src.state == ABSENT and not allowed.get("may_resume_destination"):
        return _d(FINISH, events.VERDICT_COMPLETED, reason, running_on="destination",
                  may_undefine_source=True, **allowed)
    if src.state != ABSENT:
        reason += "; the source still holds a bootable definition: removing it"
    return _d(FINISH, events.VERDICT_UNRESOLVED, reason, running_on="destination",
              may_undefine_source=True, **allowed)


def _postcopy(src: Side, dst: Side, job: Optional[str], where: str) -> Decision:
    """Rows once post-copy was entered: nothing destroys, undefines or resumes."""
    if job == driver_mod.JOB_COMPLETED and dst.state == RUNNING and src.state in _GONE:
        return _finish("post-copy completed: the guest runs on the destination (%s)"
                       % where, src)
    if dst.state == RUNNING and dst.reason == REASON_MIGRATED and src.state in _GONE:
        # e.g. an agent back from a restart, with no job left to ask: the
        # destination's daemon finished the incoming migration, so every page
        # arrived and the source's half has nothing left to give
        return _finish("post-copy completed: the destination's daemon says its incoming "
                       "migration finished (%s)" % where, src)
    if UNREACHABLE in (src.state, dst.state):
        # Waiting (nothing acts) lets a settler ask again while it may: a
        # daemon back from a restart answers within seconds.
        return _hold("post-copy and a host cannot be asked (%s): both halves stay as "
                     "they are" % where, action=WAIT)
    if job in (driver_mod.JOB_RUNNING, driver_mod.JOB_POSTCOPY_RECOVERING):
        if src.state in _GONE or dst.state in _GONE:
            return _lost(src, dst, where)
        return _hold("post-copy in flight (%s)" % where, action=WAIT)
    if job == driver_mod.JOB_COMPLETED:
        if dst.state in _GONE:
            return _lost(src, dst, where)
        return _hold("post-copy completed but the destination's copy does not run (%s); "
                     "touching neither" % where)
    if src.state in _GONE or dst.state in _GONE:
        if job is None or job == driver_mod.JOB_NONE:
            return _hold("post-copy, a half is gone and the source cannot tell how its "
                         "job ended (%s)" % where)
        return _lost(src, dst, where)
    if job == driver_mod.JOB_POSTCOPY_PAUSED or job in (driver_mod.JOB_FAILED,
                                                        driver_mod.JOB_CANCELLED):
        return _hold("post-copy stopped with both halves present (%s): kept paused; "
                     "`migplane resume` recovers it" % where,
                     verdict=events.VERDICT_POSTCOPY_PAUSED)
    return _hold("post-copy and the source cannot tell how its job ended (%s)" % where)


def _lost(src: Side, dst: Side, where: str) -> Decision:
    left = ("the destination's" if src.state in _GONE and dst.state not in _GONE
            else "the source's" if dst.state in _GONE and src.state not in _GONE
            else "no")
    return _hold("a QEMU died in post-copy (%s): %s half is left; its memory is split "
                 "between the hosts, so neither may be resumed" % (where, left),
                 verdict=events.VERDICT_LOST)


def _precopy(report: Report, src: Side, dst: Side, job: Optional[str], where: str
             ) -> Decision:
    if job == driver_mod.JOB_RUNNING:
        return _d(WAIT, events.VERDICT_UNRESOLVED, "the migration job still runs (%s)"
                  % where, may_abort_job=True)
    if src.state == UNREACHABLE or dst.state == UNREACHABLE:
        return _precopy_unreachable(report, src, dst, where)
    if dst.state == RUNNING:
        if src.state in _GONE:
            return _finish("the guest runs on the destination (%s)" % where, src)
        # src paused: stopped at the switch-over, its job ended without Confirm; the
        # destination has run since, so it holds the newer state.
        return _d(FINISH, events.VERDICT_UNRESOLVED,
                  "the guest runs on the destination and a stopped copy is left on the "
                  "source (%s): destroying the source's" % where,
                  running_on="destination", may_destroy_source=True)
    if job is None and dst.state == PAUSED and dst.reason == REASON_MIGRATION \
            and src.state in (RUNNING, PAUSED):
        # e.g. the agent that started the job restarted: libvirt may still be
        # migrating; the incoming copy never ran, so waiting is safe
        return _d(WAIT, events.VERDICT_UNRESOLVED,
                  "the source cannot say how its job goes and the guest is still "
                  "arriving on the destination (%s)" % where)
    held = dst.state == PAUSED and dst.reason != REASON_MIGRATION
    if held and src.state in _GONE:
        # The destination holds a copy only once the whole state arrived (libvirt
        # ends the incoming job then); the source's QEMU is gone, so its job has
        # ended whatever it says, and nothing can resume that copy.
        return _finish("the source's copy is %s: resuming the destination's, held paused "
                       "by the handover (the job ended %s)" % (src.describe(),
                                                               job or "unknown"),
                       src, may_resume_destination=True)
    if src.state in (RUNNING, PAUSED):
        if dst.state != ABSENT:
            return _d(ROLL_BACK, events.VERDICT_UNRESOLVED,
                      "the job ended %s with the guest still on the source (%s): "
                      "removing the destination's copy first" % (job or "unknown", where),
                      running_on="source", may_destroy_destination=True)
        return _d(ROLL_BACK, events.VERDICT_ROLLED_BACK,
                  "the guest %s on the source (%s)" % (
                      "runs" if src.state == RUNNING else "is resumed", where),
                  running_on="source", may_resume_source=src.state == PAUSED)
    return _hold("neither host holds a copy that may run (%s)" % where,
                 verdict=events.VERDICT_LOST)


def _precopy_unreachable(report: Report, src: Side, dst: Side, where: str) -> Decision:
    if src.state == UNREACHABLE:
        if dst.state in (ABSENT, SHUT_OFF) or (dst.state == PAUSED
                                               and dst.reason == REASON_MIGRATION):
            return _d(KEEP_PAUSED, events.VERDICT_UNRESOLVED,
                      "the source cannot be asked and the destination holds no copy that "
                      "ran (%s): the guest stays where it is" % where, running_on="source",
                      may_clean_destination=dst.state == ABSENT)
        if dst.state == RUNNING:
            # libvirt resumes the source itself when its confirm is cancelled: a
            # destination that runs may be a second copy.
            return _d(FENCE, events.VERDICT_UNRESOLVED,
                      "the source cannot be asked and the destination runs (%s): pausing "
                      "the destination's copy until the source answers" % where,
                      pause_destination=True)
        return _hold("the source cannot be asked (%s): the destination's copy stays "
                     "paused" % where)
    # the destination cannot be asked
    if src.state == RUNNING and (report.handover
                                 or src.reason != REASON_MIGRATION_CANCELED):
        return _d(WAIT, events.VERDICT_UNRESOLVED,
                  "the guest runs on the source; the destination cannot be asked (%s), "
                  "so what the migration left there is not cleaned up yet" % where,
                  running_on="source")
    if src.state == RUNNING:
        return _d(FENCE, events.VERDICT_UNRESOLVED,
                  "a cancelled migration resumed the source's copy and the destination "
                  "cannot be asked (%s): pausing the source's copy until it answers"
                  % where, pause_source=True)
    return _hold("the destination cannot be asked (%s): the source's copy stays %s"
                 % (where, src.state))
