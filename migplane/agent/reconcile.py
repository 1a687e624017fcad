"""Finishing, after a restart, the migrations this agent was coordinating.

When the source agent dies mid-migration the hypervisor goes on without it:
the job may still run, may have moved the guest, or may have failed. On
start the agent asks the hypervisors (the local driver and the destination's
agent) where the guest is, and :func:`decide` turns that into one action:

=================================================  =========================
what the hypervisors say                            action
=================================================  =========================
the job still runs, or the guest is in flight       ``watch`` (ask again)
guest runs on the destination, not on the source    ``complete`` (post steps)
guest runs on the source, destination not running   ``rollback`` (destination)
runs on both, or on neither                         ``unknown`` (touch nothing)
=================================================  =========================

:func:`decide` is a pure function of plain data; :class:`Reconciler` does
the I/O around it, in one thread per record so the agent serves meanwhile.
"""

import dataclasses
import logging
import threading
import time

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import migrate_data as md

LOG = logging.getLogger(__name__)

WATCH = "watch"
COMPLETE = "complete"
ROLLBACK = "rollback"
UNKNOWN = "unknown"

#: Guest states in which it runs (or is paused mid-migration) on a host.
ALIVE = ("running", "paused", "incoming")
#: Steps after which libvirt may have started moving the guest.
TRANSFER_STEPS = ("live_migration", "post_live_migration_at_destination",
                  "post_live_migration_at_source")


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the hypervisors say of one guest; a state is None when it is absent."""

    step: str = None
    source_state: str = None
    destination_state: str = None
    #: The source's job state (``driver.JOB_*``), None when the driver cannot tell.
    job_state: str = None
    abort_requested: bool = False


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str
    reason: str


def decide(obs):
    """The :class:`Decision` for an :class:`Observation` (pure)."""
    src, dst, job = obs.source_state, obs.destination_state, obs.job_state
    src_alive = src in ALIVE
    if job == driver_mod.JOB_RUNNING:
        if obs.abort_requested and dst != "running" and src_alive:
            return Decision(ROLLBACK, "abort requested while the job still runs")
        return Decision(WATCH, "the hypervisor's migration job still runs")
    if dst == "running" and src == "running":
        return Decision(UNKNOWN, "the guest runs on both hosts; touching neither")
    if dst == "running":
        if src == "paused" and job is None:
            return Decision(WATCH, "the guest runs on the destination and is paused on "
                                   "the source: post-copy still in flight")
        return Decision(COMPLETE, "the guest runs on the destination (source: %s)"
                        % (src or "gone"))
    if not src_alive:
        return Decision(UNKNOWN, "the guest runs on neither host (source: %s, "
                                 "destination: %s)" % (src or "gone", dst or "gone"))
    if obs.abort_requested:
        return Decision(ROLLBACK, "abort requested")
    if (dst in ("paused", "incoming") and job is None
            and obs.step in TRANSFER_STEPS):
        return Decision(WATCH, "the guest is still arriving on the destination")
    if job in driver_mod.JOB_FINISHED:
        return Decision(ROLLBACK, "the job ended %s and the guest runs on the source"
                        % job)
    return Decision(ROLLBACK, "the guest runs on the source (destination: %s)"
                    % (dst or "gone"))


class Reconciler:
    """Settles the in-flight records of ``agent`` (a :class:`service.Agent`)."""

    #: Seconds between two looks at a migration still in flight.
    POLL_S = 1.0
    #: Seconds between two attempts to reach an unreachable destination agent.
    RETRY_S = 5.0

    #: Seconds a migration is watched (or its destination agent awaited) at most.
    MAX_WATCH_S = 3600.0

    def __init__(self, agent, sleep=None, clock=time.monotonic, max_watch_s=None):
        self.agent = agent
        # the agent's flow sleep, looked up when used: a simulated driver's clock
        self._sleep = sleep or (lambda seconds: agent.sleep(seconds))
        self._clock = clock
        self.max_watch_s = self.MAX_WATCH_S if max_watch_s is None else max_watch_s
        self.threads = []

    def start(self):
        """One thread per record that was in flight when the agent stopped."""
        for record in self.agent.registry.in_flight():
            LOG.warning("Migration %s of %s was %s (step %s) when this agent stopped; "
                        "asking the hypervisors how it ended", record.id, record.instance,
                        record.status, record.step)
            record.note("reconciling", message="agent restarted; asking the hypervisors "
                        "where %s is" % record.instance)
            thread = threading.Thread(target=self.run, args=(record,), daemon=True,
                                      name="reconcile-%s" % record.id)
            thread.start()
            self.threads.append(thread)
        return self.threads

    def join(self, timeout=None):
        for thread in self.threads:
            thread.join(timeout)

    # -- one record ----------------------------------------------------------------

    def run(self, record):
        try:
            self._settle(record)
        except Exception as err:  # keep the agent up; say what is known
            LOG.exception("Reconciling migration %s failed", record.id)
            record.note("failed", message="reconciling failed: %s" % err)
            record.finish(None, "reconciling after a restart failed: %s" % err)

    def _destination(self, record):
        """A driver for the destination's agent; None when it stays unreachable."""
        deadline = self._clock() + self.max_watch_s
        while True:
            try:
                remote = self.agent.peer({"url": record.destination_url,
                                          "host": record.destination})
                if hasattr(remote, "migration_id"):  # steps name the migration they serve
                    remote.migration_id = record.id
                return remote
            except exception.MigplaneError as err:
                LOG.warning("Migration %s: destination agent %s not reachable yet (%s); "
                            "retrying", record.id, record.destination_url, err)
                if self._clock() > deadline:
                    return None
            self._sleep(self.RETRY_S)

    def _data(self, record):
        if record.migrate_data:
            try:
                return md.MigrateData.from_primitive(record.migrate_data)
            except exception.MigplaneError as err:
                LOG.warning("Migration %s: stored migrate data unusable: %s", record.id,
                            err)
        return md.MigrateData(dest_hostname=record.destination,
                              block_migration=record.block_migration)

    def observe(self, record, destination):
        source = self.agent.driver
        return Observation(step=record.step,
                           source_state=_state(source, record.instance),
                           destination_state=_state(destination, record.instance),
                           job_state=self._job(record),
                           abort_requested=record.abort_requested)

    def _job(self, record):
        try:
            progress = self.agent.driver.get_job_progress(record.instance)
        except exception.MigplaneError:
            return None  # e.g. the driver lost its job handle with the old process
        record.progress = progress.to_dict()
        return progress.state

    def _settle(self, record):
        destination = self._destination(record)
        if destination is None:
            return self._alone(record)
        # the destination serves steps of a migration whose slot its source holds;
        # the lease of the agent that died may have lapsed (idempotent per id)
        _safely(destination.client.take_slot, record.id, self.agent.hostname,
                record.instance)
        deadline = self._clock() + self.max_watch_s
        watching = False
        renewed = 0.0
        while True:
            try:
                decision = decide(self.observe(record, destination))
            except exception.MigplaneError as err:  # e.g. a daemon restarting
                if self._clock() > deadline:
                    decision = Decision(UNKNOWN, "cannot ask the hypervisors: %s" % err)
                    break
                LOG.warning("Migration %s: cannot observe it yet: %s", record.id, err)
                self._sleep(self.RETRY_S)
                continue
            if decision.action != WATCH:
                break
            if not watching:
                watching = True
                record.note("watching", message=decision.reason)
            if self._clock() > deadline and not record.abort_requested:
                record.note("watching", message="still in flight after %d s; aborting"
                            % self.max_watch_s)
                record.abort_requested = True
                _safely(self.agent.driver.abort_job, record.instance)
            if self._clock() - renewed > 10:
                renewed = self._clock()
                _safely(destination.client.renew_slot, record.id)
            record.save(force=False)
            self._sleep(self.POLL_S)
        LOG.warning("Migration %s of %s: %s: %s", record.id, record.instance,
                    decision.action, decision.reason)
        data = self._data(record)
        if decision.action == COMPLETE:
            self._complete(record, destination, data, decision)
        elif decision.action == ROLLBACK:
            self._rollback(record, destination, data, decision)
        else:
            _safely(destination.client.release_slot, record.id)
            record.note("failed", message=decision.reason)
            record.finish(None, "after an agent restart: %s" % decision.reason)

    def _alone(self, record):
        """The destination's agent stayed unreachable: settle what this host knows."""
        unreachable = "the destination agent %s stayed unreachable for %d s" % (
            record.destination_url, self.max_watch_s)
        if self._job(record) == driver_mod.JOB_RUNNING:
            _safely(self.agent.driver.abort_job, record.instance)
            self._sleep(self.POLL_S)
        try:
            here = _state(self.agent.driver, record.instance)
        except exception.MigplaneError as err:
            here = None
            LOG.warning("Migration %s: cannot ask the local hypervisor: %s", record.id, err)
        if here == "running":
            reason = ("%s; the guest runs on %s; what the migration left on %s was not "
                      "cleaned up" % (unreachable, record.source, record.destination))
            record.note("failed", message=reason)
            record.finish(None, "after an agent restart: %s" % reason,
                          running_on=record.source)
        else:
            reason = "%s and the guest is not running here (%s)" % (unreachable,
                                                                   here or "gone")
            record.note("failed", message=reason)
            record.finish(None, "after an agent restart: %s" % reason)

    def _complete(self, record, destination, data, decision):
        errors = []
        for step, method in (
                ("post_live_migration_at_destination",
                 destination.post_live_migration_at_destination),
                ("post_live_migration_at_source",
                 self.agent.driver.post_live_migration_at_source)):
            record.note("step", message=step, step=step)
            try:
                method(record.instance, data)
            except Exception as err:
                LOG.warning("Migration %s: %s failed: %s", record.id, step, err)
                errors.append("%s: %s" % (step, err))
        _safely(destination.client.release_slot, record.id)  # before the record ends
        record.note(flow_mod.COMPLETED, message="running on %s (%s)" % (
            record.destination, decision.reason))
        record.error = "; ".join(errors) or None
        record.finish(None, None, running_on=record.destination, status=flow_mod.COMPLETED)

    def _rollback(self, record, destination, data, decision):
        record.note("step", message="rollback", step="rollback")
        if record.step in TRANSFER_STEPS or record.step == "rollback":
            _safely(self.agent.driver.rollback_live_migration_at_source,
                    record.instance, data)
        _safely(destination.rollback_live_migration_at_destination, record.instance, data)
        _safely(destination.client.release_slot, record.id)  # before the record ends
        record.note("rolled_back", message="guest kept on %s" % record.source)
        status = flow_mod.ABORTED if record.abort_requested else flow_mod.FAILED
        record.note(status, message=decision.reason)
        record.finish(None, exception.MigrationAborted(instance=record.instance,
                                                       reason=decision.reason)
                      if record.abort_requested else
                      "the source agent restarted mid-migration; %s" % decision.reason,
                      running_on=record.source)


def _state(driver, instance):
    try:
        return driver.get_instance_info(instance).state
    except exception.InstanceNotFound:
        return None


def _safely(method, *args):
    try:
        method(*args)
    except Exception as err:
        LOG.warning("%s failed while reconciling: %s", getattr(method, "__name__", method),
                    err)
