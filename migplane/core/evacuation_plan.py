"""The evacuation planner: empty a host at the speed of its migration link.

Pure: plain data in, a frozen :class:`EvacuationPlan` out, with its reasons.
It decides where each guest goes (never beyond a destination's free memory),
in which order, how many transfer streams share the source's link (enough to
fill it, no more: extra streams only share the same link and stretch every
guest's time in its last iterations), and when each migration starts. Each
stream is a *lane*: guests follow one another on it, and the next guests'
fixed costs (checks, ``pre_live_migration``, the destination's QEMU start)
run while the lane's current transfer is still in its last seconds, so the
link does not idle between guests. When transfers are shorter than a fixed
cost, more than one guest is prepared ahead (``prepare_ahead``). A migration
being prepared holds its per-host slot like any other (the flow takes the
slot before its checks): the plan never runs more than the source's limit at
once, preparing ones included. The prediction is a simulation of these lanes;
the ideal is the bytes to send over the link rate.

:func:`link_busy_for` and :func:`next_start` are the same model for the
executor, fed with the live progress of the running migrations.

Dirty rate and link rate are plain inputs: measured, configured or learned
elsewhere.
"""

import dataclasses
import heapq
import math
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple
from typing import cast

from migplane.core import units

#: A guest dirtying memory at this share (or more) of its stream's rate may
#: never converge in pre-copy; the plan says so and counts it at the cap below.
CONVERGENCE_LIMIT = 0.8
#: The most a pre-copy migration is predicted to send, in memory sizes.
MAX_COPIES = 5.0


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    """A guest on the source: its memory and, when measured, its dirty rate."""

    name: str
    memory_bytes: int
    #: Bytes dirtied per second; None when not measured (taken as 0).
    dirty_rate: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class DestinationSpec:
    """A candidate destination as its agent or driver reports it."""

    name: str
    free_memory_bytes: int
    #: Migrations already running there (they hold its slots).
    load: int = 0
    #: Its per-host concurrency limit; 0 is unlimited.
    max_concurrent: int = 0

    @property
    def slots(self) -> Optional[int]:
        """Slots this evacuation may use there; None is unlimited."""
        if not self.max_concurrent:
            return None
        return max(0, self.max_concurrent - self.load)


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """The planner's knobs."""

    #: Seconds from a migration's start to its first byte (checks, preparing
    #: the destination, starting its QEMU).
    fixed_cost_s: float = 2.0
    #: Bytes/s one stream reaches alone; None: one stream fills the link.
    stream_rate: Optional[float] = None
    #: The source's per-host concurrency limit; 0 is unlimited.
    source_max_concurrent: int = 0
    #: Overlap the next guest's fixed costs with the running transfer.
    pipeline: bool = True
    #: Memory kept free on every destination.
    reserve_bytes: int = 0
    #: Seconds a migration keeps its slot after its last byte (switch-over,
    #: ``post_live_migration``): the link is free then, the slot is not.
    switchover_s: float = 1.0

    def __post_init__(self) -> None:
        if self.fixed_cost_s < 0:
            raise ValueError("fixed_cost_s must be 0 or more, got %r" % self.fixed_cost_s)
        if self.switchover_s < 0:
            raise ValueError("switchover_s must be 0 or more, got %r" % self.switchover_s)
        if self.stream_rate is not None and self.stream_rate <= 0:
            raise ValueError("stream_rate must be positive, got %r" % self.stream_rate)
        if self.source_max_concurrent < 0 or self.reserve_bytes < 0:
            raise ValueError("source_max_concurrent and reserve_bytes must be 0 or more")


