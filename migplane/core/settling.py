"""Carrying out the settle function's decisions on the two hosts of a migration.

:func:`migplane.core.settle.settle` decides; :class:`Settler` does the I/O
around it: it asks both drivers where the guest is (a driver that cannot
answer, a step that timed out included, is "unreachable"), asks the function,
carries out the one next step the decision allows, and asks again, until
nothing is left to do or its wait ends. The flow settles every migration
with it once the job ended; the agent's reconciliation settles with it what
the flow left unresolved (or what a restarted agent finds in flight).
"""

import logging
from typing import Any
from typing import Callable
from typing import List
from typing import Optional
from typing import Set
from typing import Tuple
from typing import TypeVar
from typing import Union

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settle as settle_mod

LOG = logging.getLogger(__name__)

#: Names of the steps a settler carries out, each at most once.
PAUSE_SOURCE = "pause_source"
PAUSE_DESTINATION = "pause_destination"
DESTROY_DESTINATION = "destroy_destination"
ROLLBACK_SOURCE = "rollback_source"
POST_DESTINATION = "post_destination"
POST_SOURCE = "post_source"

#: What a step is called with besides the instance: its MigrateData, or None.
D = TypeVar("D", bound=Optional[md.MigrateData])


# ``Any`` in the unions of the drivers: a proxy forwarding to one (the flow's
# StepDeadlines, the agent's remote or unreachable destination) does too.
def job_state(source: Union[driver_mod.SourceDriver, Any], instance: str, label: str = ""
              ) -> Tuple[Optional[str], Optional[driver_mod.JobProgress]]:
    """``(state, progress)`` of the source's job; state None when the source cannot
    tell or names a state no driver may report (never waited for)."""
    try:
        progress = source.get_job_progress(instance)
    except Exception as err:  # e.g. the daemon restarted and forgot the job
        LOG.warning("%sthe source cannot say how the job of %s ends: %s", label,
                    instance, err)
        return None, None
    if not isinstance(progress, driver_mod.JobProgress) or \
            progress.state not in driver_mod.JOB_STATES:
        LOG.error("%sthe source's driver reported %r, not a known job state; settling "
                  "on what the hosts report", label, getattr(progress, "state", progress))
        return None, None
    return progress.state, progress


def side(driver: Union[driver_mod.SourceDriver, driver_mod.DestinationDriver, Any],
         instance: str, label: str = "") -> settle_mod.Side:
    """What ``driver``'s host says of ``instance``, as the settle function reads it."""
    try:
        info = driver.get_instance_info(instance)
    except exception.InstanceNotFound:
        return settle_mod.Side(settle_mod.ABSENT)
    except Exception as err:  # a daemon, an agent or a link down; a step timed out
        LOG.warning("%s%s cannot say where %s runs: %s", label,
                    getattr(driver, "hostname", "a host"), instance, err)
        return settle_mod.Side(settle_mod.UNREACHABLE)
    return settle_mod.side_of(info)


