"""Step deadlines: a driver that hangs cannot hang the flow.

Python cannot cancel a call that blocks (a hypervisor daemon that stopped
answering, an RPC whose peer vanished), so :class:`StepDeadlines` runs every
driver call in a worker thread of its own and stops *waiting* for it at
``[live_migration] step_deadline``: the caller gets the typed
:class:`~migplane.core.exception.StepTimedOut` naming the step and the host,
and whatever the call answers later is logged and ignored. What the hung step
did is unknown: the flow's failure path treats that host as unreachable, it
never assumes the step did nothing.

The wait also ends when the migration is aborted from another thread
(``LiveMigration.abort()``): a call already running then gets
:data:`ABORT_GRACE_S` more (a quick step finishes normally, so an ordinary
abort takes its ordinary path), a call made after the abort (the abort and
rollback steps themselves) gets its whole deadline. A flow stuck in any step
thus ends within one deadline of an abort.

The same wrapper checks what ``get_job_progress`` answers (a
:class:`~migplane.core.driver.JobProgress` in one of the known states), so
that every poll, the monitor's and the failure path's, refuses a broken
answer at once instead of polling it until a timeout.
"""

import functools
import logging
import threading
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional
from typing import Tuple

from migplane.core import driver as driver_mod
from migplane.core import exception

LOG = logging.getLogger(__name__)

#: Seconds a call already running when the migration is aborted is still awaited.
ABORT_GRACE_S = 2.0
#: Seconds between two looks at the abort request while a call runs.
ABORT_POLL_S = 0.05
#: Methods answered in the caller's thread: they only return local objects.
LOCAL = frozenset({"flow_timing"})

#: ``.step`` is set in a worker thread while it runs its call.
_worker = threading.local()


class _Call:
    """One driver call running in its worker thread, and its outcome."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.host = ""
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.abandoned_at: Optional[float] = None
        self._lock = threading.Lock()

    def run(self, method: Callable[..., Any], args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> None:
        _worker.step = self.step
        try:
            self.result = method(*args, **kwargs)
        except BaseException as err:  # handed to the caller, or logged if it left
            self.error = err
        with self._lock:
            self.done.set()
            late = self.abandoned_at
        if late is not None:
            LOG.warning("Driver step %s on %s answered %.1f s after the flow stopped "
                        "waiting for it; the answer (%s) is ignored", self.step,
                        self.host, time.monotonic() - late,
                        "%s: %s" % (type(self.error).__name__, self.error)
                        if self.error is not None else exception.excerpt(self.result))

    def abandon(self, host: str) -> bool:
        """Stop waiting; False when the call answered in the meantime."""
        with self._lock:
            if self.done.is_set():
                return False
            self.host = host
            self.abandoned_at = time.monotonic()
            return True


class StepDeadlines:
    """``driver`` as the flow sees it: every call bounded by ``deadline_s``.

    Attributes that are not methods (``hostname``, ``settings``,
    ``identity``...) are the driver's own. :attr:`driver` is the wrapped
    driver.

    :param deadline_s: seconds the caller waits for one call.
    :param aborted: the flow's abort request (a ``threading.Event``), or None.
    """

    def __init__(self, driver: Any, deadline_s: float,
                 aborted: Optional[threading.Event] = None) -> None:
        if isinstance(driver, StepDeadlines):
            driver = driver.driver
        self.driver: Any = driver
        self.deadline_s = deadline_s
        self.aborted = aborted

    def __repr__(self) -> str:
        return "<StepDeadlines %.1f s of %r>" % (self.deadline_s, self.driver)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.driver, name)
        if name.startswith("_") or name in LOCAL or isinstance(value, type) \
                or not callable(value):
            return value

        @functools.wraps(value)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            result = self.call(name, value, *args, **kwargs)
            if name == "get_job_progress":
                self._check_progress(result)
            return result
        return bounded

    def _host(self) -> str:
        try:
            return str(self.driver.hostname)
        except Exception:  # the name is for the message; the error must still come
            return "<host of %s>" % type(self.driver).__name__

    def call(self, step: str, method: Callable[..., Any], *args: Any, **kwargs: Any
             ) -> Any:
        """``method(*args, **kwargs)`` in a worker; its result or its exception.

        :raises StepTimedOut: no answer within the deadline, or within
            :data:`ABORT_GRACE_S` of an abort requested while it ran.
        """
        if getattr(_worker, "step", None) is not None:
            # A call made by a driver call (a simulated world running its
            # scheduled events, a proxy calling its backend) is bounded by the
            # outer call's deadline, and may need locks its caller holds.
            return method(*args, **kwargs)
        call = _Call(step)
        worker = threading.Thread(target=call.run, args=(method, args, kwargs),
                                  name="migplane-%s" % step, daemon=True)
        aborted = self.aborted
        watch_abort = aborted is not None and not aborted.is_set()
        now = time.monotonic()
        deadline = now + self.deadline_s
        reason = "within the step deadline of %g s ([live_migration] step_deadline)" \
            % self.deadline_s
        worker.start()
        while True:
            if watch_abort and aborted is not None and aborted.is_set():
                watch_abort = False
                if now + ABORT_GRACE_S < deadline:
                    deadline = now + ABORT_GRACE_S
                    reason = "within %g s of the abort request" % ABORT_GRACE_S
            wait = deadline - now
            if wait <= 0 and call.abandon(self._host()):
                raise exception.StepTimedOut(step=step, host=call.host, reason=reason)
            if call.done.wait(min(wait, ABORT_POLL_S) if watch_abort else max(wait, 0)):
                break
            now = time.monotonic()
        if call.error is not None:
            raise call.error
        return call.result

    def _check_progress(self, progress: Any) -> None:
        problem = driver_mod.progress_problem(progress)
        if problem is None:
            return
        try:
            name = self.call("describe", self.driver.describe).name
        except Exception:  # the name is for the message only
            name = type(self.driver).__name__
        err = exception.DriverContractError(driver=name, step="get_job_progress",
                                            reason=problem)
        err.progress = progress
        raise err
