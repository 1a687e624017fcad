"""Progress events a caller can subscribe to while a migration runs, and the
statuses of a migration: the one place these strings are defined (the flow,
the agent's records and the CLI all use them).
"""

import dataclasses
import inspect
import logging
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from migplane.core import driver

LOG = logging.getLogger(__name__)

# -- statuses of a migration (LiveMigration.status, MigrationResult.status, records) --

PENDING = "pending"
QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
ABORTED = "aborted"
TIMED_OUT = "timed_out"
#: Where the guest is could not be told (e.g. its stored record was unreadable).
UNRESOLVED = "unresolved"
#: A migration in one of these may still change.
ACTIVE = (PENDING, QUEUED, RUNNING)
#: A migration in one of these is over.
FINISHED = (COMPLETED, FAILED, ABORTED, TIMED_OUT)

# -- verdicts: where the guest is once a migration ended (migplane.core.settle) ----------

VERDICT_COMPLETED = "completed"
VERDICT_ROLLED_BACK = "rolled-back"
VERDICT_UNRESOLVED = "unresolved"
VERDICT_POSTCOPY_PAUSED = "postcopy-paused"
VERDICT_LOST = "lost"
VERDICT_SPLIT = "split"
VERDICTS = (VERDICT_COMPLETED, VERDICT_ROLLED_BACK, VERDICT_UNRESOLVED,
            VERDICT_POSTCOPY_PAUSED, VERDICT_LOST, VERDICT_SPLIT)

# -- kinds of events (MigrationEvent.kind); queued, completed, failed as above --------

STEP = "step"
TRANSFER_STARTED = "transfer_started"
PROGRESS = "progress"
DOWNTIME_CHANGED = "downtime_changed"
TIMEOUT_ACTION = "timeout_action"
ABORT_REQUESTED = "abort_requested"
FORCE_COMPLETE_REQUESTED = "force_complete_requested"
MEASURED = "measured"
PLANNED = "planned"
ESCALATED = "escalated"
ROLLED_BACK = "rolled_back"
#: The settle function's decision once a migration's job ended (or failed).
SETTLED = "settled"
#: Both hosts ran the guest: the detector paused a copy; loud on purpose.
SPLIT_DETECTED = "split_detected"
#: An operator settled a split guest by hand and migplane checked that at most
#: one host holds a copy: it may migrate again.
SPLIT_RELEASED = "split_released"
#: A job that armed post-copy (so without the paused handover) switches over
#: through post-copy, once what is left fits the downtime allowed.
SWITCH_OVER = "switch_over"
#: The guest switched to post-copy (its exposure starts), and when it ended.
POST_COPY_STARTED = "post_copy_started"
POST_COPY_ENDED = "post_copy_ended"
#: The post-copy stream broke or stalled and the driver recovers it; recovered.
POST_COPY_RECOVERING = "post_copy_recovering"
POST_COPY_RECOVERED = "post_copy_recovered"


@dataclasses.dataclass(frozen=True)
class MigrationEvent:
    kind: str
    migration_id: str
    instance: str
    elapsed: float
    step: Optional[str] = None
    message: Optional[str] = None
    progress: Optional[driver.JobProgress] = None

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.progress is not None:
            data["progress"] = self.progress.to_dict()
        return data


class Listeners:
    """The subscribers of one migration's or evacuation's events.

    Listeners are plain callables, called synchronously in the emitting
    thread; one that raises is logged and never breaks what emits. An
    ``async def`` listener is refused: called from a plain thread it would
    return a coroutine that never runs.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._listeners: List[Callable[[Any], object]] = []

    def subscribe(self, listener: Callable[[Any], object]) -> None:
        if not callable(listener):
            raise TypeError("listener %r is not callable" % (listener,))
        method = type(listener).__dict__.get("__call__")
        if inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(method):
            raise TypeError(
                "listener %r is a coroutine function: %s events are delivered "
                "synchronously from its thread, so it would never run; pass a plain "
                "callable (e.g. one that hands the event to your loop with "
                "asyncio.run_coroutine_threadsafe)" % (listener, self._what))
        self._listeners.append(listener)

    def emit(self, event: object) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                LOG.exception("%s event listener %r failed", self._what.capitalize(),
                              listener)