class Settler:
    """Settles one migration of ``instance`` between two drivers.

    :param data: the migration's :class:`MigrateData` (the post and rollback
        steps take it), or None.
    :param enter: called with a step name as the settler enters it (events).
    :param split: called with the decision when both copies were found running.
    """

    #: Steps a settler carries out in one :meth:`run`, at most.
    MAX_ACTS = 12
    #: Seconds the source's definition is retried at once (its daemon restarting).
    CLEAN_WAIT_S = 30.0

    def __init__(self, instance: str, source: Union[driver_mod.SourceDriver, Any],
                 destination: Union[driver_mod.DestinationDriver, Any],
                 data: Optional[md.MigrateData], clock: Callable[[], float],
                 sleep: Callable[[float], None], poll_interval: float = 1.0, label: str = "",
                 enter: Optional[Callable[[str], object]] = None,
                 split: Optional[Callable[[settle_mod.Decision], object]] = None,
                 block_migration: bool = False) -> None:
        self.instance = instance
        self.source = source
        self.destination = destination
        self.data = data or md.MigrateData(dest_hostname=destination.hostname,
                                           block_migration=block_migration)
        self._clock, self._sleep = clock, sleep
        self.poll_interval = poll_interval
        self.label = label
        self._enter = enter or (lambda step: None)
        self._split = split or (lambda decision: None)
        #: Steps carried out (names above), and the errors they raised.
        self.done: Set[str] = set()
        self.errors: List[str] = []
        self.step: Optional[str] = None
        self.progress: Optional[driver_mod.JobProgress] = None
        self._clean_deadline: Optional[float] = None
        self.failed_cleanups = 0

    def where(self, decision: settle_mod.Decision) -> str:
        return where(decision, self.source.hostname, self.destination.hostname)

    def report(self, job: Optional[str], postcopy: bool = False, handover: bool = False
               ) -> settle_mod.Report:
        return settle_mod.Report(
            source=side(self.source, self.instance, self.label),
            destination=side(self.destination, self.instance, self.label),
            job=job, postcopy=postcopy,
            handover=handover and POST_DESTINATION not in self.done)

    def job(self) -> Optional[str]:
        state, progress = job_state(self.source, self.instance, self.label)
        if progress is not None:
            self.progress = progress
        return state

    def run(self, job: Optional[str], wait_s: float, postcopy: bool = False,
            handover: bool = False, read_job: bool = True) -> settle_mod.Decision:
        """Settle until nothing is left to do, or ``wait_s`` passed; the last decision."""
        deadline = self._clock() + wait_s
        acts = 0
        while True:
            postcopy = postcopy or bool(self.progress is not None and self.progress.postcopy)
            decision = settle_mod.settle(self.report(job, postcopy, handover))
            if decision.action == settle_mod.WAIT and self._clock() < deadline:
                self._sleep(self.poll_interval)
                if read_job:
                    job = self.job()
                continue
            if acts >= self.MAX_ACTS or not self.act(decision):
                return decision
            acts += 1

    def _go(self, step: str) -> None:
        if self.step != step:
            self.step = step
            self._enter(step)

    def _once(self, name: str, method: Callable[[str, md.MigrateData], object],
              during: str) -> bool:
        """Carry out step ``name`` unless it succeeded already (a failed one is
        tried again when a later decision asks for it: the steps are idempotent)."""
        if name in self.done:
            return False
        if call_safely(method, self.instance, self.data, self.errors, during):
            self.done.add(name)
        return True

    def act(self, decision: settle_mod.Decision) -> bool:
        """Do the next step ``decision`` allows; True when the hosts must be asked again."""
        during = "rollback" if decision.action == settle_mod.ROLL_BACK else "settle"
        if decision.action == settle_mod.FENCE:
            if decision.verdict == events.VERDICT_SPLIT:
                self._split(decision)
            if decision.pause_source:
                self._once(PAUSE_SOURCE, self.source.pause_instance, during)
            if decision.pause_destination:
                self._once(PAUSE_DESTINATION, self.destination.pause_instance, during)
            return False
        if decision.action == settle_mod.ROLL_BACK:
            self._go("rollback")
            if decision.may_destroy_destination:
                return self._once(DESTROY_DESTINATION,
                                  self.destination.rollback_live_migration_at_destination,
                                  during)
            # resumes the source's copy only when it is paused: the decision saw the
            # destination's gone
            if self._once(ROLLBACK_SOURCE, self.source.rollback_live_migration_at_source,
                          during):
                return True
            # what pre_live_migration prepared (idempotent when nothing is left)
            return self._once(DESTROY_DESTINATION,
                              self.destination.rollback_live_migration_at_destination,
                              during)
        if decision.action == settle_mod.WAIT and decision.running_on == "source":
            # the job ended and the guest runs here: let go of the job, resume nothing
            return self._once(ROLLBACK_SOURCE, self.source.rollback_live_migration_at_source,
                              during)
        if decision.may_clean_destination:
            # what pre_live_migration prepared, on a host that holds no copy
            return self._once(DESTROY_DESTINATION,
                              self.destination.rollback_live_migration_at_destination,
                              during)
        if decision.action == settle_mod.FINISH:
            if decision.may_destroy_source:
                self._go("post_live_migration_at_source")
                return self._once(POST_SOURCE, self.source.post_live_migration_at_source,
                                  during)
            if POST_DESTINATION not in self.done:
                # persists the guest there; resumes the copy the handover held
                self._go("post_live_migration_at_destination")
                return self._once(POST_DESTINATION,
                                  self.destination.post_live_migration_at_destination,
                                  during)
            if decision.may_undefine_source and POST_SOURCE not in self.done:
                self._go("post_live_migration_at_source")
                return self._clean_source()
        return False

    def _clean_source(self) -> bool:
        """Remove the source's definition of a guest that runs on the destination,
        retrying while its daemon restarts; after ``CLEAN_WAIT_S`` one attempt per
        call (the caller, or the agent's reconciliation, asks again)."""
        if self._clean_deadline is None:
            self._clean_deadline = self._clock() + self.CLEAN_WAIT_S
        while True:
            try:
                self.source.post_live_migration_at_source(self.instance, self.data)
            except Exception as err:
                if self._clock() >= self._clean_deadline:
                    LOG.warning("%spost_live_migration_at_source failed: %s", self.label,
                                err)
                    self.failed_cleanups += 1
                    if self.failed_cleanups == 1:
                        self.errors.append("post_live_migration_at_source: %s" % err)
                    return self.failed_cleanups < self.MAX_ACTS // 2
                LOG.info("%sthe source cannot remove %s yet (%s); retrying", self.label,
                         self.instance, err)
                self._sleep(max(self.poll_interval, 1.0))
                continue
            self.done.add(POST_SOURCE)
            return True


def where(decision: settle_mod.Decision, source: str, destination: str) -> str:
    """The decision's reason with the hosts named, for operators."""
    return "%s [source %s, destination %s]" % (decision.reason, source, destination)


def call_safely(method: Callable[[str, D], object], instance: str, data: D,
                errors: Optional[List[str]] = None, during: str = "rollback") -> bool:
    """Run one step; log (and collect in ``errors``) what it raised; True when it
    succeeded."""
    name = getattr(method, "__name__", "step")
    try:
        method(instance, data)
        return True
    except exception.MigplaneError as err:  # expected, e.g. a daemon is down
        LOG.warning("%s of %s failed during %s: %s", name, instance, during, err)
        failure = "%s: %s" % (name, err)
    except Exception as err:
        LOG.exception("%s of %s failed during %s", name, instance, during)
        failure = "%s: %s" % (name, err)
    if errors is not None and failure not in errors:
        errors.append(failure)
    return False
