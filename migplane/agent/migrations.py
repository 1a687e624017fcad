"""Migrations coordinated by this agent (as their source), each in a thread.

A record keeps what ``migplane show`` needs long after the flow ended: the
events, the latest progress, the URIs, the result, and how many bytes each
network plane carried while the data moved. Records are written to a
:class:`~migplane.agent.store.RecordStore` at each step, so an agent that
restarts finds them (and :mod:`migplane.agent.reconcile` finishes the ones
that were in flight). Starting a migration claims its guest first: one
active migration per guest on this host, any other start refused (409).
"""

import logging
import threading
import time
import uuid

import jsonschema

from migplane.agent import hostfacts
from migplane.agent import records as records_mod
from migplane.agent import store as store_mod
from migplane.core import events as events_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
MAX_EVENTS = 1000
ACTIVE = events_mod.ACTIVE
#: Progress is written to disk at most this often (steps are written at once).
PROGRESS_WRITE_S = 1.0


_OBJECT = {"type": ["object", "null"]}
_TEXT = {"type": ["string", "null"]}
#: What a stored record must be to be loaded (see :func:`check_stored`).
STORED = {
    "type": "object",
    "required": ["id", "instance", "source", "destination", "destination_url",
                 "block_migration", "created", "status"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "instance": {"type": "string", "minLength": 1},
        "source": {"type": "string"}, "destination": {"type": "string"},
        "destination_url": {"type": "string"},
        "block_migration": {"type": "boolean"},
        "options": _OBJECT, "created": {"type": "number"},
        "finished": {"type": ["number", "null"]}, "status": {"type": "string"},
        "step": _TEXT, "error": _TEXT, "progress": _OBJECT, "uris": _OBJECT,
        "result": _OBJECT, "traffic": _OBJECT, "migrate_data": _OBJECT,
        "last_event": {"type": ["integer", "null"], "minimum": 0},
        "events": {"type": ["array", "null"],
                   "items": {"type": "object", "required": ["seq", "kind"],
                             "properties": {"seq": {"type": "integer"},
                                            "kind": {"type": "string"}}}},
        "counting": {"type": ["object", "null"],
                     "properties": {"before": _OBJECT, "planes": _OBJECT}},
    },
}
_STORED_VALIDATOR = jsonschema.Draft202012Validator(STORED)


