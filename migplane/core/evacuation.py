"""Run an evacuation plan: the guests of one host, migrated by the core flow.

:class:`Evacuation` starts each guest's :class:`~migplane.core.flow.LiveMigration`
in the plan's order, keeping the plan's number of streams on the link. It
pipelines from the live progress of the running migrations: every poll it
asks :func:`~migplane.core.evacuation_plan.next_start` whether a lane of the
link frees (their remaining bytes at the link rate, then the predicted bytes
of the guests still in their fixed costs) within the time a new migration
needs to its first byte (the fixed cost measured so far, with margins); if
so, and a slot is free, the next guest starts, so that its checks,
``pre_live_migration`` and the destination's QEMU start run while the link
is still busy. Up to ``plan.max_running`` migrations run at once, the ones
in their fixed costs included: every flow takes its slot of the shared
limiter before its checks, so preparing ahead counts towards the per-host
limit and the limit holds as the limiter defines it. When a migration
finishes much earlier or later than planned, or fails, the guests not
started yet are planned again with what was learned (the fixed cost
measured, the memory the failed guests did not take). A failed guest stays
on the source, running (the flow's rule), and the others go on.
"""

import collections
import dataclasses
import logging
import threading
import time
import uuid
from typing import Any
from typing import Callable
from typing import Deque
from typing import Dict
from typing import Iterable
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple
from typing import Union
from typing import cast

from migplane.core import driver as driver_mod
from migplane.core import evacuation_plan as plan_mod
from migplane.core import events as events_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import limiter as limiter_mod
from migplane.core import settings as settings_mod

LOG = logging.getLogger(__name__)

# Evacuation event kinds (migration events are forwarded with kind MIGRATION).
PLANNED = "planned"
REPLANNED = "replanned"
MIGRATION_STARTED = "migration_started"
MIGRATION = "migration"
MIGRATION_FINISHED = "migration_finished"
FINISHED = "finished"

# Guest end states besides the flow's (completed, failed, aborted, timed_out).
UNPLACEABLE = "unplaceable"
NOT_STARTED = "not_started"

#: A migration off its predicted duration by more than this share re-plans the rest.
REPLAN_TOLERANCE = 0.25
#: A guest refused by a busy host (when_busy = refuse) is tried again this often,
#: this many times, before it is reported as failed.
BUSY_RETRIES = 5
BUSY_RETRY_S = 5.0
#: A new migration is expected at its first byte after this many fixed costs,
#: plus LEAD_EXTRA_S: the remaining bytes seen count pages that cross almost
#: free (zero pages), so the link often frees a second early; starting early
#: only shares the link a little longer, late idles it...
LEAD_MARGIN = 1.5
LEAD_EXTRA_S = 0.5
#: ...the largest of the last this many measured (they grow with the load).
FIXED_COST_WINDOW = 3


@dataclasses.dataclass(frozen=True)
class EvacuationEvent:
    kind: str
    evacuation_id: str
    elapsed: float
    instance: Optional[str] = None
    message: Optional[str] = None
    migration: Optional[events_mod.MigrationEvent] = None

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.migration is not None:
            data["migration"] = self.migration.to_dict()
        return data


@dataclasses.dataclass(frozen=True)
class GuestOutcome:
    """How one guest's part of the evacuation ended."""

    name: str
    status: str
    running_on: str
    destination: Optional[str] = None
    migration_id: Optional[str] = None
    #: Seconds after the evacuation's start.
    started_s: Optional[float] = None
    transfer_s: Optional[float] = None
    finished_s: Optional[float] = None
    downtime_ms: Optional[int] = None
    data_bytes: Optional[int] = None
    error: Optional[str] = None

    @property
    def duration_s(self) -> Optional[float]:
        if self.started_s is None or self.finished_s is None:
            return None
        return self.finished_s - self.started_s

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["duration_s"] = self.duration_s
        return data


@dataclasses.dataclass(frozen=True)
class EvacuationResult:
    evacuation_id: str
    source: str
    status: str  # completed (every guest moved), partial, failed (none moved)
    duration_s: float
    plan: plan_mod.EvacuationPlan
    guests: Tuple[GuestOutcome, ...]
    replans: int = 0

    @property
    def moved(self) -> List[GuestOutcome]:
        return [g for g in self.guests if g.status == flow_mod.COMPLETED]

    def to_dict(self) -> Dict[str, Any]:
        return {"evacuation_id": self.evacuation_id, "source": self.source,
                "status": self.status, "duration_s": self.duration_s,
                "plan": self.plan.to_dict(), "replans": self.replans,
                "guests": [g.to_dict() for g in self.guests]}


