"""The evacuation planner: empty a host at the speed of its migration link.

Pure: plain data in, a frozen :class:`EvacuationPlan` out, with its reasons.
It decides where each guest goes (never beyond a destination's free memory),
in which order, how many transfer streams share the source's link (enough to
fill it, no more: extra streams only share the same link and stretch every
guest's time in its last iterations), and when each migration starts. Each
stream is a *lane*: guests follow one another on it, and the next guest's
fixed costs (checks, ``pre_live_migration``, the destination's QEMU start)
run while the lane's current transfer is still in its last iterations, so the
link does not idle between guests. The prediction is a simulation of these
lanes; the ideal is the bytes to send over the link rate.

Dirty rate and link rate are plain inputs: measured, configured or learned
elsewhere.
"""

import dataclasses
import heapq
import math
from typing import Optional
from typing import Tuple

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
    def slots(self):
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

    def __post_init__(self):
        if self.fixed_cost_s < 0:
            raise ValueError("fixed_cost_s must be 0 or more, got %r" % self.fixed_cost_s)
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
    finish_s: float
    #: Seconds of this guest's fixed cost hidden behind a running transfer.
    overlap_s: float
    converges: bool
    reason: str

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Unplaceable:
    name: str
    memory_bytes: int
    reason: str

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvacuationPlan:
    link_rate: float
    #: Transfers running at once on the link; one per lane.
    streams: int
    #: Lanes whose next guest is prepared while the current one transfers.
    pipelined_lanes: int
    #: The most migrations the plan runs at once (streams + pipelined lanes).
    max_running: int
    guests: Tuple[GuestPlan, ...]
    unplaceable: Tuple[Unplaceable, ...]
    total_bytes: int
    ideal_s: float
    predicted_s: float
    fixed_cost_s: float
    overlapped_s: float
    reasons: Tuple[str, ...]

    @property
    def ratio(self):
        """Predicted finish over the ideal (1.0 is the link's limit)."""
        return self.predicted_s / self.ideal_s if self.ideal_s else 1.0

    def destination_of(self, name):
        for guest in self.guests:
            if guest.name == name:
                return guest.destination
        return None

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["ratio"] = round(self.ratio, 4)
        return data


def predicted_bytes(memory_bytes, dirty_rate, stream_rate):
    """Bytes pre-copy sends for a guest: memory, then what it dirties meanwhile.

    The passes form a geometric series of ratio dirty/stream rate; a ratio at
    or above :data:`CONVERGENCE_LIMIT` is counted at :data:`MAX_COPIES`.
    Returns ``(bytes, converges)``.
    """
    ratio = (dirty_rate or 0.0) / stream_rate
    if ratio >= CONVERGENCE_LIMIT:
        return int(memory_bytes * MAX_COPIES), False
    return int(min(memory_bytes / (1.0 - ratio), memory_bytes * MAX_COPIES)), True


def streams_for(link_rate, settings, guests):
    """Streams to keep the link full, no more; and why."""
    if settings.stream_rate is None or settings.stream_rate >= link_rate:
        streams = 1
        why = "one stream fills the %s/s link" % _mib(link_rate)
    else:
        streams = int(math.ceil(link_rate / settings.stream_rate))
        why = ("%d streams of %s/s fill the %s/s link"
               % (streams, _mib(settings.stream_rate), _mib(link_rate)))
    limit = settings.source_max_concurrent
    if limit and streams > limit:
        streams = limit
        why += "; the source's limit of %d caps them at %d" % (limit, limit)
    if guests and streams > guests:
        streams = guests
        why += "; only %d guest(s) to move" % guests
    return max(1, streams), why


def _mib(value):
    return "%.1f MiB" % (value / 1048576.0)


def _place(guests, destinations, settings, reasons):
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
                _mib(guest.memory_bytes),
                "no destination is usable" if not usable else
                "the most free on any destination is %s" % _mib(max(0, most))))
            unplaceable.append(Unplaceable(guest.name, guest.memory_bytes, reason))
            continue
        best = min(room, key=lambda d: (work[d.name] + d.load * guest.memory_bytes,
                                        -free[d.name], d.name))
        free[best.name] -= guest.memory_bytes
        work[best.name] += guest.memory_bytes
        placed.append((guest, best.name))
    return placed, unplaceable


def _peak(intervals, start, end):
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


