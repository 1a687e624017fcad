"""Progress events a caller can subscribe to while a migration runs."""

import dataclasses
from typing import Optional

from migplane.core import driver

QUEUED = "queued"
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
COMPLETED = "completed"
FAILED = "failed"
ROLLED_BACK = "rolled_back"


@dataclasses.dataclass(frozen=True)
class MigrationEvent:
    kind: str
    migration_id: str
    instance: str
    elapsed: float
    step: Optional[str] = None
    message: Optional[str] = None
    progress: Optional[driver.JobProgress] = None

    def to_dict(self):
        data = dataclasses.asdict(self)
        if self.progress is not None:
            data["progress"] = self.progress.to_dict()
        return data