class _Running:
    """A started migration, as the executor follows it."""

    def __init__(self, item: plan_mod.GuestPlan, flow: flow_mod.LiveMigration,
                 started: float) -> None:
        self.item = item
        self.flow = flow
        self.started = started
        self.transfer: Optional[float] = None
        #: When the first byte moved: the fixed costs end there (the hypervisor
        #: starts the destination's QEMU inside its job, after the flow's
        #: transfer_started).
        self.first_byte: Optional[float] = None
        self.progress: Optional[driver_mod.JobProgress] = None
        self.done = threading.Event()
        self.result: Optional[flow_mod.MigrationResult] = None
        self.error: Optional[Exception] = None

    def observe(self, elapsed: float, progress: driver_mod.JobProgress) -> bool:
        """Follow the transfer from its progress snapshots; True at its first byte."""
        if not progress.data_processed:
            return False  # the job has not sent anything yet: nothing to learn
        self.progress = progress
        if self.first_byte is None:
            self.first_byte = elapsed
            return True
        return False

    def remaining_bytes(self) -> Optional[int]:
        """Bytes its transfer still has to send; None before its first byte."""
        if self.first_byte is None:
            return None
        # observe() sets progress before first_byte.
        return cast(driver_mod.JobProgress, self.progress).data_remaining

    def dirty_rate(self, hint: Optional[float] = 0.0) -> float:
        """Bytes/s it dirties: measured by the hypervisor, else the plan's figure."""
        measured = self.progress.dirty_rate if self.progress is not None else 0
        return max(measured or 0, hint or 0)


