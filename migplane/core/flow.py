"""The live-migration flow: the steps across two drivers, monitoring, rollback.

The flow owns what must not differ between drivers: the order of the steps,
the JSON crossing of every :class:`MigrateData` (source and destination may be
two processes), the URI policy, the per-host concurrency limit, the plan (``strategy``: measure
the guest, choose how to move it) and the monitor (``monitor``: Nova's downtime
steps and completion timeout, or the adaptive escalations), the progress
events, and, once the job ended or was lost, settling: what each host says of
the guest goes through the one settle function (:mod:`migplane.core.settle`,
carried out by :mod:`migplane.core.settling`), which never lets two copies
run, and gives the verdict.

Threading model: :meth:`LiveMigration.run` runs the whole migration in the
calling thread; :meth:`~LiveMigration.abort` and
:meth:`~LiveMigration.force_complete` may be called from any other thread and
only set a flag the monitor loop reads at its next poll. Listeners are plain
callables, called synchronously in the thread that emits the event (the
flow's, or the caller's for abort/force-complete requests); they must be
quick and thread-safe, and an ``async def`` listener is refused (it would
never run): wrap it, e.g. with ``asyncio.run_coroutine_threadsafe``.
"""

import collections
import dataclasses
import json
import logging
import threading
import uuid
from typing import Any
from typing import Callable
from typing import Deque
from typing import Dict
from typing import List
from typing import Literal
from typing import Optional
from typing import Tuple
from typing import Union
from typing import cast

from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import deadlines
from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import limiter as limiter_mod
from migplane.core import migrate_data as md
from migplane.core import monitor
from migplane.core import planning
from migplane.core import settings as settings_mod
from migplane.core import settle as settle_mod
from migplane.core import settling
from migplane.core import strategy as strategy_mod
from migplane.core import trust
from migplane.core import units
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
COMPLETED = events.COMPLETED
FAILED = events.FAILED
ABORTED = events.ABORTED
TIMED_OUT = events.TIMED_OUT


@dataclasses.dataclass(frozen=True)
class MigrationResult:
    migration_id: str
    instance: str
    source: str
    destination: str
    status: str
    duration_s: float
    uris: Optional[uri_mod.MigrationURIs] = None
    progress: Optional[driver_mod.JobProgress] = None
    timeout_action: Optional[str] = None
    error: Optional[str] = None
    #: Where the guest runs afterwards: the source or the destination host name.
    running_on: Optional[str] = None
    #: The :class:`~migplane.core.strategy.MigrationPlan` it followed.
    plan: Optional[strategy_mod.MigrationPlan] = None
    #: The dirty-rate measurement the plan used (or learned from the first pass).
    measurement: Optional[convergence.DirtyRateMeasurement] = None
    #: Escalations taken, in order: ``(name, reason)``.
    escalations: Tuple[Tuple[str, str], ...] = ()
    #: Where the guest is, from :mod:`migplane.core.settle` (``events.VERDICTS``);
    #: None when the migration ended before anything moved.
    verdict: Optional[str] = None
    #: Why that verdict: what each host reported.
    verdict_reason: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "migration_id": self.migration_id, "instance": self.instance,
            "source": self.source, "destination": self.destination,
            "status": self.status, "duration_s": self.duration_s,
            "uris": self.uris.to_dict() if self.uris else None,
            "progress": self.progress.to_dict() if self.progress else None,
            "timeout_action": self.timeout_action, "error": self.error,
            "running_on": self.running_on,
            "plan": self.plan.to_dict() if self.plan else None,
            "measurement": self.measurement.to_dict() if self.measurement else None,
            "escalations": [{"escalation": name, "reason": reason}
                            for name, reason in self.escalations],
            "verdict": self.verdict, "verdict_reason": self.verdict_reason,
        }


@dataclasses.dataclass
class _Polled:
    """What the monitor's log and post-copy notices remember between polls."""

    logged_at: Optional[float] = None
    #: ``(switched at, recovering)`` once the job switched to post-copy.
    exposed: Optional[Tuple[float, bool]] = None


#: Migrations claimed in this process: (source host, instance) -> migration id.
_running: Dict[Tuple[str, str], str] = {}
_running_lock = threading.Lock()
#: Guests found running on two hosts: instance -> (migration id, reason). They
#: are not migrated again from this process until :func:`release_split`.
_split: Dict[str, Tuple[str, str]] = {}


def claim(source_host: str, instance: str, migration_id: str) -> None:
    """Reserve ``instance``'s migration from ``source_host`` for ``migration_id``:
    the one guard of one migration per guest in this process. The flow claims
    at :meth:`LiveMigration.run`; a caller that claims first (the agent, before
    it has a record) hands its claim over to the flow of the same id.

    :raises GuestSplit: the guest was found running twice (:func:`release_split`).
    :raises MigrationInProgress: another migration of it holds the claim.
    """
    with _running_lock:
        split = _split.get(instance)
        other = _running.get((source_host, instance))
        if split is None and other in (None, migration_id):
            _running[(source_host, instance)] = migration_id
            return
    if split is not None:
        raise exception.GuestSplit(instance=instance, migration=split[0], reason=split[1],
                                   step="start")
    raise exception.MigrationInProgress(instance=instance, host=source_host, other=other,
                                        step="start")