@dataclasses.dataclass(frozen=True)
class GuestPlan:
    """Where and when one guest moves, and what the plan expects of it."""

    name: str
    destination: str
    order: int
    lane: int
    memory_bytes: int
    predicted_bytes: int
    #: Seconds after the evacuation starts: fixed costs begin, transfer
    #: begins, the guest runs on its destination.
    start_s: float
    transfer_s: float
    #: Its last byte crosses the link (then the switch-over until finish_s).
    link_free_s: float
    finish_s: float
    #: Seconds of this guest's fixed cost hidden behind a running transfer.
    overlap_s: float
    converges: bool
    reason: str

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Unplaceable:
    name: str
    memory_bytes: int
    reason: str

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvacuationPlan:
    link_rate: float
    #: Transfers running at once on the link; one per lane.
    streams: int
    #: Lanes whose next guest is prepared while the current one transfers.
    pipelined_lanes: int
    #: The most migrations the plan runs at once (streams + prepare_ahead); each
    #: holds a per-host slot, the ones being prepared included.
    max_running: int
    guests: Tuple[GuestPlan, ...]
    unplaceable: Tuple[Unplaceable, ...]
    total_bytes: int
    ideal_s: float
    predicted_s: float
    fixed_cost_s: float
    overlapped_s: float
    reasons: Tuple[str, ...]
    #: Migrations started ahead of the streams, in their fixed costs.
    prepare_ahead: int = 0

    @property
    def ratio(self) -> float:
        """Predicted finish over the ideal (1.0 is the link's limit)."""
        return self.predicted_s / self.ideal_s if self.ideal_s else 1.0

    def destination_of(self, name: str) -> Optional[str]:
        for guest in self.guests:
            if guest.name == name:
                return guest.destination
        return None

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ratio"] = round(self.ratio, 4)
        return data


def predicted_bytes(memory_bytes: int, dirty_rate: Optional[float],
                    stream_rate: float) -> Tuple[int, bool]:
    """Bytes pre-copy sends for a guest: memory, then what it dirties meanwhile.

    The passes form a geometric series of ratio dirty/stream rate; a ratio at
    or above :data:`CONVERGENCE_LIMIT` is counted at :data:`MAX_COPIES`.
    Returns ``(bytes, converges)``.
    """
    ratio = (dirty_rate or 0.0) / stream_rate
    if ratio >= CONVERGENCE_LIMIT:
        return int(memory_bytes * MAX_COPIES), False
    return int(min(memory_bytes / (1.0 - ratio), memory_bytes * MAX_COPIES)), True


def streams_for(link_rate: float, settings: PlanSettings, guests: int) -> Tuple[int, str]:
    """Streams to keep the link full, no more; and why."""
    if settings.stream_rate is None or settings.stream_rate >= link_rate:
        streams = 1
        why = "one stream fills the %s/s link" % units.mib(link_rate)
    else:
        streams = int(math.ceil(link_rate / settings.stream_rate))
        why = ("%d streams of %s/s fill the %s/s link"
               % (streams, units.mib(settings.stream_rate), units.mib(link_rate)))
    limit = settings.source_max_concurrent
    if limit and streams > limit:
        streams = limit
        why += "; the source's limit of %d caps them at %d" % (limit, limit)
    if guests and streams > guests:
        streams = guests
        why += "; only %d guest(s) to move" % guests
    return max(1, streams), why


def _place(guests: Iterable[GuestSpec], destinations: Sequence[DestinationSpec],
           settings: PlanSettings, reasons: List[str]
           ) -> Tuple[List[Tuple[GuestSpec, str]], List[Unplaceable]]:
    """Guests (largest first) to the destination with room and least work queued."""
    free = {d.name: d.free_memory_bytes - settings.reserve_bytes for d in destinations}
    work = {d.name: 0 for d in destinations}
    usable = []
    for dest in destinations:
        if dest.slots == 0:
            reasons.append("%s is busy (%d of %d migrations running): not used"
                           % (dest.name, dest.load, dest.max_concurrent))
        else:
            usable.append(dest)
    placed, unplaceable = [], []
    for guest in sorted(guests, key=lambda g: (-g.memory_bytes, g.name)):
        room = [d for d in usable if free[d.name] >= guest.memory_bytes]
        if not room:
            most = max((free[d.name] for d in usable), default=0)
            reason = ("needs %s of memory; %s" % (
                units.mib(guest.memory_bytes),
                "no destination is usable" if not usable else
                "the most free on any destination is %s" % units.mib(max(0, most))))
            unplaceable.append(Unplaceable(guest.name, guest.memory_bytes, reason))
            continue
        best = min(room, key=lambda d: (work[d.name] + d.load * guest.memory_bytes,
                                        -free[d.name], d.name))
        free[best.name] -= guest.memory_bytes
        work[best.name] += guest.memory_bytes
        placed.append((guest, best.name))
    return placed, unplaceable