class Evacuation:
    """Empty the ``source`` host into ``destinations``.

    :param source: the source host's driver.
    :param destinations: ``{name: driver}`` of the candidate destinations.
    :param guests: :class:`~migplane.core.evacuation_plan.GuestSpec` values.
    :param destination_specs: their :class:`DestinationSpec` (free memory, limits).
    :param link_rate: the source's migration link rate, bytes/s.
    :param settings: the source's :class:`MigrationSettings`.
    :param plan_settings: the planner's :class:`PlanSettings`.
    :param limiter: shared by every flow (a :class:`HostLimiter` or alike).
    :param migration_factory: ``(instance, destination name) -> LiveMigration``;
        the default builds one with the drivers, the settings and the limiter.
    :param on_migration_done: ``(flow, result, error)`` called when a flow ends.
    """

    def __init__(self, source: Union[driver_mod.SourceDriver, Any],
                 destinations: Mapping[str, Union[driver_mod.DestinationDriver, Any]],
                 guests: Iterable[plan_mod.GuestSpec],
                 destination_specs: Iterable[plan_mod.DestinationSpec], link_rate: float,
                 settings: settings_mod.MigrationSettings,
                 plan_settings: Optional[plan_mod.PlanSettings] = None,
                 limiter: Union[limiter_mod.HostLimiter, Any, None] = None,
                 migration_factory: Optional[
                     Callable[[str, str], flow_mod.LiveMigration]] = None,
                 on_migration_done: Optional[
                     Callable[[flow_mod.LiveMigration, Optional[flow_mod.MigrationResult],
                               Optional[Exception]], object]] = None,
                 evacuation_id: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 poll_interval: float = 0.5) -> None:
        self.id = evacuation_id or uuid.uuid4().hex[:12]
        self.source = source
        self.destinations = dict(destinations)
        self.guests = list(guests)
        self.destination_specs = list(destination_specs)
        self.link_rate = link_rate
        self.settings = settings
        self.plan_settings = plan_settings or plan_mod.PlanSettings()
        self.limiter = limiter
        self._factory = migration_factory or self._default_factory
        self._on_done = on_migration_done
        self._clock = clock
        self._sleep = sleep
        self.poll_interval = poll_interval
        self._listeners = events_mod.Listeners("evacuation")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._start: Optional[float] = None
        self.plan: Optional[plan_mod.EvacuationPlan] = None
        self.replans = 0
        self.status = events_mod.PENDING
        self.outcomes: Dict[str, GuestOutcome] = {}
        self.running: Dict[str, _Running] = {}
        self.fixed_cost_s = self.plan_settings.fixed_cost_s
        self._fixed_costs: Deque[float] = collections.deque(maxlen=FIXED_COST_WINDOW)
        self._current: Optional[plan_mod.EvacuationPlan] = None
        self._dirty: Dict[str, float] = {g.name: g.dirty_rate or 0 for g in self.guests}
        self._requeue: List[plan_mod.GuestPlan] = []
        self._busy: Dict[str, int] = {}
        self._not_before: Dict[str, float] = {}

    # -- control and events ------------------------------------------------------

    def subscribe(self, listener: Callable[[EvacuationEvent], object]) -> None:
        """Call ``listener(EvacuationEvent)`` for every event; errors in it are
        logged, and an ``async def`` listener is refused with TypeError."""
        self._listeners.subscribe(listener)

    def abort(self) -> None:
        """Start no more migrations and abort the running ones (guests stay put)."""
        self._stop.set()
        with self._lock:
            running = list(self.running.values())
        for item in running:
            item.flow.abort()

    def _elapsed(self) -> float:
        return 0.0 if self._start is None else self._clock() - self._start

    def _emit(self, kind: str, instance: Optional[str] = None, message: Optional[str] = None,
              migration: Optional[events_mod.MigrationEvent] = None) -> None:
        event = EvacuationEvent(kind=kind, evacuation_id=self.id, elapsed=self._elapsed(),
                                instance=instance, message=message, migration=migration)
        self._listeners.emit(event)

    # -- planning ------------------------------------------------------------------

    def make_plan(self, guests: Optional[Sequence[plan_mod.GuestSpec]] = None,
                  committed: Optional[Mapping[str, int]] = None) -> plan_mod.EvacuationPlan:
        """Plan ``guests`` (default: all) with the memory ``committed`` per destination."""
        committed = committed or {}
        specs = [dataclasses.replace(d, free_memory_bytes=d.free_memory_bytes
                                     - committed.get(d.name, 0))
                 for d in self.destination_specs if d.name in self.destinations]
        settings = dataclasses.replace(self.plan_settings, fixed_cost_s=self.fixed_cost_s)
        return plan_mod.plan(self.guests if guests is None else guests, specs,
                             self.link_rate, settings)

    def _replan(self, pending: List[plan_mod.GuestPlan], why: str) -> List[plan_mod.GuestPlan]:
        """Plan the guests not started yet again; return their new order."""
        committed: Dict[str, int] = {}
        with self._lock:
            for outcome in self.outcomes.values():
                if outcome.status == flow_mod.COMPLETED:
                    # cast: a completed guest's outcome names its destination (_ended).
                    committed[cast(str, outcome.destination)] = committed.get(
                        cast(str, outcome.destination), 0) + self._memory(outcome.name)
            for item in self.running.values():
                dest = item.item.destination
                committed[dest] = committed.get(dest, 0) + item.item.memory_bytes
        names = {g.name for g in pending}
        new = self.make_plan([g for g in self.guests if g.name in names], committed)
        self._current = new
        self.replans += 1
        for lost in new.unplaceable:
            self._finish_guest(lost.name, UNPLACEABLE, error=lost.reason)
        self._emit(REPLANNED, message="%s: %d guest(s) planned again, %d stream(s)"
                   % (why, len(new.guests), new.streams))
        return list(new.guests)

    def _memory(self, name: str) -> int:
        return next(g.memory_bytes for g in self.guests if g.name == name)

    # -- running -----------------------------------------------------------------

    def _default_factory(self, instance: str, destination: str) -> flow_mod.LiveMigration:
        clock, sleep = self._clock, self._sleep
        return flow_mod.LiveMigration(instance, self.source, self.destinations[destination],
                                      self.settings, limiter=self.limiter, clock=clock,
                                      sleep=sleep)

    def run(self) -> EvacuationResult:
        """Run the whole evacuation; return an :class:`EvacuationResult`."""
        self._start = self._clock()
        self.status = events_mod.RUNNING
        self.plan = self._current = self.make_plan()
        self._emit(PLANNED, message="; ".join(self.plan.reasons))
        for lost in self.plan.unplaceable:
            self._finish_guest(lost.name, UNPLACEABLE, error=lost.reason)
        pending = list(self.plan.guests)
        while True:
            replan: Optional[str] = None
            with self._lock:
                ended = [r for r in self.running.values() if r.done.is_set()]
            for item in ended:
                replan = self._ended(item) or replan
                with self._lock:
                    del self.running[item.item.name]
            pending = self._requeue + pending
            self._requeue = []
            if self._stop.is_set():
                for left in pending:
                    self._finish_guest(left.name, NOT_STARTED, error="evacuation aborted")
                pending = []
            if replan and pending:
                pending = self._replan(pending, replan)
            while pending and not self._stop.is_set():
                index, why = self._next(pending)
                if index is None:
                    break
                self._launch(pending.pop(index), why)
            with self._lock:
                if not pending and not self.running:
                    break
            self._sleep(self.poll_interval)
        return self._result()

    def _next(self, pending: List[plan_mod.GuestPlan]
              ) -> Tuple[Optional[int], Optional[str]]:
        """``(index in pending of the guest to start now, why)``, or ``(None, None)``.

        :func:`~migplane.core.evacuation_plan.next_start` decides from the
        running migrations' live progress; then the first pending guest whose
        destination has a free slot (and is not waiting to retry) starts.
        """
        # cast: run() planned (self.plan and self._current) before it calls _next.
        plan = cast(plan_mod.EvacuationPlan, self._current)
        with self._lock:
            running = list(self.running.values())
        now = self._elapsed()
        in_flight = [self._in_flight(r, now) for r in running]
        # The first plan's cap, not a re-plan's: that one sees only the guests not
        # started yet (a tail of two would allow two at once, the running included).
        cap: Optional[int]  # an int here; below, a destination's slots (None: unlimited)
        cap = max(cast(plan_mod.EvacuationPlan, self.plan).max_running, plan.max_running, 1)
        step = plan_mod.next_start(in_flight, plan.streams, self.link_rate, self.lead_s(),
                                   cap - len(running))
        if not step.start:
            return None, None
        per_dest: Dict[str, int] = {}
        for item in running:
            per_dest[item.item.destination] = per_dest.get(item.item.destination, 0) + 1
        slots = {d.name: d.slots for d in self.destination_specs}
        for index, candidate in enumerate(pending):
            if self._not_before.get(candidate.name, 0.0) > now:
                continue
            cap = slots.get(candidate.destination)
            if cap is None or per_dest.get(candidate.destination, 0) < cap:
                return index, step.reason
        return None, None

    def lead_s(self) -> float:
        """Seconds a migration started now needs to its first byte, with margins:
        the fixed cost (the largest of the last measured) and slack, and the age
        of the progress seen (the flow's poll) and of this loop's."""
        return (self.fixed_cost_s * LEAD_MARGIN + LEAD_EXTRA_S + self.settings.poll_interval
                + self.poll_interval)

    def _in_flight(self, running: _Running, now: float) -> plan_mod.InFlight:
        remaining = running.remaining_bytes()
        dirty = self._dirty_of(running)
        if remaining is not None:
            return plan_mod.InFlight(remaining_bytes=remaining, dirty_rate=dirty)
        return plan_mod.InFlight(
            dirty_rate=dirty, predicted_bytes=running.item.predicted_bytes,
            ready_in_s=max(0.0, self.fixed_cost_s - (now - running.started)))

    def _learn_fixed_cost(self, measured: float) -> None:
        """A migration sent its first byte ``measured`` s after it started."""
        with self._lock:
            self._fixed_costs.append(measured)
            self.fixed_cost_s = max(self._fixed_costs)

    def _dirty_of(self, running: _Running) -> float:
        return running.dirty_rate(self._dirty.get(running.item.name))

    def _launch(self, item: plan_mod.GuestPlan, why: Optional[str] = None) -> None:
        flow = self._factory(item.name, item.destination)
        running = _Running(item, flow, self._elapsed())

        def listen(event: events_mod.MigrationEvent) -> None:
            if event.kind == events_mod.TRANSFER_STARTED and running.transfer is None:
                running.transfer = self._elapsed()
            if event.kind == events_mod.PROGRESS and event.progress is not None:
                if running.observe(self._elapsed(), event.progress):
                    # observe() returned True: it has just set first_byte.
                    self._learn_fixed_cost(cast(float, running.first_byte) - running.started)
            self._emit(MIGRATION, instance=item.name, migration=event)

        flow.subscribe(listen)
        with self._lock:
            self.running[item.name] = running
        self._emit(MIGRATION_STARTED, instance=item.name, message="%s to %s (migration %s): %s"
                   % (item.name, item.destination, flow.id, why or "started"))
        thread = threading.Thread(target=self._run_one, args=(running,), daemon=True,
                                  name="evacuate-%s" % item.name)
        thread.start()

    def _run_one(self, running: _Running) -> None:
        try:
            running.result = running.flow.run()
        except exception.MigplaneError as err:
            running.error = err
            running.result = getattr(err, "result", None)
        except Exception as err:  # a bug in a driver: the others go on
            LOG.exception("Migration of %s crashed", running.item.name)
            running.error = err
        finally:
            if self._on_done is not None:
                try:
                    self._on_done(running.flow, running.result, running.error)
                except Exception:
                    LOG.exception("on_migration_done failed for %s", running.item.name)
            running.done.set()

    def _ended(self, running: _Running) -> Optional[str]:
        """Record a finished migration; return why to re-plan, or None."""
        item, flow, result = running.item, running.flow, running.result
        now = self._elapsed()
        tries = self._busy.get(item.name, 0)
        if isinstance(running.error, exception.TooManyMigrations) \
                and tries < BUSY_RETRIES and not self._stop.is_set():
            # Refused at once by a host at its limit (when_busy = refuse): the
            # guest did not move; try it again a little later.
            self._busy[item.name] = tries + 1
            self._not_before[item.name] = now + BUSY_RETRY_S
            self._requeue.append(item)
            self._emit(MIGRATION_FINISHED, instance=item.name, message=(
                "%s: refused (%s); trying again in %.0f s" % (item.name, running.error,
                                                              BUSY_RETRY_S)))
            return "%s refused by a busy host" % item.name
        progress = flow.progress
        status = result.status if result is not None else flow_mod.FAILED
        running_on = (result.running_on if result is not None and result.running_on
                      else self.source.hostname)
        self._finish_guest(
            item.name, status, running_on=running_on, destination=item.destination,
            migration_id=flow.id, started_s=running.started, transfer_s=running.transfer,
            finished_s=now, downtime_ms=progress.downtime_ms if progress else None,
            data_bytes=progress.data_processed if progress else None,
            error=str(running.error) if running.error else None)
        if status != flow_mod.COMPLETED:
            return "%s %s" % (item.name, status)
        planned = item.finish_s - item.start_s
        actual = now - running.started
        if planned and abs(actual - planned) > REPLAN_TOLERANCE * planned:
            return "%s took %.1f s, planned %.1f s" % (item.name, actual, planned)
        return None

    def _finish_guest(self, name: str, status: str, running_on: Optional[str] = None,
                      **fields: Any) -> None:
        outcome = GuestOutcome(name=name, status=status,
                               running_on=running_on or self.source.hostname, **fields)
        with self._lock:
            self.outcomes[name] = outcome
        self._emit(MIGRATION_FINISHED, instance=name, message="%s: %s, running on %s%s" % (
            name, status, outcome.running_on,
            " (%s)" % outcome.error if outcome.error else ""))

    def _result(self) -> EvacuationResult:
        # cast (here and below): run() planned before it calls _result.
        order = ([g.name for g in cast(plan_mod.EvacuationPlan, self.plan).guests]
                 + [u.name for u in cast(plan_mod.EvacuationPlan, self.plan).unplaceable])
        guests = tuple(self.outcomes[name] for name in order if name in self.outcomes)
        moved = sum(1 for g in guests if g.status == flow_mod.COMPLETED)
        if moved == len(guests):
            self.status = flow_mod.COMPLETED
        else:
            self.status = "partial" if moved else flow_mod.FAILED
        duration = self._elapsed()
        self._emit(FINISHED, message="%d of %d guest(s) moved in %.1f s"
                   % (moved, len(guests), duration))
        return EvacuationResult(evacuation_id=self.id, source=self.source.hostname,
                                status=self.status, duration_s=round(duration, 3),
                                plan=cast(plan_mod.EvacuationPlan, self.plan), guests=guests,
                                replans=self.replans)
