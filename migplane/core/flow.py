"""The live-migration flow: the steps across two drivers, monitoring, rollback.

The flow owns what must not differ between drivers: the order of the steps,
the JSON crossing of every :class:`MigrateData` (source and destination may be
two processes), the URI policy, the per-host concurrency limit, the downtime
steps and the completion timeout (Nova's algorithm), the progress events, and
the rule that a failure leaves the guest running on exactly one host with the
other host clean.
"""

import dataclasses
import json
import logging
import threading
import time
import uuid
from typing import Optional

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import trust
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
GiB = 1024 ** 3

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

    def to_dict(self):
        return {
            "migration_id": self.migration_id, "instance": self.instance,
            "source": self.source, "destination": self.destination,
            "status": self.status, "duration_s": self.duration_s,
            "uris": self.uris.to_dict() if self.uris else None,
            "progress": self.progress.to_dict() if self.progress else None,
            "timeout_action": self.timeout_action, "error": self.error,
            "running_on": self.running_on,
        }


def downtime_steps(settings, data_gib):
    """Nova's schedule of ``(seconds after start, max downtime ms)`` pairs."""
    delay = int(settings.downtime_delay * data_gib)
    base = settings.downtime_ms / settings.downtime_steps
    offset = (settings.downtime_ms - base) / settings.downtime_steps
    for i in range(settings.downtime_steps + 1):
        yield int(delay * i), int(base + offset * i)


def data_gib(info, block_migration=False):
    """GiB counted for the timeouts, as in Nova: RAM, at least 2, plus the local
    disk, at least 2, when it is copied too (block migration)."""
    gib = max(2.0, info.memory_bytes / GiB)
    if block_migration and info.disk_bytes:
        gib += max(2.0, info.disk_bytes / GiB)
    return gib


