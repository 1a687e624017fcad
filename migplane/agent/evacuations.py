"""Evacuations run by this agent as their source host, each in a thread.

The agent gathers what the planner needs (its guests from the driver, each
destination's free memory, load and limit from the destination's agent, the
link rate), runs a :class:`~migplane.core.evacuation.Evacuation`, and
registers every guest's migration with the migration registry, so that
``migplane list`` and ``show`` follow them like any other. The evacuation
runs here, not in the CLI: a CLI that goes away interrupts nothing.
"""

import collections
import copy
import logging
import threading
import time
import uuid

from migplane.agent import errors
from migplane.agent import records as records_mod
from migplane.core import convergence
from migplane.core import evacuation as evac_mod
from migplane.core import evacuation_plan as plan_mod
from migplane.core import events as events_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import planning
from migplane.core import units

LOG = logging.getLogger(__name__)
MAX_EVENTS = 2000
#: The link rate assumed when neither the request, the bandwidth limit nor the
#: interface says it: 1 Gbit/s.
DEFAULT_LINK_RATE = 125_000_000
#: Seconds each guest's dirty rate is measured for (when asked to).
DIRTY_WINDOW_S = 1.0


def link_rate(agent, body, remotes):
    """The source's migration link rate in bytes/s, and where it came from: the
    request's figure, else the migrations' own rule (``convergence.link_rate``:
    the bandwidth limit, capped by the interface's speed towards the first
    destination that reports one), else an assumed 1 Gbit/s, since the
    planner needs a figure before any pass has run."""
    if body.get("link_rate_mib"):
        return body["link_rate_mib"] * units.MiB, "given by the request"
    speed = None
    for remote in remotes.values():
        inbound = (remote.facts().get("inbound") or {}).get("address")
        speed = planning.link_speed(agent.driver, inbound, "Evacuation") if inbound else None
        if speed:
            break
    link = convergence.link_rate(agent.settings.migration.bandwidth_mib, speed)
    if link.known:
        return link.rate, link.reason
    return DEFAULT_LINK_RATE, "unknown: 1 Gbit/s assumed (give link_rate_mib)"


def dirty_rates(driver, names, window_s=DIRTY_WINDOW_S):
    """``{name: bytes/s}`` measured by the driver, all guests at once; guests it
    cannot measure (or a driver without the measurement) are left out."""
    measure = getattr(driver, "measure_dirty_rate", None)
    if measure is None:
        return {}
    found = {}

    def one(name):
        try:
            rate = measure(name, window_s).dirty_rate
        except Exception as err:  # a measurement is a hint: plan without it
            LOG.warning("Cannot measure the dirty rate of %s: %s", name, err)
            return
        if rate is not None:
            found[name] = rate

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(window_s + 30)
    return found


def destination_spec(remote):
    """A destination's free memory, load and limit, from its agent's host facts."""
    facts = remote.facts()
    resources = facts.get("resources") or {}
    agent = facts.get("agent") or {}
    if resources.get("memory_free_bytes") is None:
        raise errors.BadRequest(field="destinations", reason="%s does not report its free "
                                "memory (an older agent?)" % remote.hostname)

    def count(where, name, value):
        # a peer's answer is data to check, like any request
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise errors.BadRequest(field="destinations", reason="%s reports %s.%s = %r, "
                                    "not a whole number >= 0" % (remote.hostname, where,
                                                                 name, value))
        return value

    return plan_mod.DestinationSpec(
        name=remote.hostname,
        free_memory_bytes=count("resources", "memory_free_bytes",
                                resources["memory_free_bytes"]),
        load=count("agent", "running", agent.get("running") or 0),
        max_concurrent=count("agent", "max_concurrent", agent.get("max_concurrent") or 0))


