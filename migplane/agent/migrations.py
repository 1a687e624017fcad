"""Migrations coordinated by this agent (as their source), each in a thread.

A record keeps what ``migplane show`` needs long after the flow ended: the
events, the latest progress, the URIs, the result, and how many bytes each
network plane carried while the data moved.
"""

import collections
import logging
import threading
import time
import uuid

from migplane.agent import hostfacts
from migplane.core import events as events_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
MAX_EVENTS = 1000
ACTIVE = events_mod.ACTIVE


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
        self.status = "pending"
        self.step = None
        self.progress = None
        self.uris = None
        self.result = None
        self.error = None
        self.traffic = None
        self.events = collections.deque(maxlen=MAX_EVENTS)
        self.flow = None
        self.abort_requested = False
        self._seq = 0
        self._lock = threading.Lock()
        self._facts = facts
        self._counters = None
        self._planes = {}

    # -- fed by the flow -------------------------------------------------------

    def on_event(self, event):
        with self._lock:
            self._seq += 1
            data = event.to_dict()
            data["seq"] = self._seq
            if event.kind == events_mod.PROGRESS:
                self.progress = data["progress"]
                if self.events and self.events[-1]["kind"] == events_mod.PROGRESS:
                    self.events.pop()  # keep only the latest of a run of progress
            self.events.append(data)
            if event.step:
                self.step = event.step
            if event.kind == events_mod.QUEUED:
                self.status = "queued"
            elif event.kind == events_mod.STEP and self.status in ("pending", "queued"):
                self.status = "running"
        if event.kind == events_mod.STEP and event.step == "live_migration":
            self._start_counting()

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

    def _stop_counting(self):
        if self._counters is None:
            return
        try:
            self.traffic = hostfacts.traffic(self._counters, self._facts.counters(),
                                             self._planes)
        except Exception as err:
            LOG.warning("Migration %s: cannot read interface counters: %s", self.id, err)

    def finish(self, result=None, error=None):
        self._stop_counting()
        with self._lock:
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
                "last_event": self._seq,
            }
            if events:
                data["events"] = [e for e in self.events
                                  if since is None or e["seq"] > since]
            return data


class MigrationRegistry:
    """Starts flows in threads and remembers the last ``history`` of them."""

    def __init__(self, history=100):
        self._records = collections.OrderedDict()
        self._history = history
        self._lock = threading.Lock()

    def new_id(self):
        return uuid.uuid4().hex[:12]

    def start(self, record, flow):
        record.flow = flow
        flow.subscribe(record.on_event)
        with self._lock:
            self._records[record.id] = record
            self._trim()
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

    def _trim(self):
        finished = [k for k, r in self._records.items() if not r.active]
        while len(self._records) > self._history and finished:
            self._records.pop(finished.pop(0))

    def get(self, migration_id):
        with self._lock:
            return self._records.get(migration_id)

    def all(self):
        with self._lock:
            return list(self._records.values())

    def active_for(self, instance):
        return [r for r in self.all() if r.instance == instance and r.active]