def release(source_host: str, instance: str, migration_id: str) -> None:
    """End ``migration_id``'s claim of ``instance`` (another's is left alone)."""
    with _running_lock:
        if _running.get((source_host, instance)) == migration_id:
            del _running[(source_host, instance)]


def release_split(instance: str) -> bool:
    """An operator settled a split guest by hand: let it migrate again."""
    with _running_lock:
        return _split.pop(instance, None) is not None


def data_gib(info: driver_mod.InstanceInfo, block_migration: bool = False) -> float:
    """GiB counted for the timeouts, as in Nova: RAM, at least 2, plus the local
    disk, at least 2, when it is copied too (block migration)."""
    gib = max(2.0, info.memory_bytes / units.GiB)
    if block_migration and info.disk_bytes:
        gib += max(2.0, info.disk_bytes / units.GiB)
    return gib


def preview(driver: driver_mod.SourceDriver, instance: str, info: driver_mod.InstanceInfo,
            settings: settings_mod.MigrationSettings, uris: uri_mod.MigrationURIs,
            capabilities: caps_mod.Capabilities
            ) -> Tuple[convergence.DirtyRateMeasurement, convergence.LinkRate,
                       strategy_mod.MigrationPlan]:
    """What the run would decide for a migration, before anything moves
    (``migplane explain``): the same planning path as :meth:`LiveMigration.run`
    (:func:`migplane.core.planning.plan`), so the dry run cannot differ.

    :returns: ``(DirtyRateMeasurement, LinkRate, MigrationPlan)``.
    """
    return planning.plan(driver, instance, info.memory_bytes, settings, uris.bulk_host,
                         capabilities, who="Preview of %s" % instance)


def cross(migrate_data: object, step: Optional[str]) -> md.MigrateData:
    """Send ``migrate_data`` across a (possibly process) boundary, as JSON does."""
    if not isinstance(migrate_data, md.MigrateData):
        raise exception.InvalidMigrateData(
            field="<%s result>" % step, value=type(migrate_data).__name__,
            reason="a driver step must return MigrateData")
    return md.MigrateData.from_primitive(json.loads(json.dumps(migrate_data.to_primitive())))


