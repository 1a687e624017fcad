"""Settling the migrations this agent coordinates that are not settled yet.

Two kinds of record need it: those that were in flight when the agent
stopped (the hypervisor went on without it: the job may still run, may have
moved the guest, or may have failed), and those whose flow ended
``unresolved`` because a host could not be asked. For each, the agent asks
both hosts again and again (the local driver, the destination's agent) and
lets the one settle function (:func:`migplane.core.settle.settle`, carried
out by :class:`migplane.core.settling.Settler`) decide: finish, roll back,
wait, fence or keep paused. A host that cannot be asked keeps the guest
paused where it is; the record is finished, or rolled back, as soon as both
hosts answer, and stays ``unresolved`` after ``MAX_WATCH_S``.

:class:`Reconciler` runs one thread per record, so the agent serves meanwhile.
"""

import logging
import threading
import time
import urllib.parse

from migplane.agent import whereplane
from migplane.agent import wire
from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import migrate_data as md
from migplane.core import settling

LOG = logging.getLogger(__name__)

#: Steps after which libvirt may have started moving the guest.
TRANSFER_STEPS = ("live_migration", "settle", "post_live_migration_at_destination",
                  "post_live_migration_at_source")


class Unreachable:
    """The destination while its agent cannot be reached: every step says so, but
    where the guest runs may still be asked over the migration plane (``where``)."""

    def __init__(self, hostname, reason, where=None):
        self.hostname = hostname
        self.reason = reason
        self.where = where

    def get_instance_info(self, instance):
        if self.where is None:
            raise exception.HypervisorUnavailable(host=self.hostname, reason=self.reason)
        return wire.load_info(self.where.get(
            "/v1/instances/%s" % urllib.parse.quote(instance, safe="")))

    def __getattr__(self, name):
        def unreachable(*args, **kwargs):
            raise exception.HypervisorUnavailable(host=self.hostname, reason=self.reason)
        unreachable.__name__ = name
        return unreachable


