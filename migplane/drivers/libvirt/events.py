"""libvirt events: the default event loop, and completed-job statistics.

Why: when ``migrateToURI3`` returns, the source domain is gone (undefined),
and with it the statistics of the job that moved it; libvirt hands them over
in a ``JOB_COMPLETED`` event just before. Events need libvirt's event loop,
registered once per process before connections open and run in a thread;
remote connections get keepalives from it too.
"""

import logging
import threading
import time
from typing import Any
from typing import Dict
from typing import Mapping
from typing import Optional

import libvirt

LOG = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: Optional[threading.Thread] = None

#: libvirt-python ships no types.
Connection = Any  # libvirt.virConnect
Domain = Any  # libvirt.virDomain


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # keep the loop alive whatever a callback did
            LOG.exception("libvirt event loop iteration failed")
            time.sleep(1)


def _ignore_error(ctx: Any, err: Any) -> None:
    """libvirt's default handler prints every error to stderr; we log ours."""


def ensure_event_loop() -> bool:
    """Register libvirt's default event loop and run it, once per process.

    Also silences libvirt's default error printer: both are process-wide
    settings that an embedding process (``event_loop = false``) makes itself.
    """
    global _thread
    with _lock:
        if _thread is not None:
            return False
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        _thread = threading.Thread(target=_run, name="libvirt-event-loop", daemon=True)
        _thread.start()
        return True


class CompletedJobs:
    """Statistics of completed jobs, by domain UUID, as the events deliver them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stats: Dict[str, Dict[str, Any]] = {}

    def register(self, conn: Connection) -> Any:
        """Subscribe to ``conn``'s JOB_COMPLETED events; return the callback id."""
        return conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_event, None)

    def _on_event(self, conn: Connection, dom: Domain, params: Mapping[str, Any],
                  opaque: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._cond:
            self._stats[uuid] = dict(params)
            self._cond.notify_all()

    def forget(self, uuid: str) -> None:
        with self._cond:
            self._stats.pop(uuid, None)

    def get(self, uuid: str, timeout: float = 0.0) -> Optional[Dict[str, Any]]:
        """The stats of ``uuid``'s completed job, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while uuid not in self._stats:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return dict(self._stats[uuid])