class LiveMigration:
    """One live migration of ``instance`` from ``source`` to ``destination``.

    :param source: the source host's driver (or a proxy to it).
    :param destination: the destination host's driver (or a proxy to it).
    :param settings: the source's :class:`MigrationSettings` for this migration.
    :param limiter: an optional shared :class:`~migplane.core.limiter.HostLimiter`.
    :param clock, sleep: injectable time; by default the source driver's
        ``flow_timing()``, so that a simulated driver runs in simulated time.
    """

    #: Seconds the flow settles a migration (asks both hosts, acts, asks again)
    #: before it leaves an unresolved one to the agent's reconciliation.
    SETTLE_WAIT_S = 30.0
    #: Seconds after which an abort the job has not obeyed is sent again.
    ABORT_RETRY_S = 5.0
    #: Seconds a job may go on after the first abort before the flow gives up on it.
    ABORT_GIVE_UP_S = 120.0
    #: Progress samples the monitor keeps (its decisions look at recent passes only).
    HISTORY = 240
    #: Seconds between two looks at a job that armed post-copy, for its switch-over.
    SWITCH_WATCH_S = 0.05

    # ``Any`` in the unions: a proxy forwarding to a driver (the agent's PreparedData)
    # and a limiter with HostLimiter's acquire/release (its MigrationSlots) do too.
    def __init__(self, instance: str, source: Union[driver_mod.SourceDriver, Any],
                 destination: Union[driver_mod.DestinationDriver, Any],
                 settings: settings_mod.MigrationSettings, block_migration: bool = False,
                 limiter: Union[limiter_mod.HostLimiter, Any, None] = None,
                 migration_id: Optional[str] = None,
                 clock: Optional[Callable[[], float]] = None,
                 sleep: Optional[Callable[[float], None]] = None) -> None:
        self.instance = instance
        # Every driver call is bounded: a hung step ends in StepTimedOut, and an
        # abort from another thread stops the wait too (core.deadlines).
        self._abort = threading.Event()
        self.source = deadlines.StepDeadlines(source, settings.step_deadline, self._abort)
        self.destination = deadlines.StepDeadlines(destination, settings.step_deadline,
                                                   self._abort)
        self.settings = settings
        self.block_migration = block_migration
        self.limiter = limiter
        self.id = migration_id or uuid.uuid4().hex[:12]
        if clock is None or sleep is None:
            driver_clock, driver_sleep = source.flow_timing()
            clock = clock or driver_clock
            sleep = sleep or driver_sleep
        self._clock: Callable[[], float] = clock
        self._sleep: Callable[[float], None] = sleep
        self._listeners = events.Listeners("migration")
        self._force = threading.Event()
        self._start: Optional[float] = None
        self.step: Optional[str] = None
        self.status = events.PENDING
        self.uris: Optional[uri_mod.MigrationURIs] = None
        self.progress: Optional[driver_mod.JobProgress] = None
        self.timeout_action: Optional[str] = None
        self.downtime_ms: Optional[int] = None
        self.plan: Optional[strategy_mod.MigrationPlan] = None
        self.measurement: Optional[convergence.DirtyRateMeasurement] = None
        self.link: Optional[convergence.LinkRate] = None
        #: Escalations taken: name -> pass (iteration) when taken.
        self.taken: Dict[str, int] = {}
        self.escalations: List[Tuple[str, str]] = []
        self._data_gib: Optional[float] = None
        self._driver_name: Optional[str] = None
        self._capabilities: Optional[caps_mod.Capabilities] = None
        self._forced = False
        #: False once the source answered outside the contract in a way that may
        #: mean post-copy: the failure path then never cancels its job.
        self._cancellable = True
        #: The settle function's verdict once the migration ended (None before).
        self.verdict: Optional[str] = None

    # -- control from other threads -----------------------------------------

    def subscribe(self, listener: Callable[[events.MigrationEvent], object]) -> None:
        """Call ``listener(MigrationEvent)`` for every event; errors in it are logged.

        Listeners run synchronously in the emitting thread (see the module's
        threading model); an ``async def`` listener is refused with TypeError.
        """
        self._listeners.subscribe(listener)

    def abort(self) -> None:
        """Ask the running migration to stop; the guest stays on the source."""
        self._abort.set()
        self._emit(events.ABORT_REQUESTED, message="abort requested")

    def force_complete(self) -> None:
        """Ask the running migration to converge now (post-copy or pause)."""
        self._force.set()
        self._emit(events.FORCE_COMPLETE_REQUESTED, message="force-complete requested")

    # -- the flow ------------------------------------------------------------

    def _elapsed(self) -> float:
        return 0.0 if self._start is None else self._clock() - self._start

    def _emit(self, kind: str, message: Optional[str] = None,
              progress: Optional[driver_mod.JobProgress] = None) -> None:
        event = events.MigrationEvent(kind=kind, migration_id=self.id,
                                      instance=self.instance, elapsed=self._elapsed(),
                                      step=self.step, message=message, progress=progress)
        self._listeners.emit(event)

    def _enter(self, step: str) -> None:
        self.step = step
        self._emit(events.STEP, message=step)
        LOG.info("Migration %s of %s: %s", self.id, self.instance, step)

    def run(self) -> MigrationResult:
        """Run the migration to its end; return a :class:`MigrationResult`.

        A second migration of the same guest from the same host, in this
        process, is refused before it touches anything (MigrationInProgress).

        :raises MigplaneError: after rolling back, with ``.result`` attached.
        """
        self._start = self._clock()
        try:
            claim(self.source.hostname, self.instance, self.id)
        except exception.MigrationError as err:
            self.status = FAILED
            err.result = self._result(FAILED, str(err), running_on=None)
            self._emit(events.FAILED, message=str(err))
            raise
        try:
            return self._limited()
        finally:
            release(self.source.hostname, self.instance, self.id)

    def _limited(self) -> MigrationResult:
        self.status = events.QUEUED
        self._emit(events.QUEUED)
        hosts = (self.source.hostname, self.destination.hostname)
        if self.limiter is None:
            return self._run()
        try:
            self.limiter.acquire(*hosts)
        except exception.TooManyMigrations as err:
            self.status = FAILED
            err.result = self._result(FAILED, str(err), running_on=self.source.hostname)
            self._emit(events.FAILED, message=str(err))
            raise
        try:
            return self._run()
        finally:
            self.limiter.release(*hosts)

    def _run(self) -> MigrationResult:
        self.status = events.RUNNING
        data = None
        prepared = transferring = False
        try:
            self._enter("check_can_live_migrate_destination")
            data = cross(self.destination.check_can_live_migrate_destination(
                self.instance, self.block_migration), self.step)
            self._enter("check_can_live_migrate_source")
            data = cross(self.source.check_can_live_migrate_source(self.instance, data),
                         self.step)
            self._enter("pre_live_migration")
            prepared = True
            data = cross(self.destination.pre_live_migration(self.instance, data), self.step)
            self._enter("resolve_uris")
            caps = self._resolve(data)
            info = self.source.get_instance_info(self.instance)
            if not isinstance(info, driver_mod.InstanceInfo) or not isinstance(
                    info.memory_bytes, int) or info.memory_bytes < 0:
                raise self._contract("get_instance_info",
                                     "returned %r, not an InstanceInfo with a memory size"
                                     % (info,))
            self._plan(info, caps.capabilities)
            if self._abort.is_set():
                raise exception.MigrationAborted(instance=self.instance,
                                                 reason="requested before the transfer")
            # Never fires: _resolve() set the URIs and _plan() the plan, just above.
            assert self.plan is not None and self.uris is not None
            self._enter("live_migration")
            self.source.live_migration(self.instance, data, self.uris,
                                       self.plan.transfer_settings(self.settings))
            # Only now is there a job of ours: a driver that refused to start
            # (e.g. another job of this guest runs) must not see it aborted.
            transferring = True
            self._emit(events.TRANSFER_STARTED, message="data to %s (%s plane)" % (
                self.uris.data_uri or self.uris.control_uri, self.uris.plane))
            self._monitor(info, caps.capabilities)
        except exception.PostCopyPaused as err:
            # The settle table's post-copy rows: neither half is touched, no
            # rollback, no post step. Both halves there: postcopy-paused (a
            # resume may recover it); a half whose QEMU died: lost.
            return self._conclude(data, err, self.step)
        except Exception as err:
            failed_step = self.step  # before the rollback or settle step
            if not transferring:  # nothing moved: the guest never left the source
                self._rollback(data, prepared)
                raise self._failed(err, failed_step, verdict=events.VERDICT_ROLLED_BACK,
                                   verdict_reason="it failed before any transfer started")
            return self._conclude(data, err, failed_step)
        return self._conclude(data, None, None)

    def _resolve(self, data: md.MigrateData) -> driver_mod.DriverInfo:
        """The URIs of this migration, once the trust in them holds; the source's
        ``DriverInfo``."""
        caps = self.source.describe()
        if not isinstance(caps, driver_mod.DriverInfo):
            raise self._contract("describe", "returned %s, not a DriverInfo"
                                 % type(caps).__name__)
        self._driver_name = caps.name
        self.uris = uri_mod.resolve(self.settings, data, caps.capabilities,
                                    dest_hostname=self.destination.hostname,
                                    block_migration=self.block_migration, driver=caps.name)
        trust.enforce(self.instance, self.uris, self.settings,
                      destination=self.destination.hostname,
                      authenticated=getattr(self.destination, "identity", None))
        return caps

    def _contract(self, step: str, reason: str) -> exception.DriverContractError:
        return exception.DriverContractError(
            driver=self._driver_name or type(self.source).__name__, step=step,
            reason=reason)

    # -- the plan ---------------------------------------------------------------

    def _plan(self, info: driver_mod.InstanceInfo, capabilities: caps_mod.Capabilities
              ) -> None:
        """Measure (adaptive only) and choose how to move the guest: the one
        planning path that ``migplane explain`` takes too (:func:`preview`)."""
        self._capabilities = capabilities
        adaptive = self.settings.strategy == strategy_mod.ADAPTIVE
        if adaptive:
            self._enter("measure")
        assert self.uris is not None  # never fires: _resolve() set them before the plan
        self.measurement, self.link, self.plan = planning.plan(
            # StepDeadlines forwards the SourceDriver's calls (bounded)
            cast(driver_mod.SourceDriver, self.source), self.instance, info.memory_bytes,
            self.settings, self.uris.bulk_host, capabilities,
            driver_name=self._driver_name or type(self.source).__name__,
            who="Migration %s" % self.id)
        if adaptive:
            self._emit(events.MEASURED, message="dirty rate %s; link %s" % (
                self.measurement.describe(), self.link.describe()))
        self._emit(events.PLANNED, message=self._describe_plan())

    def _describe_plan(self) -> str:
        plan = self.plan
        assert plan is not None  # never fires: only called once _plan() set the plan
        parts = ["%s: %s" % (plan.strategy, plan.method)]
        if plan.escalations:
            parts.append("escalations " + " -> ".join(plan.escalations))
        if plan.predicted_time_s is not None:
            parts.append("predicted %.1f s, downtime %.0f ms" % (
                # a plan that predicts its time predicts its downtime too
                plan.predicted_time_s, cast(float, plan.predicted_downtime_ms)))
        return "; ".join(parts)

    def _learn_from_first_pass(self, history: Deque[Tuple[float, driver_mod.JobProgress]],
                               capabilities: caps_mod.Capabilities) -> None:
        """Without a sampled rate or a known link: re-plan once the first pass
        tells them; only what was armed at the start can be used."""
        plan = self.plan
        # Never fires: the monitor runs once _plan() set all three.
        assert plan is not None and self.measurement is not None and self.link is not None
        if plan.strategy != strategy_mod.ADAPTIVE or (
                self.measurement.available and self.link.known):
            return
        dirty, link = convergence.from_first_pass(history)
        if not dirty.available or not link.known:
            return
        self.measurement = dirty if not self.measurement.available else self.measurement
        self.link = link if not self.link.known else self.link
        elapsed, now = history[-1]
        self.plan = strategy_mod.replan(plan, self.measurement, self.link, capabilities,
                                        self.settings, now.memory_remaining, elapsed)
        self._emit(events.MEASURED, message="from the first pass: dirty rate %s; link %s"
                   % (self.measurement.describe(), self.link.describe()))
        self._emit(events.PLANNED, message="revised: " + self._describe_plan())

    # -- the monitor -------------------------------------------------------------

    def _monitor(self, info: driver_mod.InstanceInfo, capabilities: caps_mod.Capabilities
                 ) -> driver_mod.JobProgress:
        """Poll the job until it ends, and act on what the monitor's pure
        functions decide at each poll; returns the completed job's progress."""
        gib = self._data_gib = data_gib(info, self.block_migration)
        assert self.plan is not None  # never fires: the monitor runs once _plan() set it
        static = self.plan.strategy == strategy_mod.STATIC
        # What the job was started with: armed, it has no paused handover and
        # must switch over through post-copy (monitor.switch_over).
        armed = self.plan.post_copy and capabilities.post_copy
        nova_steps = steps = list(monitor.downtime_steps(self.settings, gib))
        if armed:
            steps = [(0, strategy_mod.ARMED_DOWNTIME_MS)]
        elif not static:
            # Adaptive: half the budget from the start (near QEMU's own default,
            # what bare virsh gets; Nova's first step of a tenth makes a guest that
            # would converge iterate on); adapt() raises it to the budget.
            steps = [(0, self.settings.downtime_ms // 2)]
        timeout = self.settings.completion_timeout * gib
        start = self._clock()
        history: Deque[Tuple[float, driver_mod.JobProgress]] = collections.deque(
            maxlen=self.HISTORY)
        aborting = monitor.AbortState()
        polled = _Polled()
        self._forced = learned = False
        while True:
            progress = self._poll(polled)
            if self._ended(progress):
                return progress
            if progress.state != driver_mod.JOB_POSTCOPY_RECOVERING:
                # (while the driver recovers the stream there is nothing to decide,
                # and neither the completion timeout nor an abort may touch it)
                elapsed = self._clock() - start
                history.append((elapsed, progress))
                stopping = self._abort.is_set() or self.timeout_action == "abort"
                if static or self.downtime_ms is None:
                    self._act(monitor.update_downtime(steps, elapsed, self.downtime_ms))
                if not stopping and not static:
                    if not learned and progress.iteration >= 2:
                        learned = True
                        self._learn_from_first_pass(history, capabilities)
                    self._act(monitor.adapt(self.plan, list(history), self.taken,
                                            self.downtime_ms), progress)
                self._check_timeout(elapsed, timeout, progress)
                aborting = self._abort_if_asked(progress, aborting)
                self._force_if_asked(progress, capabilities)
                if armed and not stopping:
                    self._watch_switch_over(history, monitor.due_downtime(
                        nova_steps, elapsed) if static else self.plan.downtime_budget_ms)
                    continue
            self._sleep(self.settings.poll_interval)

    def _watch_switch_over(self, history: Deque[Tuple[float, driver_mod.JobProgress]],
                           allowed_ms: Optional[int]) -> None:
        """Wait for the next poll while watching a job that armed post-copy for
        its switch-over (``monitor.switch_over``) every ``SWITCH_WATCH_S``: its
        passes shrink fast once it converges, and held at ARMED_DOWNTIME_MS the
        hypervisor would end it in pre-copy between two polls."""
        start = self._clock()
        seen = list(history)
        elapsed, progress = seen[-1]
        while not (progress.postcopy or strategy_mod.ESCALATE_POST_COPY in self.taken):
            decision = monitor.switch_over(seen, allowed_ms, self.SWITCH_WATCH_S,
                                           self.measurement.dirty_rate
                                           if self.measurement else None)
            if decision:
                self._act(decision, progress)
                break
            waited = self._clock() - start
            if waited + self.SWITCH_WATCH_S >= self.settings.poll_interval:
                break
            self._sleep(self.SWITCH_WATCH_S)
            try:
                progress = self.source.get_job_progress(self.instance)
            except Exception:  # the next poll reads it again, and fails there if it must
                break
            if not isinstance(progress, driver_mod.JobProgress) or \
                    progress.state != driver_mod.JOB_RUNNING:
                break
            seen.append((elapsed + self._clock() - start, progress))
        self._sleep(max(0.0, self.settings.poll_interval - (self._clock() - start)))

    def _poll(self, polled: _Polled) -> driver_mod.JobProgress:
        """The job's progress, told to listeners and the log."""
        try:
            # StepDeadlines lets through only a JobProgress in a known state
            progress: driver_mod.JobProgress = self.source.get_job_progress(self.instance)
        except exception.DriverContractError as err:
            # An answer outside the contract ends the migration now; the failure
            # path cancels the job unless this answer says (or cannot rule out)
            # that it is in post-copy.
            broken = err.progress
            self._cancellable = (isinstance(broken, driver_mod.JobProgress)
                                 and not broken.postcopy)
            raise
        self.progress = progress
        self._emit(events.PROGRESS, progress=progress)
        polled.logged_at = self._log_progress(progress, polled.logged_at)
        polled.exposed = self._post_copy_exposure(progress, polled.exposed)
        return progress

    def _ended(self, progress: driver_mod.JobProgress) -> bool:
        """True once the job completed; raises once it failed or its post-copy
        was left paused."""
        if progress.state == driver_mod.JOB_COMPLETED:
            return True
        if progress.state in (driver_mod.JOB_FAILED, driver_mod.JOB_CANCELLED):
            raise self._job_error(progress)
        if progress.state == driver_mod.JOB_POSTCOPY_PAUSED:
            raise exception.PostCopyPaused(
                instance=self.instance, migration_id=self.id,
                reason=progress.error or "the driver could not recover the stream")
        return False

    def _check_timeout(self, elapsed: float, timeout: float,
                       progress: driver_mod.JobProgress) -> None:
        if monitor.should_trigger_timeout_action(elapsed, timeout, progress,
                                                 self.timeout_action is not None):
            self.timeout_action = self.settings.timeout_action
            self._emit(events.TIMEOUT_ACTION, message="completion timeout of %.0f s "
                       "passed: %s" % (timeout, self.timeout_action))
            if self.timeout_action != "abort":
                self._force.set()

    def _abort_if_asked(self, progress: driver_mod.JobProgress, aborting: monitor.AbortState
                        ) -> monitor.AbortState:
        """Send (again) the abort asked for (``monitor.abort_resend``); the new state."""
        if not (self._abort.is_set() or self.timeout_action == "abort"):
            return aborting
        now = self._clock()
        action, sent = monitor.abort_resend(aborting, now, progress.postcopy,
                                            self.ABORT_RETRY_S, self.ABORT_GIVE_UP_S)
        if action == monitor.GIVE_UP:
            assert aborting.first_s is not None  # never fires: GIVE_UP only once it is set
            raise exception.MigrationError(
                instance=self.instance, step="abort",
                reason="the job still runs %.0f s after it was aborted"
                       % (now - aborting.first_s))
        if action == monitor.SEND_ABORT:
            if aborting.last_s is not None:
                LOG.info("Migration %s still runs after abort; aborting again", self.id)
            self._abort_job(progress)
        return sent

    def _force_if_asked(self, progress: driver_mod.JobProgress,
                        capabilities: caps_mod.Capabilities) -> None:
        if self._force.is_set() and not self._forced:
            self._forced = True
            assert self.plan is not None  # never fires: the monitor runs once _plan() set it
            post_copy = self.plan.post_copy and capabilities.post_copy
            self.source.force_complete(self.instance, post_copy=post_copy)
            if post_copy:
                self.taken.setdefault(strategy_mod.ESCALATE_POST_COPY, progress.iteration)

    def _post_copy_exposure(self, progress: driver_mod.JobProgress,
                            exposed: Optional[Tuple[float, bool]]
                            ) -> Optional[Tuple[float, bool]]:
        """Tell when the guest's exposure in post-copy starts, breaks and ends:
        ``exposed`` is ``(switched at, recovering)`` once it switched."""
        now = self._elapsed()
        if exposed is None:
            if not progress.postcopy:
                return None
            plan = self.plan
            predicted = plan.post_copy_for_s if plan and plan.post_copy_after_first_pass \
                else None
            if predicted is None and self.link is not None and self.link.known:
                predicted = strategy_mod.post_copy_now(
                    progress.memory_remaining,
                    cast(int, self.link.rate)).post_copy_s  # known: it has a rate
            # Never fires: the monitor runs once _plan() set the capabilities.
            assert self._capabilities is not None
            recoverable = self._capabilities.post_copy_recovery
            self._emit(events.POST_COPY_STARTED, message=(
                strategy_mod.describe_exposure(now, predicted, recoverable=recoverable)
                if predicted is not None else "post-copy from %.1f s into the job: %s"
                % (now, strategy_mod.post_copy_risk(recoverable))))
            exposed = (now, False)
        recovering = progress.state == driver_mod.JOB_POSTCOPY_RECOVERING
        if recovering and not exposed[1]:
            self._emit(events.POST_COPY_RECOVERING, message="the post-copy stream broke or "
                       "stalled (%s); the driver recovers it once both hosts and the link "
                       "answer" % (progress.error or "no detail"))
        elif exposed[1] and progress.state in (driver_mod.JOB_RUNNING,
                                               driver_mod.JOB_COMPLETED):
            self._emit(events.POST_COPY_RECOVERED, message="the post-copy stream resumed")
        if progress.state == driver_mod.JOB_COMPLETED:
            self._emit(events.POST_COPY_ENDED, message="post-copy lasted %.1f s; the guest "
                       "no longer depends on the source" % (now - exposed[0]))
        return (exposed[0], recovering)

    def _log_progress(self, progress: driver_mod.JobProgress, logged_at: Optional[float]
                      ) -> Optional[float]:
        """Log progress every ``monitor_interval`` s (0: never), as Nova logs and
        saves its migration statistics; it is still read every ``poll_interval``."""
        interval, now = self.settings.monitor_interval, self._clock()
        if not interval or (logged_at is not None and now - logged_at < interval):
            return logged_at
        LOG.info("Migration %s of %s: %.0f%% sent, %s of %s bytes remaining, pass %d",
                 self.id, self.instance, progress.percent, progress.data_remaining,
                 progress.data_total, progress.iteration)
        return now

    def _act(self, decision: monitor.Decision,
             progress: Optional[driver_mod.JobProgress] = None) -> None:
        """Carry out one monitor decision."""
        if not decision:
            return
        if decision.action == monitor.SET_DOWNTIME:
            self.source.set_max_downtime(self.instance, decision.value)
            self.downtime_ms = decision.value
            self._emit(events.DOWNTIME_CHANGED, message=decision.reason)
        elif decision.action == monitor.SWITCH_TO_POST_COPY:
            if not self._destination_answers():
                return   # asked again at the next look
            self._forced = True  # a later force-complete has nothing left to do
            self.source.force_complete(self.instance, post_copy=True)
            self.taken.setdefault(strategy_mod.ESCALATE_POST_COPY,
                                  progress.iteration if progress else 0)
            if not decision.escalation:
                self._emit(events.SWITCH_OVER, message=decision.reason)
                LOG.info("Migration %s of %s: %s", self.id, self.instance, decision.reason)
        elif decision.action != monitor.RELY_ON_AUTO_CONVERGE:
            # (auto-converge was armed at the start: nothing to call)
            raise self._contract("monitor", "unexpected decision %r" % (decision,))
        if decision.escalation:
            self.taken[decision.escalation] = progress.iteration if progress else 0
            self.escalations.append((decision.escalation, decision.reason))
            self._emit(events.ESCALATED, message="%s: %s" % (decision.escalation,
                                                             decision.reason))
            LOG.info("Migration %s of %s escalated: %s (%s)", self.id, self.instance,
                     decision.escalation, decision.reason)

    def _destination_answers(self) -> bool:
        """Whether the destination answers now, asked before a switch to post-copy.

        The switch needs the control plane: the hypervisor finishes the incoming
        side over it (libvirt's Finish), and a destination that loses it before
        then may drop the incoming guest, whose source half can no longer run
        (QEMU before 10.2 cannot take a post-copy back). Pre-copy meanwhile goes
        on, and a cut that ends it leaves the guest on the source."""
        side = settling.side(self.destination, self.instance, "Migration %s: " % self.id)
        if side.state != settle_mod.UNREACHABLE:
            return True
        LOG.warning("Migration %s of %s: the destination cannot be asked; the switch to "
                    "post-copy waits for it", self.id, self.instance)
        return False

    def _abort_job(self, progress: driver_mod.JobProgress) -> None:
        """Cancel the job, unless it runs post-copy: then the guest already runs on
        the destination and only finishing the job keeps it whole on one host."""
        if progress.postcopy:
            LOG.warning("Migration %s of %s is in post-copy and cannot be aborted; "
                        "letting it complete", self.id, self.instance)
            return
        self.source.abort_job(self.instance)

    def _job_error(self, progress: driver_mod.JobProgress) -> exception.MigplaneError:
        if self.timeout_action == "abort":
            gib = self._data_gib
            # Never fires: only the monitor sets timeout_action, after it set _data_gib.
            assert gib is not None
            return exception.MigrationTimeout(
                instance=self.instance, timeout="%.0f" % (self.settings.completion_timeout
                                                          * gib),
                per_gib=self.settings.completion_timeout, data_gib="%.1f" % gib,
                action="abort")
        if progress.state == driver_mod.JOB_CANCELLED or self._abort.is_set():
            return exception.MigrationAborted(instance=self.instance,
                                              reason=progress.error or "cancelled")
        return exception.MigrationError(instance=self.instance, step="live_migration",
                                        reason=progress.error or "the job failed")

    def _job_state(self) -> Optional[str]:
        state: Optional[str]
        progress: Optional[driver_mod.JobProgress]
        state, progress = settling.job_state(
            self.source, self.instance, "Migration %s: " % self.id)
        if progress is not None:
            self.progress = progress
        return state

    def _postcopy(self) -> bool:
        return bool((self.progress is not None and self.progress.postcopy)
                    or strategy_mod.ESCALATE_POST_COPY in self.taken)

    def _finish_job(self) -> Optional[str]:
        """After an error mid-transfer: stop the job where that is safe (never in
        post-copy) and return its end state, or None when the source cannot tell."""
        state = self._job_state()
        if state not in driver_mod.JOB_FINISHED and not self._postcopy() \
                and self._cancellable:
            settling.call_safely(
                lambda instance, _data: self.source.abort_job(instance),
                self.instance, None, during="settle")
        deadline = self._clock() + self.SETTLE_WAIT_S
        while state in (driver_mod.JOB_RUNNING, driver_mod.JOB_NONE) and \
                not self._postcopy() and self._clock() < deadline:
            self._sleep(self.settings.poll_interval)
            state = self._job_state()
        return state

    def _conclude(self, data: Optional[md.MigrateData], err: Optional[Exception],
                  failed_step: Optional[str]) -> MigrationResult:
        """Settle the migration once its job ended (or the flow lost it): see
        :class:`~migplane.core.settling.Settler`; an unresolved one is left to the
        agent's reconciliation, which goes on asking."""
        # err None: the monitor returned the completed job's progress (so it is set)
        job = cast(driver_mod.JobProgress, self.progress).state if err is None \
            else self._finish_job()
        self._enter("settle")
        settler = settling.Settler(
            self.instance, self.source, self.destination, data, self._clock, self._sleep,
            poll_interval=self.settings.poll_interval, label="Migration %s: " % self.id,
            enter=self._enter, split=self._split_detected,
            block_migration=self.block_migration)
        settler.progress = self.progress
        decision: settle_mod.Decision = settler.run(
            job, self.SETTLE_WAIT_S, postcopy=self._postcopy(),
            handover=bool(self.progress and self.progress.handover))
        self.progress = settler.progress
        self._emit(events.SETTLED, message="%s: %s" % (decision.verdict, decision.reason))
        LOG.log(logging.INFO if decision.verdict in (events.VERDICT_COMPLETED,
                                                     events.VERDICT_ROLLED_BACK)
                else logging.ERROR, "Migration %s of %s settled %s (%s): %s", self.id,
                self.instance, decision.verdict, decision.action, decision.reason)
        return self._settled(decision, err, failed_step, settler.errors)

    def _split_detected(self, decision: settle_mod.Decision) -> None:
        with _running_lock:
            _split[self.instance] = (self.id, decision.reason)
        message = ("GUEST RUNNING TWICE: %s; further migrations of %s are refused"
                   % (self._hosts(decision), self.instance))
        LOG.critical("Migration %s: %s", self.id, message)
        self._emit(events.SPLIT_DETECTED, message=message)

    def _hosts(self, decision: settle_mod.Decision) -> str:
        return settling.where(
            decision, self.source.hostname, self.destination.hostname)

    def _settled(self, decision: settle_mod.Decision, err: Optional[Exception],
                 failed_step: Optional[str], errors: List[str]) -> MigrationResult:
        # (running_on None, the guest on neither host, finds None)
        where = {"source": self.source.hostname,
                 "destination": self.destination.hostname}.get(decision.running_on)  # type: ignore[arg-type]
        verdict = decision.verdict
        if verdict == events.VERDICT_COMPLETED:
            self.status = COMPLETED
            result = self._result(COMPLETED, "; ".join(errors) or None, running_on=where,
                                  verdict=verdict, verdict_reason=self._hosts(decision))
            self._emit(events.COMPLETED, message="running on %s" % where,
                       progress=self.progress)
            return result
        if verdict == events.VERDICT_ROLLED_BACK:
            self._emit(events.ROLLED_BACK, message="guest kept on %s"
                       % self.source.hostname)
            if err is None:
                err = exception.MigrationError(instance=self.instance, step="live_migration",
                                               reason=decision.reason)
            raise self._failed(err, failed_step, verdict=verdict,
                               verdict_reason=self._hosts(decision), running_on=where)
        if verdict == events.VERDICT_POSTCOPY_PAUSED and isinstance(
                err, exception.PostCopyPaused):
            # the driver's own words say how to resume it
            raise self._failed(err, failed_step, verdict=verdict,
                               verdict_reason=self._hosts(decision), running_on=None)
        hands_off = (" Do not start %s by hand on either host." % self.instance
                     if decision.hands_off else "")
        reason = "%s%s%s" % (self._hosts(decision), hands_off,
                             " (it failed with: %s)" % err if err is not None else "")
        raise self._failed(exception.MigrationNotSettled(
            instance=self.instance, verdict=verdict, reason=reason, step="settle"),
            failed_step, verdict=verdict, verdict_reason=self._hosts(decision),
            running_on=where)

    def _rollback(self, data: Optional[md.MigrateData], prepared: bool) -> None:
        """A failure before any job of ours ran: undo what the destination prepared."""
        self._enter("rollback")
        if data is None:
            data = md.MigrateData(dest_hostname=self.destination.hostname,
                                  block_migration=self.block_migration)
        if prepared:
            self._call_safely(self.destination.rollback_live_migration_at_destination, data)
        self._emit(events.ROLLED_BACK, message="guest kept on %s" % self.source.hostname)

    def _call_safely(self, method: Callable[[str, md.MigrateData], object],
                     data: md.MigrateData) -> None:
        settling.call_safely(method, self.instance, data)

    def _failed(self, err: Exception, step: Optional[str] = None,
                verdict: Optional[str] = None, verdict_reason: Optional[str] = None,
                running_on: Union[str, None, Literal[False]] = False) -> exception.MigplaneError:
        if not isinstance(err, exception.MigplaneError):
            err = exception.MigrationError(instance=self.instance, step=step or self.step,
                                           reason="%s: %s" % (type(err).__name__, err))
        if isinstance(err, exception.MigrationTimeout):
            status = TIMED_OUT
        elif isinstance(err, exception.MigrationAborted):
            status = ABORTED
        else:
            status = FAILED
        self.status = status
        err.result = self._result(
            status, str(err), running_on=self.source.hostname if running_on is False
            else running_on, verdict=verdict, verdict_reason=verdict_reason)
        self._emit(events.FAILED, message=str(err))
        return err

    def _result(self, status: str, error: Optional[str], running_on: Optional[str],
                verdict: Optional[str] = None, verdict_reason: Optional[str] = None
                ) -> MigrationResult:
        self.verdict = verdict
        return MigrationResult(
            migration_id=self.id, instance=self.instance, source=self.source.hostname,
            destination=self.destination.hostname, status=status,
            duration_s=round(self._elapsed(), 3), uris=self.uris, progress=self.progress,
            timeout_action=self.timeout_action, error=error, running_on=running_on,
            plan=self.plan, measurement=self.measurement,
            escalations=tuple(self.escalations), verdict=verdict,
            verdict_reason=verdict_reason)