class Reconciler:
    """Settles the records of ``agent`` (a :class:`service.Agent`) that need it."""

    #: Seconds between two looks at a migration still in flight.
    POLL_S = 1.0
    #: Seconds between two attempts when a host cannot be asked.
    RETRY_S = 5.0
    #: Seconds a migration is settled at most before it is left unresolved.
    MAX_WATCH_S = 3600.0
    #: Seconds past that for a job aborted at the deadline to end.
    ABORT_GRACE_S = 120.0
    #: Tries, RETRY_S apart, to release the destination slot of a migration that
    #: settled while the destination's agent did not answer (about a lease).
    RELEASE_TRIES = 24

    def __init__(self, agent, sleep=None, clock=time.monotonic, max_watch_s=None):
        self.agent = agent
        # the agent's flow sleep, looked up when used: a simulated driver's clock
        self._sleep = sleep or (lambda seconds: agent.sleep(seconds))
        self._clock = clock
        self.max_watch_s = self.MAX_WATCH_S if max_watch_s is None else max_watch_s
        self.threads = []
        self._stopping = threading.Event()

    def stop(self):
        """The agent stops: leave every record as it is (the next start settles it)."""
        self._stopping.set()

    def start(self):
        """One thread per record in flight when the agent stopped, or unresolved."""
        for record in self.agent.registry.in_flight():
            LOG.warning("Migration %s of %s was %s (step %s) when this agent stopped; "
                        "asking the hypervisors how it ended", record.id, record.instance,
                        record.status, record.step)
            record.note("reconciling", message="agent restarted; asking the hypervisors "
                        "where %s is" % record.instance)
            self._thread(record)
        for record in self.agent.registry.unsettled():
            self.settle_later(record)
        return self.threads

    def settle_later(self, record):
        """Go on settling ``record``, whose flow ended unresolved, in a thread."""
        LOG.warning("Migration %s of %s is unresolved; settling it as soon as both hosts "
                    "answer", record.id, record.instance)
        record.note("reconciling", message="unresolved: asking both hosts until they "
                    "answer")
        return self._thread(record)

    def _thread(self, record):
        thread = threading.Thread(target=self.run, args=(record,), daemon=True,
                                  name="reconcile-%s" % record.id)
        thread.start()
        self.threads.append(thread)
        return thread

    def join(self, timeout=None):
        for thread in list(self.threads):
            thread.join(timeout)

    # -- one record ----------------------------------------------------------------

    def run(self, record):
        try:
            self._settle(record)
        except Exception as err:  # keep the agent up; say what is known
            LOG.exception("Reconciling migration %s failed", record.id)
            record.note("failed", message="reconciling failed: %s" % err)
            record.finish(None, "reconciling failed: %s" % err,
                          verdict=events.VERDICT_UNRESOLVED)

    def destination(self, record, take_slot=True):
        """A driver for the destination's agent, or :class:`Unreachable`; with
        ``take_slot`` it holds the migration's slot there (to serve its steps)."""
        try:
            remote = self.agent.peer({"url": record.destination_url,
                                      "host": record.destination})
        except exception.MigplaneError as err:
            LOG.warning("Migration %s: destination agent %s not reachable (%s); retrying",
                        record.id, record.destination_url, err)
            inbound = self._data(record).target_connect_addr
            return Unreachable(record.destination, "its agent %s is not reachable: %s"
                               % (record.destination_url, err),
                               where=whereplane.client(self.agent, record.destination,
                                                       inbound))
        if hasattr(remote, "migration_id"):  # steps name the migration they serve
            remote.migration_id = record.id
        if not take_slot:
            return remote
        # the destination serves steps of a migration whose slot its source holds;
        # the lease of the agent that died may have lapsed (idempotent per id)
        _safely(remote.client.take_slot, record.id, self.agent.hostname, record.instance)
        return remote

    def _data(self, record):
        if record.migrate_data:
            try:
                return md.MigrateData.from_primitive(record.migrate_data)
            except exception.MigplaneError as err:
                LOG.warning("Migration %s: stored migrate data unusable: %s", record.id,
                            err)
        return md.MigrateData(dest_hostname=record.destination,
                              block_migration=record.block_migration)

    def _settle(self, record):
        restarted = record.active
        progress = record.progress or {}
        postcopy = bool(progress.get("postcopy"))
        handover = bool(progress.get("handover")) and record.step not in (
            "post_live_migration_at_destination", "post_live_migration_at_source")
        settler = settling.Settler(
            record.instance, self.agent.driver,
            Unreachable(record.destination, "not asked yet"), self._data(record),
            self._clock, self._sleep, poll_interval=self.POLL_S,
            label="Migration %s: " % record.id,
            enter=lambda step: record.note("step", message=step, step=step),
            split=lambda decision: self._split(record, settler, decision),
            block_migration=record.block_migration)
        deadline = self._clock() + self.max_watch_s
        noted = None
        while not self._stopping.is_set():
            if isinstance(settler.destination, Unreachable):
                settler.destination = self.destination(record)
            past = self._clock() > deadline  # once per round: abort, then settle
            job = settler.job()
            if settler.progress is not None:
                record.progress = settler.progress.to_dict()
                postcopy = postcopy or settler.progress.postcopy
            aborted = False
            if job == driver_mod.JOB_RUNNING and not postcopy and (
                    record.abort_requested or past):
                aborted = True
                record.abort_requested = True
                _safely(self.agent.driver.abort_job, record.instance)
                self._sleep(self.POLL_S)
                job = settler.job()
            decision = settler.run(job, 0, postcopy=postcopy, handover=handover,
                                   read_job=False)
            if decision.final or (past and (not aborted or self._clock() > deadline
                                            + self.ABORT_GRACE_S)):
                return self._finish(record, settler, decision, restarted)
            if decision.reason != noted:
                noted = decision.reason
                record.note("watching", message=decision.reason)
            if not isinstance(settler.destination, Unreachable):
                _safely(settler.destination.client.renew_slot, record.id)
            record.save(force=False)
            running = job in (driver_mod.JOB_RUNNING, driver_mod.JOB_POSTCOPY_RECOVERING)
            self._sleep(self.POLL_S if running else self.RETRY_S)

    def _split(self, record, settler, decision):
        message = ("GUEST RUNNING TWICE: %s; further migrations of %s are refused"
                   % (settler.where(decision), record.instance))
        LOG.critical("Migration %s: %s", record.id, message)
        record.note(events.SPLIT_DETECTED, message=message)

    def _release_slot(self, record, settler):
        """Release the destination's slot of a settled migration: now, or, when
        its agent did not answer as it settled (the guest was asked over the
        migration plane), as soon as it answers again, not only once the lease
        lapses; nothing else frees that slot."""
        if not isinstance(settler.destination, Unreachable):
            _safely(settler.destination.client.release_slot, record.id)
            return

        def later():
            for _ in range(self.RELEASE_TRIES):
                if self._stopping.is_set():
                    return
                self._sleep(self.RETRY_S)
                remote = self.destination(record, take_slot=False)
                if isinstance(remote, Unreachable):
                    continue
                try:
                    remote.client.release_slot(record.id)
                except Exception as err:  # the next try, or the lease lapses
                    LOG.debug("Destination slot of migration %s still held: %s",
                              record.id, err)
                    continue
                LOG.info("Released the destination slot of migration %s", record.id)
                return

        thread = threading.Thread(target=later, daemon=True,
                                  name="slot-release-%s" % record.id)
        thread.start()
        self.threads.append(thread)

    def _finish(self, record, settler, decision, restarted):
        where = {"source": record.source,
                 "destination": record.destination}.get(decision.running_on)
        self._release_slot(record, settler)
        verdict = decision.verdict
        hosts = settler.where(decision)
        LOG.warning("Migration %s of %s settled %s: %s", record.id, record.instance,
                    verdict, hosts)
        record.note(events.SETTLED, message="%s: %s" % (verdict, decision.reason))
        why = ("after an agent restart: " if restarted else "settled later: ")
        if verdict == events.VERDICT_COMPLETED:
            record.note(flow_mod.COMPLETED, message="running on %s (%s)"
                        % (record.destination, decision.reason))
            record.error = "; ".join(settler.errors) or None
            record.finish(None, None, running_on=where, status=flow_mod.COMPLETED,
                          verdict=verdict, verdict_reason=hosts)
            return
        if verdict == events.VERDICT_ROLLED_BACK:
            record.note("rolled_back", message="guest kept on %s" % record.source)
            status = flow_mod.ABORTED if record.abort_requested else flow_mod.FAILED
            record.note(status, message=decision.reason)
            error = (exception.MigrationAborted(instance=record.instance,
                                                reason=decision.reason)
                     if record.abort_requested else
                     "%sthe source agent %s mid-migration; %s" % (
                         why, "restarted" if restarted else "could not settle it",
                         decision.reason))
            record.finish(None, error, running_on=where, status=status, verdict=verdict,
                          verdict_reason=hosts)
            return
        if not restarted or verdict != events.VERDICT_UNRESOLVED or not isinstance(
                settler.destination, Unreachable):
            reason = hosts
        else:
            reason = ("%s; the destination agent %s stayed unreachable for %d s; what the "
                      "migration left on %s was not cleaned up"
                      % (hosts, record.destination_url, self.max_watch_s,
                         record.destination))
        if decision.hands_off:
            reason += ". Do not start %s by hand on either host." % record.instance
        err = exception.MigrationNotSettled(instance=record.instance, verdict=verdict,
                                            reason=why + reason)
        record.note(flow_mod.FAILED, message=str(err))
        record.finish(None, err, running_on=where, status=flow_mod.FAILED,
                      verdict=verdict, verdict_reason=hosts)


def _safely(method, *args):
    try:
        method(*args)
    except Exception as err:
        LOG.warning("%s failed while reconciling: %s", getattr(method, "__name__", method),
                    err)
