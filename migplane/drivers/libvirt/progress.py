"""libvirt job statistics (``virDomain.jobStats()``) as the core's JobProgress.

libvirt reports the dirty rate in pages per second and times in
milliseconds under its own key names; the flow wants bytes and one record
whatever the driver, so the translation lives here, in one place.
"""

from typing import Any
from typing import Dict
from typing import Mapping
from typing import Optional

import libvirt

from migplane.core import driver as driver_mod

_STATES = {
    libvirt.VIR_DOMAIN_JOB_NONE: driver_mod.JOB_NONE,
    libvirt.VIR_DOMAIN_JOB_BOUNDED: driver_mod.JOB_RUNNING,
    libvirt.VIR_DOMAIN_JOB_UNBOUNDED: driver_mod.JOB_RUNNING,
    libvirt.VIR_DOMAIN_JOB_COMPLETED: driver_mod.JOB_COMPLETED,
    libvirt.VIR_DOMAIN_JOB_FAILED: driver_mod.JOB_FAILED,
    libvirt.VIR_DOMAIN_JOB_CANCELLED: driver_mod.JOB_CANCELLED,
}

_BYTES = ("data_total", "data_processed", "data_remaining",
          "memory_total", "memory_processed", "memory_remaining",
          "disk_total", "disk_processed", "disk_remaining")


def job_state(stats: Mapping[str, Any]) -> str:
    """The core's job state of a libvirt stats dict (its ``type`` key)."""
    return _STATES.get(stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE), driver_mod.JOB_NONE)


def is_active(stats: Mapping[str, Any]) -> bool:
    return stats.get("type") in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                 libvirt.VIR_DOMAIN_JOB_UNBOUNDED)


def transferring(stats: Mapping[str, Any]) -> bool:
    """QEMU's transfer has begun: libvirt's job exists before QEMU is told to
    migrate, and until then QEMU refuses a switch to post-copy (its
    capability is set just before the transfer)."""
    return is_active(stats) and int(stats.get("memory_total", 0) or 0) > 0


def dirty_rate(stats: Mapping[str, Any]) -> int:
    """Bytes dirtied per second: libvirt counts pages."""
    pages = int(stats.get("memory_dirty_rate", 0) or 0)
    page_size = int(stats.get("memory_page_size", 4096) or 4096)
    return pages * page_size


def to_progress(stats: Optional[Mapping[str, Any]], state: Optional[str] = None,
                postcopy: bool = False, error: Optional[str] = None
                ) -> driver_mod.JobProgress:
    """A :class:`~migplane.core.driver.JobProgress` from a jobStats() dict.

    :param state: overrides the state read from ``stats`` (e.g. the outcome of
        the migration call, which is more reliable than a stale ``type``).
    """
    stats = stats or {}
    values: Dict[str, Any] = {key: max(0, int(stats.get(key, 0) or 0)) for key in _BYTES}
    downtime = stats.get("downtime")
    if error is None and stats.get("errmsg"):
        error = stats["errmsg"]
    return driver_mod.JobProgress(
        state=state or job_state(stats),
        time_elapsed_ms=int(stats.get("time_elapsed", 0) or 0),
        dirty_rate=dirty_rate(stats),
        iteration=int(stats.get("memory_iteration", 0) or 0),
        downtime_ms=None if downtime is None else int(downtime),
        postcopy=postcopy,
        error=error,
        cpu_throttle_pct=int(stats.get("auto_converge_throttle", 0) or 0),
        **values)