def cross(migrate_data, step):
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
    :param clock, sleep: injectable time, so the fake driver can simulate it.
    """

    #: Seconds after which an abort the job has not obeyed is sent again.
    ABORT_RETRY_S = 5.0

    def __init__(self, instance, source, destination, settings, block_migration=False,
                 limiter=None, migration_id=None, clock=time.monotonic, sleep=time.sleep):
        self.instance = instance
        self.source = source
        self.destination = destination
        self.settings = settings
        self.block_migration = block_migration
        self.limiter = limiter
        self.id = migration_id or uuid.uuid4().hex[:12]
        self._clock = clock
        self._sleep = sleep
        self._listeners = []
        self._abort = threading.Event()
        self._force = threading.Event()
        self._start = None
        self.step = None
        self.status = "pending"
        self.uris = None
        self.progress = None
        self.timeout_action = None
        self.downtime_ms = None
        self._data_gib = None

    # -- control from other threads -----------------------------------------

    def subscribe(self, listener):
        """Call ``listener(MigrationEvent)`` for every event; errors in it are logged."""
        self._listeners.append(listener)

    def abort(self):
        """Ask the running migration to stop; the guest stays on the source."""
        self._abort.set()
        self._emit(events.ABORT_REQUESTED, message="abort requested")

    def force_complete(self):
        """Ask the running migration to converge now (post-copy or pause)."""
        self._force.set()
        self._emit(events.FORCE_COMPLETE_REQUESTED, message="force-complete requested")

    # -- the flow ------------------------------------------------------------

    def _elapsed(self):
        return 0.0 if self._start is None else self._clock() - self._start

    def _emit(self, kind, message=None, progress=None):
        event = events.MigrationEvent(kind=kind, migration_id=self.id,
                                      instance=self.instance, elapsed=self._elapsed(),
                                      step=self.step, message=message, progress=progress)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener never breaks a migration
                LOG.exception("Migration event listener %r failed", listener)

    def _enter(self, step):
        self.step = step
        self._emit(events.STEP, message=step)
        LOG.info("Migration %s of %s: %s", self.id, self.instance, step)

    def run(self):
        """Run the migration to its end; return a :class:`MigrationResult`.

        :raises MigplaneError: after rolling back, with ``.result`` attached.
        """
        self._start = self._clock()
        self.status = "queued"
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

    def _run(self):
        self.status = "running"
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
            caps = self.source.describe()
            self.uris = uri_mod.resolve(self.settings, data, caps.capabilities,
                                        dest_hostname=self.destination.hostname,
                                        block_migration=self.block_migration,
                                        driver=caps.name)
            trust.enforce(self.instance, self.uris, self.settings,
                          destination=self.destination.hostname,
                          authenticated=getattr(self.destination, "identity", None))
            info = self.source.get_instance_info(self.instance)
            if self._abort.is_set():
                raise exception.MigrationAborted(instance=self.instance,
                                                 reason="requested before the transfer")
            self._enter("live_migration")
            transferring = True
            self.source.live_migration(self.instance, data, self.uris, self.settings)
            self._emit(events.TRANSFER_STARTED, message="data to %s (%s plane)" % (
                self.uris.data_uri or self.uris.control_uri, self.uris.plane))
            self._monitor(info, caps.capabilities)
        except Exception as err:
            failed_step = self.step  # before _rollback() moves on to "rollback"
            if transferring and self._finish_job() == driver_mod.JOB_COMPLETED:
                LOG.warning("Migration %s failed while monitoring (%s) but the job "
                            "completed; finishing it", self.id, err)
            else:
                self._rollback(data, prepared, transferring)
                raise self._failed(err, failed_step)
        return self._post(data)

    def _monitor(self, info, capabilities):
        gib = self._data_gib = data_gib(info, self.block_migration)
        steps = list(downtime_steps(self.settings, gib))
        timeout = self.settings.completion_timeout * gib
        start = self._clock()
        abort_at = None
        forced = False
        while True:
            progress = self.source.get_job_progress(self.instance)
            self.progress = progress
            self._emit(events.PROGRESS, progress=progress)
            if progress.state == driver_mod.JOB_COMPLETED:
                return progress
            if progress.state in (driver_mod.JOB_FAILED, driver_mod.JOB_CANCELLED):
                raise self._job_error(progress)
            elapsed = self._clock() - start
            while steps and elapsed >= steps[0][0]:
                _, downtime = steps.pop(0)
                self.source.set_max_downtime(self.instance, downtime)
                self.downtime_ms = downtime
                self._emit(events.DOWNTIME_CHANGED, message="max downtime %d ms" % downtime)
            if (self.settings.completion_timeout and elapsed > timeout
                    and self.timeout_action is None):
                self.timeout_action = self.settings.timeout_action
                self._emit(events.TIMEOUT_ACTION, message="completion timeout of %.0f s "
                           "passed: %s" % (timeout, self.timeout_action))
                if self.timeout_action != "abort":
                    self._force.set()
            if self._abort.is_set() or self.timeout_action == "abort":
                # Resent while the job runs on: a hypervisor may accept an abort
                # that arrives before its transfer has really started and drop it
                # (libvirt's migrate_cancel before QEMU's migrate).
                now = self._clock()
                if abort_at is None or now - abort_at >= self.ABORT_RETRY_S:
                    if abort_at is not None:
                        LOG.info("Migration %s still runs after abort; aborting again",
                                 self.id)
                    abort_at = now
                    self._abort_job(progress)
            if self._force.is_set() and not forced:
                forced = True
                post_copy = self.settings.permit_post_copy and capabilities.post_copy
                self.source.force_complete(self.instance, post_copy=post_copy)
            self._sleep(self.settings.poll_interval)

    def _abort_job(self, progress):
        """Cancel the job, unless it runs post-copy: then the guest already runs on
        the destination and only finishing the job keeps it whole on one host."""
        if progress.postcopy:
            LOG.warning("Migration %s of %s is in post-copy and cannot be aborted; "
                        "letting it complete", self.id, self.instance)
            return
        self.source.abort_job(self.instance)

    def _job_error(self, progress):
        if self.timeout_action == "abort":
            gib = self._data_gib
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

    def _finish_job(self):
        """After an unexpected error mid-transfer: stop the job, return its end state."""
        try:
            progress = self.source.get_job_progress(self.instance)
            if not progress.finished:
                self._abort_job(progress)
                for _ in range(600):
                    progress = self.source.get_job_progress(self.instance)
                    if progress.finished:
                        break
                    self._sleep(self.settings.poll_interval)
            self.progress = progress
            return progress.state
        except Exception:
            LOG.exception("Could not learn how migration %s ended", self.id)
            return None

    def _rollback(self, data, prepared, transferring):
        self._enter("rollback")
        if data is None:
            data = md.MigrateData(dest_hostname=self.destination.hostname,
                                  block_migration=self.block_migration)
        if transferring:
            self._call_safely(self.source.rollback_live_migration_at_source, data)
        if prepared:
            self._call_safely(self.destination.rollback_live_migration_at_destination, data)
        self._emit(events.ROLLED_BACK, message="guest kept on %s" % self.source.hostname)

    def _call_safely(self, method, data):
        try:
            method(self.instance, data)
        except exception.MigplaneError as err:  # expected, e.g. a daemon is down
            LOG.warning("%s of %s failed during rollback: %s", method.__name__,
                        self.instance, err)
        except Exception:
            LOG.exception("%s of %s failed during rollback", method.__name__, self.instance)

    def _failed(self, err, step=None):
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
        err.result = self._result(status, str(err), running_on=self.source.hostname)
        self._emit(events.FAILED, message=str(err))
        return err

    def _post(self, data):
        errors = []
        self._enter("post_live_migration_at_destination")
        try:
            self.destination.post_live_migration_at_destination(self.instance, data)
        except Exception as err:
            LOG.exception("post_live_migration_at_destination failed")
            errors.append("post_live_migration_at_destination: %s" % err)
        self._enter("post_live_migration_at_source")
        try:
            self.source.post_live_migration_at_source(self.instance, data)
        except Exception as err:
            LOG.exception("post_live_migration_at_source failed")
            errors.append("post_live_migration_at_source: %s" % err)
        self.status = COMPLETED
        result = self._result(COMPLETED, "; ".join(errors) or None,
                              running_on=self.destination.hostname)
        self._emit(events.COMPLETED, message="running on %s" % self.destination.hostname,
                   progress=self.progress)
        return result

    def _result(self, status, error, running_on):
        return MigrationResult(
            migration_id=self.id, instance=self.instance, source=self.source.hostname,
            destination=self.destination.hostname, status=status,
            duration_s=round(self._elapsed(), 3), uris=self.uris, progress=self.progress,
            timeout_action=self.timeout_action, error=error, running_on=running_on)