class Preparation:
    """What an evacuation request resolves to: peers, guests, the plan's inputs."""

    def __init__(self, agent, body):
        self.agent = agent
        self.body = body
        self.remotes = {}
        for index, dest in enumerate(body["destinations"]):
            if dest.get("host") == agent.hostname:
                raise errors.BadRequest(field="destinations.%d" % index,
                                        reason="source and destination must differ")
            remote = agent.peer(dest)
            if remote.hostname in self.remotes:
                raise errors.BadRequest(field="destinations.%d" % index,
                                        reason="names %s twice" % remote.hostname)
            self.remotes[remote.hostname] = remote
        running = {i.name: i for i in agent.driver.list_instances()}
        wanted = body.get("instances")
        if wanted:
            missing = sorted(set(wanted) - set(running))
            if missing:
                raise exception.InstanceNotFound(instance=", ".join(missing),
                                                 host=agent.hostname)
            running = {name: running[name] for name in wanted}
        self.instances = running
        rates = (dirty_rates(agent.driver, sorted(running))
                 if body.get("measure_dirty_rate") else {})
        self.guests = [plan_mod.GuestSpec(name, info.memory_bytes, rates.get(name))
                       for name, info in sorted(running.items())]
        self.specs = [destination_spec(r) for r in self.remotes.values()]
        self.link_rate, self.link_source = link_rate(agent, body, self.remotes)
        concurrency = agent.settings.concurrency
        self.plan_settings = plan_mod.PlanSettings(
            fixed_cost_s=body.get("fixed_cost_s", plan_mod.PlanSettings.fixed_cost_s),
            source_max_concurrent=concurrency.max_concurrent,
            pipeline=body.get("pipeline", True))
        self.settings = agent.migration_settings(body.get("options"))

    def plan(self):
        return plan_mod.plan(self.guests, self.specs, self.link_rate, self.plan_settings)

    def to_dict(self, plan):
        return {"source": self.agent.hostname, "link_rate": self.link_rate,
                "link_rate_source": self.link_source,
                "destinations": [dict(vars(s), url=self.remotes[s.name].client.url)
                                 for s in self.specs],
                "plan": plan.to_dict()}


def refuse_unplaceable(plan):
    """Moving only part of a host is not what was asked: say which guests lack room."""
    if plan.unplaceable:
        raise exception.EvacuationRefused(
            instance=", ".join(u.name for u in plan.unplaceable),
            reason="no destination has room: " + "; ".join(
                "%s %s" % (u.name, u.reason) for u in plan.unplaceable))


class EvacuationRecord:
    """What is known of one evacuation; fed by its events."""

    def __init__(self, evacuation_id, source, prepared, plan):
        self.id = evacuation_id
        self.source = source
        self.created = time.time()
        self.finished = None
        self.status = events_mod.RUNNING
        self.prepared = prepared.to_dict(plan)
        self.guests = collections.OrderedDict(
            (g.name, {"name": g.name, "destination": g.destination, "status": events_mod.PENDING,
                      "step": None, "migration_id": None, "memory_bytes": g.memory_bytes,
                      "data_processed": 0, "data_remaining": None, "percent": 0.0,
                      "downtime_ms": None, "error": None, "running_on": source})
            for g in plan.guests)
        self.result = None
        self.error = None
        self.events = records_mod.EventLog(MAX_EVENTS)
        self.evacuation = None
        self._lock = threading.Lock()

    def on_event(self, event):
        with self._lock:
            guest = self.guests.get(event.instance) if event.instance else None
            migration = event.migration
            if migration is not None and guest is not None:
                guest["migration_id"] = migration.migration_id
                if migration.step:
                    guest["step"] = migration.step
                if migration.kind in (events_mod.QUEUED, events_mod.STEP) \
                        and guest["status"] == events_mod.PENDING:
                    guest["status"] = events_mod.RUNNING
                if migration.progress is not None:
                    p = migration.progress
                    guest.update(data_processed=p.data_processed,
                                 data_remaining=p.data_remaining, percent=p.percent,
                                 downtime_ms=p.downtime_ms)
                if migration.kind == events_mod.PROGRESS:
                    return  # live state only; the event log keeps the steps
            self.events.append(event.to_dict())

    def finish(self, result=None, error=None):
        with self._lock:
            self.finished = time.time()
            if result is not None:
                self.result = result.to_dict()
                self.status = result.status
                for outcome in result.guests:
                    guest = self.guests.setdefault(outcome.name, {"name": outcome.name})
                    guest.update(outcome.to_dict())
                    if outcome.status == flow_mod.COMPLETED:
                        guest["percent"] = 100.0
            if error is not None:
                self.error = str(error)
                self.status = flow_mod.FAILED

    @property
    def active(self):
        return self.status == events_mod.RUNNING

    def to_dict(self, since=None, events=True):
        with self._lock:
            data = {"id": self.id, "source": self.source, "status": self.status,
                    "created": self.created, "finished": self.finished,
                    "link_rate": self.prepared["link_rate"],
                    "link_rate_source": self.prepared["link_rate_source"],
                    "destinations": self.prepared["destinations"],
                    "plan": self.prepared["plan"],
                    "guests": [dict(g) for g in self.guests.values()],
                    "result": self.result, "error": self.error,
                    "last_event": self.events.last}
            if events:
                data["events"] = self.events.since(since)
            return data