def _peak(intervals: Iterable[Tuple[float, float]], start: float, end: float) -> int:
    """Most intervals overlapping at once within [start, end)."""
    points = []
    for a, b in intervals:
        if a < end and b > start:
            points.append((max(a, start), 1))
            points.append((min(b, end), -1))
    peak = count = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        count += delta
        peak = max(peak, count)
    return peak


def plan(guests: Sequence[GuestSpec], destinations: Iterable[DestinationSpec],
         link_rate: float, settings: Optional[PlanSettings] = None) -> EvacuationPlan:
    """Plan the evacuation of ``guests`` to ``destinations`` over ``link_rate`` bytes/s.

    :param guests: :class:`GuestSpec` values (names unique).
    :param destinations: :class:`DestinationSpec` values (names unique).
    :returns: a frozen :class:`EvacuationPlan`.
    """
    settings = settings or PlanSettings()
    dests = _validated(guests, destinations, link_rate)
    reasons: List[str] = []
    placed, unplaceable = _place(guests, dests, settings, reasons)
    streams, why = streams_for(link_rate, settings, len(placed))
    reasons.append(why)
    lane_rate = link_rate / streams
    if settings.stream_rate is not None:
        lane_rate = min(lane_rate, settings.stream_rate)
    queue = [(g, dest) + predicted_bytes(g.memory_bytes, g.dirty_rate, lane_rate)
             for g, dest in placed]
    # Largest transfers first, so that the last to finish are short.
    queue.sort(key=lambda q: (-q[2], q[0].name))
    ahead = _prepare_ahead(settings, streams, [q[2] / lane_rate for q in queue])
    reasons.extend(_pipelining_reasons(settings, ahead))
    max_running = streams + ahead
    result = _schedule(queue, dests, streams, lane_rate, max_running, ahead, settings)
    total = sum(g.predicted_bytes for g in result)
    predicted = max((g.finish_s for g in result), default=0.0)
    ideal = total / link_rate
    overlapped = sum(g.overlap_s for g in result)
    fixed = settings.fixed_cost_s
    if result:
        reasons.append("%d guest(s), %s to send: ideal %.1f s, predicted %.1f s (%.3f x); "
                       "%.1f of %.1f s of fixed costs overlapped"
                       % (len(result), units.mib(total), ideal, predicted,
                          predicted / ideal if ideal else 1.0, overlapped,
                          fixed * len(result)))
    for item in unplaceable:
        reasons.append("%s stays: %s" % (item.name, item.reason))
    return EvacuationPlan(
        link_rate=float(link_rate), streams=streams,
        pipelined_lanes=streams if ahead else 0, max_running=max_running,
        guests=tuple(result),
        unplaceable=tuple(sorted(unplaceable, key=lambda u: u.name)), total_bytes=total,
        ideal_s=ideal, predicted_s=predicted, fixed_cost_s=fixed,
        overlapped_s=overlapped, reasons=tuple(reasons), prepare_ahead=ahead)


def _validated(guests: Iterable[GuestSpec], destinations: Iterable[DestinationSpec],
               link_rate: float) -> List[DestinationSpec]:
    """``destinations`` sorted by name, once the inputs are sound (else ValueError)."""
    if not link_rate or link_rate <= 0:
        raise ValueError("link_rate must be positive bytes/s, got %r" % (link_rate,))
    names = [g.name for g in guests]
    if len(set(names)) != len(names):
        raise ValueError("guest names must be unique: %s" % ", ".join(sorted(names)))
    dests = sorted(destinations, key=lambda d: d.name)
    if len({d.name for d in dests}) != len(dests):
        raise ValueError("destination names must be unique")
    return dests


