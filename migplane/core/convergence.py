"""What the strategy knows of a guest and a link before anything moves.

Plain, frozen records (a driver measures, the core decides) and the pure
rules that pick a figure when several sources could give one. Every figure
says where it came from, because a plan built on a guess must say so.
"""

import dataclasses
from typing import TYPE_CHECKING
from typing import Any
from typing import Dict
from typing import Iterable
from typing import Optional
from typing import Tuple

from migplane.core import units
from migplane.core import versioned

if TYPE_CHECKING:  # the driver API imports this module; only the type is needed
    from migplane.core import driver as driver_mod

#: Where a dirty rate came from.
SAMPLING = "sampling"                  # the hypervisor sampled the guest before the move
FIRST_ITERATION = "first-iteration"    # read from the first pre-copy pass's statistics
UNAVAILABLE = "unavailable"            # nothing measured yet
DIRTY_RATE_SOURCES = (SAMPLING, FIRST_ITERATION, UNAVAILABLE)

#: Where a link rate came from.
BANDWIDTH_LIMIT = "bandwidth-limit"    # [live_migration] bandwidth (or a per-request one)
INTERFACE_SPEED = "interface-speed"    # the speed the host reports for the interface
LEARNED = "first-iteration"            # the throughput of the first pre-copy pass
UNKNOWN = "unknown"
LINK_SOURCES = (BANDWIDTH_LIMIT, INTERFACE_SPEED, LEARNED, UNKNOWN)
#: The first pass left less than this share of ``rate x its time``: the guest
#: rewrites a working set that size rather than new memory.
WORKING_SET_SHARE = 0.9


def _optional_int(value: Any) -> Optional[int]:
    return None if value is None else versioned.check_int(value)


_f = versioned.field


@dataclasses.dataclass(frozen=True)
class DirtyRateMeasurement(versioned.VersionedData):
    """How fast a guest dirties its memory, in bytes per second.

    Versioned: agents send it with their plans (``migplane explain``) and records.
    """

    # Version 1.0: dirty_rate, source, window_s, reason, working_set.
    VERSION = "1.0"

    dirty_rate: Optional[int] = _f("1.0", _optional_int)
    source: str = _f("1.0", versioned.check_choice(*DIRTY_RATE_SOURCES),
                     default=UNAVAILABLE)
    #: Seconds the measurement covered.
    window_s: float = _f("1.0", versioned.check_number, default=0.0)
    reason: str = _f("1.0", versioned.check_str, default="")
    #: Bytes the guest keeps rewriting, when the measurement could tell.
    working_set: Optional[int] = _f("1.0", _optional_int)

    def _validate(self) -> None:
        if self.source != UNAVAILABLE and (self.dirty_rate is None or self.dirty_rate < 0):
            raise self._invalid("dirty_rate", self.dirty_rate,
                                "a %s dirty rate needs a figure >= 0" % self.source)

    @property
    def available(self) -> bool:
        return self.source != UNAVAILABLE

    def describe(self) -> str:
        if not self.available:
            return "unavailable%s" % (": " + self.reason if self.reason else "")
        return "%s (%s%s)" % (units.mib_s(self.dirty_rate), self.source,
                              ", %.1f s window" % self.window_s if self.window_s else "")

    def to_dict(self) -> Dict[str, Any]:
        """The plain form (displays, records); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "DirtyRateMeasurement":
        return super().from_dict(data or {})


@dataclasses.dataclass(frozen=True)
class LinkRate(versioned.VersionedData):
    """The rate one migration can expect from its link, in bytes per second."""

    # Version 1.0: rate, source, reason.
    VERSION = "1.0"

    rate: Optional[int] = _f("1.0", _optional_int)
    source: str = _f("1.0", versioned.check_choice(*LINK_SOURCES), default=UNKNOWN)
    reason: str = _f("1.0", versioned.check_str, default="")

    # Alike DirtyRateMeasurement's check, not shared: a dirty rate may be 0, a link rate not.
    def _validate(self) -> None:
        if self.source != UNKNOWN and (self.rate is None or self.rate <= 0):
            raise self._invalid("rate", self.rate,
                                "a %s link rate needs a figure > 0" % self.source)

    @property
    def known(self) -> bool:
        return self.source != UNKNOWN

    def describe(self) -> str:
        return "%s (%s)" % (units.mib_s(self.rate), self.source)

    def to_dict(self) -> Dict[str, Any]:
        """The plain form (displays, records); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "LinkRate":
        return super().from_dict(data or {})


def link_rate(bandwidth_mib: int, interface_speed: Optional[int] = None) -> LinkRate:
    """The link rate a plan starts from: the bandwidth limit when one is set
    (the hypervisor will not go faster), else the interface speed the host
    reports, else unknown (the monitor learns it from the first pass).

    :param bandwidth_mib: the migration's bandwidth limit in MiB/s; 0 = none.
    :param interface_speed: bytes/s of the interface towards the destination.
    """
    limit = bandwidth_mib * units.MiB if bandwidth_mib else None
    if limit and interface_speed and interface_speed < limit:
        return LinkRate(interface_speed, INTERFACE_SPEED,
                        "the interface (%s) is slower than the bandwidth limit (%d MiB/s)"
                        % (units.mib_s(interface_speed), bandwidth_mib))
    if limit:
        return LinkRate(limit, BANDWIDTH_LIMIT,
                        "[live_migration] bandwidth = %d MiB/s" % bandwidth_mib)
    if interface_speed:
        return LinkRate(interface_speed, INTERFACE_SPEED,
                        "speed the host reports for the interface towards the destination")
    return LinkRate(None, UNKNOWN, "no bandwidth limit and no interface speed reported; "
                                   "learned from the first pass")


def from_first_pass(history: Iterable[Tuple[float, "driver_mod.JobProgress"]]
                    ) -> Tuple[DirtyRateMeasurement, LinkRate]:
    """Dirty rate and link rate learned from the first pre-copy pass.

    :param history: ``(elapsed_s, JobProgress)`` samples of a running job.
    :returns: ``(DirtyRateMeasurement, LinkRate)``; unavailable/unknown until
        a sample of the second pass exists (the first pass's statistics are
        then complete).
    """
    first = next(((t, p) for t, p in history if p.iteration >= 2), None)
    if first is None:
        return (DirtyRateMeasurement(reason="the first pass has not finished"),
                LinkRate(reason="the first pass has not finished"))
    elapsed, progress = first
    seconds = progress.time_elapsed_ms / 1000.0 if progress.time_elapsed_ms else elapsed
    rate = max(0, int(progress.dirty_rate))
    # What the first pass left to send is what the guest dirtied meanwhile: less
    # than its rate allows means it keeps rewriting a smaller working set.
    saturated = progress.memory_remaining < WORKING_SET_SHARE * rate * seconds
    dirty = DirtyRateMeasurement(
        rate, FIRST_ITERATION, round(seconds, 3),
        "the hypervisor's dirty rate at the end of the first pre-copy pass",
        working_set=int(progress.memory_remaining) if saturated else None)
    if seconds > 0 and progress.memory_processed > 0:
        link = LinkRate(int(progress.memory_processed / seconds), LEARNED,
                        "memory sent in the first %.1f s of the transfer" % seconds)
    else:
        link = LinkRate(reason="no throughput in the first pass")
    return dirty, link