class RegisteredMigration:
    """A guest's flow run by the migration registry, so list/show follow it.

    Looks like a :class:`LiveMigration` to the evacuation: ``run()`` returns its
    result or raises, as the flow does.
    """

    def __init__(self, registry, record, flow):
        self.registry = registry
        self.record = record
        self.flow = flow
        self.id = flow.id

    def __getattr__(self, name):
        return getattr(self.flow, name)

    def run(self):
        instance, migration_id = self.record.instance, self.record.id
        self.registry.claim(instance, migration_id)  # refused while it is moving already
        try:
            thread = self.registry.start(self.record, self.flow)
        except BaseException:
            self.registry.unclaim(instance, migration_id)
            raise
        thread.join()
        record = self.record
        result = flow_mod.MigrationResult(
            migration_id=record.id, instance=record.instance, source=record.source,
            destination=record.destination, status=record.status,
            duration_s=(record.result or {}).get("duration_s") or 0.0,
            progress=self.flow.progress, error=record.error,
            running_on=record.destination if record.status == flow_mod.COMPLETED
            else record.source)
        if result.status != flow_mod.COMPLETED:
            err = exception.MigrationError(
                message=record.error or "Live migration of %s %s" % (record.instance,
                                                                     record.status))
            err.result = result
            raise err
        return result


class EvacuationRegistry(records_mod.RecordIndex):
    """Starts evacuations in threads and remembers the last ``history`` of them."""

    def __init__(self, history=20):
        super().__init__(history)
        self._starting = None

    def claim(self, hostname, token):
        """Reserve this host's one evacuation for ``token`` while it is planned,
        atomically, or raise (409): one evacuation per source host at a time."""
        with self._lock:
            running = [r for r in self._records.values() if r.active]
            if running or self._starting is not None:
                raise exception.EvacuationRefused(
                    instance=hostname, reason="evacuation %s of it is already %s" % (
                        running[0].id if running else self._starting,
                        "running" if running else "starting"))
            self._starting = token

    def unclaim(self, token):
        with self._lock:
            if self._starting == token:
                self._starting = None

    def add(self, record):
        with self._lock:
            if self._starting == record.id:
                self._starting = None
            self._keep(record, time.time())

    def get(self, evacuation_id):
        record = self.find(evacuation_id)
        if record is None:
            raise errors.NotFound(what="Evacuation", name=evacuation_id)
        return record


def dry_run(agent, body):
    """The plan and its prediction; nothing moves."""
    prepared = Preparation(agent, body)
    return prepared.to_dict(prepared.plan())


def start(agent, registry, body):
    """Plan and start an evacuation of this host; return its record."""
    evacuation_id = uuid.uuid4().hex[:12]
    registry.claim(agent.hostname, evacuation_id)
    try:
        return _start(agent, registry, body, evacuation_id)
    finally:
        registry.unclaim(evacuation_id)


def _start(agent, registry, body, evacuation_id):
    prepared = Preparation(agent, body)
    plan = prepared.plan()
    refuse_unplaceable(plan)
    record = EvacuationRecord(evacuation_id, agent.hostname, prepared, plan)

    def factory(instance, destination):
        # A RemoteDriver carries its migration's id to the peer: one each, as
        # several migrations to the same destination run at once.
        remote = copy.copy(prepared.remotes[destination])
        mrecord, flow = agent.new_migration(instance, remote,
                                            prepared.settings, options=body.get("options"))
        return RegisteredMigration(agent.registry, mrecord, flow)

    evacuation = evac_mod.Evacuation(
        agent.driver, prepared.remotes, prepared.guests, prepared.specs,
        prepared.link_rate, prepared.settings, plan_settings=prepared.plan_settings,
        migration_factory=factory, evacuation_id=evacuation_id, clock=agent.clock,
        sleep=agent.sleep, poll_interval=min(0.5, prepared.settings.poll_interval))
    record.evacuation = evacuation
    evacuation.subscribe(record.on_event)
    registry.add(record)

    def run():
        try:
            result = evacuation.run()
        except Exception as err:  # a bug: keep the agent alive, keep the record
            LOG.exception("Evacuation %s crashed", evacuation_id)
            record.finish(error="%s: %s" % (type(err).__name__, err))
        else:
            LOG.info("Evacuation %s of %s: %s in %.1f s", evacuation_id, agent.hostname,
                     result.status, result.duration_s)
            record.finish(result)

    LOG.info("Evacuation %s of %s: %d guest(s) to %s", evacuation_id, agent.hostname,
             len(plan.guests), ", ".join(sorted(prepared.remotes)))
    threading.Thread(target=run, daemon=True, name="evacuation-%s" % evacuation_id).start()
    return record


def abort(registry, evacuation_id):
    record = registry.get(evacuation_id)
    if not record.active:
        raise exception.EvacuationRefused(
            instance=record.source, reason="evacuation %s already ended (%s)"
            % (record.id, record.status))
    record.evacuation.abort()
    return record