def _pipelining_reasons(settings: PlanSettings, ahead: int) -> List[str]:
    if not settings.pipeline:
        return ["pipelining is off: each guest's fixed costs idle its lane"]
    if ahead:
        return ["up to %d guest(s) prepared ahead: their fixed costs (%.1f s) run during "
                "the last seconds of the current transfers; they hold their slots "
                "meanwhile" % (ahead, settings.fixed_cost_s)]
    if settings.source_max_concurrent:
        return ["the source's limit of %d leaves no slot to prepare the next guest "
                "during a transfer" % settings.source_max_concurrent]
    return []


def _schedule(queue: Sequence[Tuple[GuestSpec, str, int, bool]],
              dests: Iterable[DestinationSpec], streams: int, lane_rate: float,
              max_running: int, ahead: int, settings: PlanSettings) -> List[GuestPlan]:
    """Simulate the lanes: each guest of ``queue`` (``(guest, destination, bytes,
    converges)``, in order of preference) starts on the first lane free, as
    early as the running limits allow; its :class:`GuestPlan` values, by start."""
    fixed, switchover = settings.fixed_cost_s, settings.switchover_s
    limits = {d.name: d.slots for d in dests}
    # (start, finish) per destination
    busy: Dict[str, List[Tuple[float, float]]] = {d.name: [] for d in dests}
    every: List[Tuple[float, float]] = []  # (start, finish) of every migration
    lanes = [(0.0, lane) for lane in range(streams)]  # (link free at, lane)
    heapq.heapify(lanes)
    result: List[GuestPlan] = []
    queue = list(queue)
    while queue:
        lane_free, lane = heapq.heappop(lanes)
        want = max(0.0, lane_free - fixed) if ahead else lane_free
        best: Optional[Tuple[float, float, float, int]] = None
        for index, (_, dest, nbytes, _ok) in enumerate(queue):
            duration = nbytes / lane_rate
            start = want
            while True:
                transfer = max(lane_free, start + fixed)
                finish = transfer + duration + switchover
                # cast: mypy does not narrow limits[dest]; None is tested just before.
                if _peak(every, start, finish) < max_running and (
                        limits[dest] is None
                        or _peak(busy[dest], start, finish) < cast(int, limits[dest])):
                    break
                start = min(b for a, b in every + busy[dest] if b > start)
            if best is None or start < best[0]:
                best = (start, transfer, duration, index)
            if start == want:
                break
        # The queue is not empty: its first guest always sets best.
        start, transfer, duration, index = cast(Tuple[float, float, float, int], best)
        guest, dest, nbytes, converges = queue.pop(index)
        link_end = transfer + duration
        finish = link_end + switchover
        busy[dest].append((start, finish))
        every.append((start, finish))
        overlap = max(0.0, min(fixed, lane_free - start)) if lane_free > 0 else 0.0
        reason = "to %s (%s)%s%s" % (
            dest, "most room and least queued", "" if converges else
            "; dirties %s/s, near the stream's %s/s: may not converge"
            % (units.mib(guest.dirty_rate or 0), units.mib(lane_rate)),
            "; %.1f s of its fixed cost overlapped" % overlap if overlap else "")
        result.append(GuestPlan(
            name=guest.name, destination=dest, order=len(result), lane=lane,
            memory_bytes=guest.memory_bytes, predicted_bytes=nbytes,
            start_s=start, transfer_s=transfer, link_free_s=link_end,
            finish_s=finish, overlap_s=overlap, converges=converges,
            reason=reason))
        heapq.heappush(lanes, (link_end, lane))
    result.sort(key=lambda g: (g.start_s, g.order))
    return [dataclasses.replace(g, order=i) for i, g in enumerate(result)]