def check_stored(data):
    """Raise ValueError naming the first thing wrong with stored record ``data``."""
    error = jsonschema.exceptions.best_match(_STORED_VALIDATOR.iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "<record>"
        raise ValueError("%s: %s" % (where, error.message[:200]))


class MigrationRecord:
    """What is known of one migration; updated by the flow's events."""

    def __init__(self, migration_id, instance, source, destination, destination_url,
                 block_migration, options, facts=hostfacts):
        self.id = migration_id
        self.instance = instance
        self.source = source
        self.destination = destination
        self.destination_url = destination_url
        self.block_migration = block_migration
        self.options = dict(options)
        self.created = time.time()
        self.finished = None
        self.status = events_mod.PENDING
        self.step = None
        self.progress = None
        self.uris = None
        self.result = None
        self.error = None
        self.traffic = None
        self.events = records_mod.EventLog(MAX_EVENTS)
        self.flow = None
        self.abort_requested = False
        self._lock = threading.Lock()
        self._facts = facts
        self._counters = None
        self._planes = {}
        #: The MigrateData pre_live_migration() answered (primitive), for reconciling.
        self.migrate_data = None
        #: Called with this record whenever it should be written down.
        self.persist = None
        #: Told of its start, transfer, events and end (the agent's metrics).
        self.observer = None
        self._written = 0.0

    @classmethod
    def from_stored(cls, data, facts=hostfacts):
        """A record as :meth:`to_stored` wrote it (after an agent restart)."""
        record = cls(data["id"], data["instance"], data["source"], data["destination"],
                     data["destination_url"], data["block_migration"],
                     data.get("options") or {}, facts=facts)
        for name in ("created", "finished", "status", "step", "progress", "uris",
                     "result", "error", "traffic", "migrate_data"):
            setattr(record, name, data.get(name))
        record.events.restore(data.get("events"), data.get("last_event"))
        counting = data.get("counting") or {}
        if counting.get("before") is not None:  # bytes per plane span the restart
            record._counters = counting["before"]
            record._planes = counting.get("planes") or {}
        return record

    def to_stored(self):
        data = self.to_dict()
        data["migrate_data"] = self.migrate_data
        data["counting"] = {"before": self._counters, "planes": self._planes}
        return data

    def save(self, force=True):
        """Write this record down now (``force``) or if progress is due."""
        if self.persist is None:
            return
        now = time.monotonic()
        if not force and now - self._written < PROGRESS_WRITE_S:
            return
        self._written = now
        try:
            self.persist(self)
        except Exception as err:  # a full disk must not break the migration
            LOG.error("Migration %s: cannot write its record: %s", self.id, err)

    def note(self, kind, message=None, step=None, status=None):
        """An event of the agent itself (not of a flow), e.g. while reconciling."""
        with self._lock:
            if step:
                self.step = step
            if status:
                self.status = status
            self.events.append({
                "kind": kind, "migration_id": self.id, "instance": self.instance,
                "elapsed": round(time.time() - self.created, 3), "step": self.step,
                "message": message, "progress": None})
        self.save()

    # -- fed by the flow -------------------------------------------------------

    def on_event(self, event):
        with self._lock:
            data = event.to_dict()
            if event.kind == events_mod.PROGRESS:
                self.progress = data["progress"]
                # keep only the latest of a run of progress
                self.events.replace_last_of(events_mod.PROGRESS, data)
            else:
                self.events.append(data)
            if event.step:
                self.step = event.step
            if event.kind == events_mod.QUEUED:
                self.status = events_mod.QUEUED
            elif event.kind == events_mod.STEP and self.status in (events_mod.PENDING,
                                                                   events_mod.QUEUED):
                self.status = events_mod.RUNNING
            if self.flow is not None and self.flow.uris is not None and self.uris is None:
                self.uris = self.flow.uris.to_dict()
        if event.kind == events_mod.STEP and event.step == "live_migration":
            self._start_counting()
        self.observe("migration_event", event)
        self.save(force=event.kind != events_mod.PROGRESS)

    def observe(self, what, *args):
        """Tell the observer ``what`` happened (the name of its method)."""
        if self.observer is None:
            return
        try:
            getattr(self.observer, what)(self, *args)
        except Exception:  # metrics are a nicety; never fail a migration
            LOG.exception("Migration %s: the observer failed on %s", self.id, what)

    def _start_counting(self):
        """Counters just before the transfer; which interface is which plane."""
        uris = self.flow.uris if self.flow is not None else None
        try:
            self._counters = self._facts.counters()
            planes = {}
            if uris is not None:
                mgmt = self._facts.route_to(self.flow.destination.hostname)
                data = self._facts.route_to(uris.bulk_host)
                if data.get("dev"):
                    planes[data["dev"]] = uris.plane
                if mgmt.get("dev"):
                    planes[mgmt["dev"]] = uri_mod.MANAGEMENT
            self._planes = planes
        except Exception as err:  # counting is a nicety; never fail a migration
            LOG.warning("Migration %s: cannot read interface counters: %s", self.id, err)
            self._counters = None
        self.observe("transfer_started", self._planes)

    def _stop_counting(self):
        if self._counters is None:
            return
        try:
            self.traffic = hostfacts.traffic(self._counters, self._facts.counters(),
                                             self._planes)
        except Exception as err:
            LOG.warning("Migration %s: cannot read interface counters: %s", self.id, err)

    def prepared(self, migrate_data):
        """pre_live_migration() answered: keep its data for a restarted agent."""
        self.migrate_data = migrate_data.to_primitive()
        self.save()

    @property
    def verdict(self):
        """Where the guest is, as the settle function last said (``events.VERDICTS``)."""
        return (self.result or {}).get("verdict")

    @property
    def split_released(self):
        """An operator released this split guest (``migplane release``)."""
        with self._lock:
            return self.events.any(events_mod.SPLIT_RELEASED)

    def finish(self, result=None, error=None, running_on=None, status=None, verdict=None,
               verdict_reason=None):
        """The end: ``result`` of the flow, or ``error``, or (reconciled) ``status``,
        ``running_on`` and ``verdict``; all set at once, so no reader sees a status
        without them."""
        self._stop_counting()
        with self._lock:
            if status is not None:
                self.status = status
            self.finished = time.time()
            self.result = result.to_dict() if result is not None else None
            if result is not None:
                self.status = result.status
                if result.error:
                    self.error = result.error
                if result.uris is not None:
                    self.uris = result.uris.to_dict()
                if result.progress is not None:
                    self.progress = result.progress.to_dict()
            if error is not None:
                self.error = str(error)
                if result is None:
                    self.status = (flow_mod.ABORTED
                                   if isinstance(error, exception.MigrationAborted)
                                   else flow_mod.FAILED)
            if result is None and (running_on is not None or verdict is not None):
                self.result = {"migration_id": self.id, "instance": self.instance,
                               "source": self.source, "destination": self.destination,
                               "status": self.status,
                               "duration_s": round(self.finished - self.created, 3),
                               "uris": self.uris, "progress": self.progress,
                               "timeout_action": None, "error": self.error,
                               "running_on": running_on, "verdict": verdict,
                               "verdict_reason": verdict_reason}
        self.save()
        self.observe("migration_finished")

    # -- read by the API ---------------------------------------------------------

    @property
    def active(self):
        return self.status in ACTIVE

    def to_dict(self, since=None, events=True):
        with self._lock:
            uris = self.uris
            if uris is None and self.flow is not None and self.flow.uris is not None:
                uris = self.flow.uris.to_dict()
            data = {
                "id": self.id, "instance": self.instance, "source": self.source,
                "destination": self.destination,
                "destination_url": self.destination_url,
                "block_migration": self.block_migration, "options": self.options,
                "status": self.status, "step": self.step, "created": self.created,
                "finished": self.finished, "progress": self.progress, "uris": uris,
                "result": self.result, "error": self.error, "traffic": self.traffic,
                "last_event": self.events.last,
            }
            if events:
                data["events"] = self.events.since(since)
            return data


class PreparedData:
    """The destination driver, noting what pre_live_migration() answers in a record.

    The destination is a peer, and what it answers is held to what this host
    asked: the same ``block_migration``, and every ``driver_data`` key this
    host sent kept as it was sent (e.g. the list of disks to copy, which this
    host's cleanup must never take from the peer). Everything else is passed
    through, so the flow sees the driver it was given.
    """

    def __init__(self, destination, record):
        self._destination = destination
        self._record = record

    def __getattr__(self, name):
        return getattr(self._destination, name)

    def _held(self, step, answer, sent=None):
        if answer.block_migration != bool(self._record.block_migration):
            raise exception.MigrationError(
                instance=self._record.instance, step=step,
                reason="the destination %s answered block_migration=%s for a migration "
                       "%s it" % (self._record.destination, answer.block_migration,
                                  "with" if self._record.block_migration else "without"))
        if sent is None:
            return answer
        mine = dict(sent.driver_data)
        changed = sorted(k for k, v in mine.items() if answer.driver_data.get(k) != v)
        if changed:
            LOG.warning("Migration %s: the destination %s changed %s in its answer; "
                        "keeping what this host sent", self._record.id,
                        self._record.destination, ", ".join(changed))
        return answer.replace(driver_data=dict(answer.driver_data, **mine))

    def check_can_live_migrate_destination(self, instance, block_migration=False):
        return self._held("check_can_live_migrate_destination",
                          self._destination.check_can_live_migrate_destination(
                              instance, block_migration))

    def pre_live_migration(self, instance, migrate_data):
        data = self._held("pre_live_migration",
                          self._destination.pre_live_migration(instance, migrate_data),
                          sent=migrate_data)
        try:
            self._record.prepared(data)
        except Exception as err:  # an odd answer is the flow's to refuse
            LOG.warning("Migration %s: cannot keep its migrate data: %s", self._record.id,
                        err)
        return data


class MigrationRegistry(records_mod.RecordIndex):
    """Starts flows in threads; keeps the last ``history`` of them in ``store``.

    :param store: a :class:`~migplane.agent.store.RecordStore` (default: memory).
    :param max_age_s: finished records older than this are dropped (None: never).
    :param hostname: this host's name, as its driver's ``hostname`` (the flow's
        guard of one migration per guest is keyed by it).
    """

    def __init__(self, history=100, store=None, max_age_s=None, facts=hostfacts,
                 observer=None, hostname=""):
        super().__init__(history, max_age_s)
        self._observer = observer
        self.hostname = hostname
        #: Called with a record whose flow ended unresolved (the agent settles it on).
        self.on_unresolved = None
        self.store = store if store is not None else store_mod.RecordStore(None)
        bad = []
        loaded = self.store.load_all(check=check_stored, bad=bad)
        for data in loaded:
            record = MigrationRecord.from_stored(data, facts=facts)
            record.persist = self._persist
            record.observer = observer
            self._records[record.id] = record
        for migration_id, instance, reason in bad:
            self._unreadable(migration_id, instance, reason, facts)
        self._trim()

    def _unreadable(self, migration_id, instance, reason, facts):
        """A migration whose stored record could not be used: reported, as
        unresolved (where its guest is, this agent cannot tell), never dropped."""
        record = MigrationRecord(migration_id, instance or "unknown", "", "", "", False,
                                 {}, facts=facts)
        record.persist = self._persist
        record.status = events_mod.UNRESOLVED
        record.finished = time.time()
        record.error = ("its stored record was unreadable (%s) and was moved to the "
                        "quarantine table of %s; where %s runs is not known: check "
                        "both hosts" % (reason, self.store.path, instance))
        record.events.append({"kind": events_mod.UNRESOLVED, "migration_id": migration_id,
                              "instance": instance, "elapsed": 0.0, "step": None,
                              "message": record.error, "progress": None})
        self._records[migration_id] = record
        record.save()

    def _persist(self, record):
        self.store.save(record.to_stored())

    def new_id(self):
        return uuid.uuid4().hex[:12]

    def claim(self, instance, migration_id):
        """Reserve ``instance`` for ``migration_id``, atomically, or raise (409).

        One active migration per guest here: the flow's claim (``flow.claim``),
        which the flow of ``migration_id`` takes over once :meth:`start` ran it
        and ends itself; :meth:`unclaim` ends it when no flow was started. Besides
        the claims, this host's records refuse a guest whose migration is still
        active (reconciled after a restart) or unsettled.
        """
        with self._lock:
            busy = [r for r in self._records.values() if r.instance == instance and r.active]
            if busy:
                raise exception.MigrationError(
                    instance=instance, step="start",
                    reason="migration %s of it is already %s" % (busy[0].id,
                                                                  busy[0].status))
            unsettled = self._unsettled_for(instance)
            if unsettled is not None and unsettled.verdict == events_mod.VERDICT_SPLIT:
                raise exception.GuestSplit(
                    instance=instance, migration=unsettled.id, step="start",
                    reason=(unsettled.result or {}).get("verdict_reason") or "split")
            if unsettled is not None:
                raise exception.MigrationError(
                    instance=instance, step="start",
                    reason="migration %s of it ended %s and is being settled; nothing "
                           "may move it meanwhile" % (unsettled.id, unsettled.verdict))
            flow_mod.claim(self.hostname, instance, migration_id)

    def _unsettled_for(self, instance):
        """The latest record of ``instance`` when it ended split or unresolved."""
        latest = None
        for record in self._records.values():
            if record.instance == instance and (latest is None
                                                or record.created >= latest.created):
                latest = record
        if latest is not None and latest.verdict == events_mod.VERDICT_SPLIT \
                and latest.split_released:
            return None
        if latest is not None and latest.verdict in (events_mod.VERDICT_SPLIT,
                                                     events_mod.VERDICT_UNRESOLVED):
            return latest
        return None

    def unclaim(self, instance, migration_id):
        """End a claim whose flow was not started (a started flow ends its own)."""
        flow_mod.release(self.hostname, instance, migration_id)

    def add(self, record):
        """Keep (and write down) ``record``."""
        record.persist = self._persist
        record.observer = self._observer
        with self._lock:
            self._records[record.id] = record
            self._trim()
        record.save()

    def start(self, record, flow):
        record.flow = flow
        flow.subscribe(record.on_event)
        self.add(record)
        record.observe("migration_started")
        thread = threading.Thread(target=self._run, args=(record, flow), daemon=True,
                                  name="migration-%s" % record.id)
        thread.start()
        return thread

    def _run(self, record, flow):
        try:
            result = flow.run()
        except exception.MigplaneError as err:
            LOG.error("Migration %s of %s failed: %s", record.id, record.instance, err)
            record.finish(getattr(err, "result", None), err)
        except Exception as err:  # a bug: keep the agent alive, keep the record
            LOG.exception("Migration %s of %s crashed", record.id, record.instance)
            record.finish(None, "%s: %s" % (type(err).__name__, err))
        else:
            LOG.info("Migration %s of %s %s in %.1f s", record.id, record.instance,
                     result.status, result.duration_s)
            record.finish(result)
        with self._lock:
            self._trim()
        if record.verdict == events_mod.VERDICT_UNRESOLVED and self.on_unresolved:
            self.on_unresolved(record)

    def _trim(self, now=None):
        super()._trim(time.time() if now is None else now)
        try:
            self.store.trim(self._history, self._max_age_s, active=ACTIVE)
        except Exception as err:
            LOG.error("Cannot trim the migration records in %s: %s", self.store.path,
                      err)

    def get(self, migration_id):
        return self.find(migration_id)

    def active_for(self, instance):
        return [r for r in self.all() if r.instance == instance and r.active]

    def in_flight(self):
        """Records that were active when they were last written (for reconciling)."""
        return [r for r in self.all() if r.active and r.flow is None]

    def unsettled(self):
        """Ended records whose verdict is unresolved (for reconciling on start)."""
        return [r for r in self.all()
                if not r.active and r.verdict == events_mod.VERDICT_UNRESOLVED]