def plan(guests, destinations, link_rate, settings=None):
    """Plan the evacuation of ``guests`` to ``destinations`` over ``link_rate`` bytes/s.

    :param guests: :class:`GuestSpec` values (names unique).
    :param destinations: :class:`DestinationSpec` values (names unique).
    :returns: a frozen :class:`EvacuationPlan`.
    """
    settings = settings or PlanSettings()
    if not link_rate or link_rate <= 0:
        raise ValueError("link_rate must be positive bytes/s, got %r" % (link_rate,))
    names = [g.name for g in guests]
    if len(set(names)) != len(names):
        raise ValueError("guest names must be unique: %s" % ", ".join(sorted(names)))
    dests = sorted(destinations, key=lambda d: d.name)
    if len({d.name for d in dests}) != len(dests):
        raise ValueError("destination names must be unique")
    reasons = []
    placed, unplaceable = _place(guests, dests, settings, reasons)
    streams, why = streams_for(link_rate, settings, len(placed))
    reasons.append(why)
    limit = settings.source_max_concurrent
    spare = (limit - streams) if limit else streams
    pipelined = min(streams, max(0, spare)) if settings.pipeline else 0
    if not settings.pipeline:
        reasons.append("pipelining is off: each guest's fixed costs idle its lane")
    elif pipelined < streams:
        reasons.append("the source's limit of %d leaves %d of %d lane(s) a spare slot to "
                       "prepare the next guest during a transfer" % (limit, pipelined,
                                                                     streams))
    else:
        reasons.append("the next guest's fixed costs (%.1f s) run during the last "
                       "seconds of the current transfer on each lane"
                       % settings.fixed_cost_s)
    lane_rate = link_rate / streams
    if settings.stream_rate is not None:
        lane_rate = min(lane_rate, settings.stream_rate)
    fixed = settings.fixed_cost_s
    limits = {d.name: d.slots for d in dests}
    busy = {d.name: [] for d in dests}  # (start, finish) per destination
    lanes = [(0.0, lane) for lane in range(streams)]  # (free at, lane)
    heapq.heapify(lanes)
    # A lane's next guest starts no earlier than its current one's transfer,
    # so a lane never holds more than two migrations.
    began = [0.0] * streams
    queue = [(g, dest) + predicted_bytes(g.memory_bytes, g.dirty_rate, lane_rate)
             for g, dest in placed]
    # Largest transfers first, so that the last to finish are short.
    queue.sort(key=lambda q: (-q[2], q[0].name))
    result = []
    while queue:
        lane_free, lane = heapq.heappop(lanes)
        earliest = (max(began[lane], lane_free - fixed)
                    if lane < pipelined and lane_free > 0 else lane_free)
        best = None
        for index, (_, dest, nbytes, _ok) in enumerate(queue):
            duration = nbytes / lane_rate
            start = earliest
            while True:
                transfer = max(lane_free, start + fixed)
                finish = transfer + duration
                if limits[dest] is None or _peak(busy[dest], start, finish) < limits[dest]:
                    break
                start = min(b for a, b in busy[dest] if b > start)
            if best is None or start < best[0]:
                best = (start, transfer, finish, index)
            if start == earliest:
                break
        start, transfer, finish, index = best
        guest, dest, nbytes, converges = queue.pop(index)
        busy[dest].append((start, finish))
        overlap = max(0.0, min(fixed, lane_free - start)) if lane_free > 0 else 0.0
        reason = "to %s (%s)%s%s" % (
            dest, "most room and least queued", "" if converges else
            "; dirties %s/s, near the stream's %s/s: may not converge"
            % (_mib(guest.dirty_rate or 0), _mib(lane_rate)),
            "; %.1f s of its fixed cost overlapped" % overlap if overlap else "")
        result.append(GuestPlan(
            name=guest.name, destination=dest, order=len(result), lane=lane,
            memory_bytes=guest.memory_bytes, predicted_bytes=nbytes,
            start_s=start, transfer_s=transfer,
            finish_s=finish, overlap_s=overlap, converges=converges,
            reason=reason))
        began[lane] = transfer
        heapq.heappush(lanes, (finish, lane))
    result.sort(key=lambda g: (g.start_s, g.order))
    result = [dataclasses.replace(g, order=i) for i, g in enumerate(result)]
    total = sum(g.predicted_bytes for g in result)
    predicted = max((g.finish_s for g in result), default=0.0)
    ideal = total / link_rate
    overlapped = sum(g.overlap_s for g in result)
    if result:
        reasons.append("%d guest(s), %s to send: ideal %.1f s, predicted %.1f s (%.3f x); "
                       "%.1f of %.1f s of fixed costs overlapped"
                       % (len(result), _mib(total), ideal, predicted,
                          predicted / ideal if ideal else 1.0, overlapped,
                          fixed * len(result)))
    for item in unplaceable:
        reasons.append("%s stays: %s" % (item.name, item.reason))
    return EvacuationPlan(
        link_rate=float(link_rate), streams=streams, pipelined_lanes=pipelined,
        max_running=streams + pipelined, guests=tuple(result),
        unplaceable=tuple(sorted(unplaceable, key=lambda u: u.name)), total_bytes=total,
        ideal_s=ideal, predicted_s=predicted, fixed_cost_s=fixed,
        overlapped_s=overlapped, reasons=tuple(reasons))