def _prepare_ahead(settings: PlanSettings, streams: int, durations: Sequence[float]) -> int:
    """Migrations to prepare beyond the streams so that fixed costs hide behind
    transfers: enough that the shortest transfers cover a fixed cost and the
    switch-over of the one ending (which keeps its slot), plus one, within the
    source's limit and the guests there are. The executor starts each as late
    as the link allows, so a spare slot costs nothing when fixed costs are short."""
    if not settings.pipeline or len(durations) <= streams:
        return 0
    shortest = min(durations)
    cover = settings.fixed_cost_s + settings.switchover_s
    # One more than the cover needs: fixed costs vary with the hosts' load.
    per_lane = 1 + (max(1, int(math.ceil(cover / shortest))) if shortest > 0 else 1)
    ahead = min(streams * per_lane, len(durations) - streams)
    if settings.source_max_concurrent:
        ahead = min(ahead, max(0, settings.source_max_concurrent - streams))
    return ahead


# -- the same model, live: when should the executor start the next guest ----------------

@dataclasses.dataclass(frozen=True)
class InFlight:
    """A started migration as the pipeline sees it."""

    #: Bytes its transfer still has to send; None while in its fixed costs.
    remaining_bytes: Optional[int] = None
    #: Bytes/s it dirties (pre-copy resends them).
    dirty_rate: float = 0.0
    #: For one in its fixed costs: the bytes the plan expects it to send...
    predicted_bytes: int = 0
    #: ...and the seconds until its first byte is expected.
    ready_in_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class PipelineStep:
    """Whether to start the next guest now, and why."""

    start: bool
    #: Seconds until a lane is free of the work already started.
    link_busy_s: float
    #: Seconds a new migration takes to its first byte (fixed cost, margins).
    lead_s: float
    reason: str


def sending_time(remaining: float, dirty: Optional[float], rate: float) -> float:
    """Seconds to send ``remaining`` bytes at ``rate`` while dirtying ``dirty``
    bytes/s (pre-copy resends it; counted at no less than a fifth of the rate)."""
    return remaining / max(rate - (dirty or 0.0), 0.2 * rate, 1.0)


def link_busy_for(in_flight: Sequence[InFlight], streams: int, link_rate: float) -> float:
    """Seconds until one of the ``streams`` lanes is free of the started work.

    Sending migrations share the link; those in their fixed costs join a lane
    when it frees and they are ready, in the order given.
    """
    lane_rate = link_rate / max(1, streams)
    sending = sorted((sending_time(f.remaining_bytes, f.dirty_rate, lane_rate)
                      for f in in_flight if f.remaining_bytes is not None), reverse=True)
    lanes = [0.0] * max(1, streams)
    for seconds in sending:
        # More sending than lanes share them: the same bytes, queued behind.
        lanes.sort()
        lanes[0] += seconds
    for item in in_flight:
        if item.remaining_bytes is None:
            lanes.sort()
            lanes[0] = max(lanes[0], item.ready_in_s) + sending_time(
                item.predicted_bytes, item.dirty_rate, lane_rate)
    return min(lanes)


def next_start(in_flight: Sequence[InFlight], streams: int, link_rate: float, lead_s: float,
               slots_free: int) -> PipelineStep:
    """Start the next guest now? Yes when a lane frees within ``lead_s`` (the
    new guest's fixed cost with its margins) and a slot is free: then its first
    byte follows the last byte before it. Earlier only shares the link; later
    idles it."""
    busy = link_busy_for(in_flight, streams, link_rate)
    if slots_free <= 0:
        return PipelineStep(False, busy, lead_s, "no free slot (%d running)"
                            % len(in_flight))
    if busy > lead_s:
        return PipelineStep(False, busy, lead_s, "the link is busy for %.1f s more, "
                            "more than the %.1f s a new guest needs to its first byte"
                            % (busy, lead_s))
    if not in_flight:
        return PipelineStep(True, busy, lead_s, "a stream is free")
    return PipelineStep(True, busy, lead_s, "pipelined: a lane frees in %.1f s, a new "
                        "guest needs %.1f s to its first byte" % (busy, lead_s))
