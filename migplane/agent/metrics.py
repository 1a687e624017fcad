"""What the agent exports to Prometheus: ``GET /metrics`` in the text format.

One :class:`AgentMetrics` per agent, with its own ``CollectorRegistry`` (never
the process-wide one), so several agents in one process (tests, the demo)
each export only their own. It is fed by the migration records (started,
transfer started, finished, each event) and reads the rest when scraped:
slots, queued migrations, evacuations and the bytes each network plane
carried.

Labels are bounded: ``outcome`` is a record's status string
(:mod:`migplane.core.events`), ``strategy`` one of the strategies,
``escalation`` one of the plan's escalations, ``plane`` one of the URI
policy's planes, ``direction`` ``tx`` or ``rx``. No migration ID, guest or
host name is ever a label.

The plane byte counters count an interface's bytes while at least one
migration transfers from or to this host, once however many migrations share
the interface; they rise during a transfer, not only when it ends. As a
source, the interfaces and planes are those of the migration's routes (as in
the per-plane summary of ``migplane show``), from its transfer's start to its
end; as a destination, the interfaces holding the inbound migration address
and the agent's own address, while the source holds a slot here.
"""

import logging
import threading

import prometheus_client
from prometheus_client import core as prom_core
from prometheus_client import exposition

from migplane.agent import hostfacts
from migplane.core import events as events_mod
from migplane.core import units
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST
UNKNOWN = "unknown"
#: Keys of the transfers the plane meter counts: this host's own migrations (as
#: their source) and the incoming ones (a peer's slot here).
OUTGOING, INCOMING = "out", "in"
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
DOWNTIME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BYTES_BUCKETS = tuple(units.MiB * 4 ** i for i in range(9))  # 1 MiB .. 64 GiB
#: Names of every metric family the agent exports (a unit test holds the
#: exposition to exactly these).
NAMES = (
    "migplane_build_info",
    "migplane_migrations_started_total",
    "migplane_migrations_finished_total",
    "migplane_migration_duration_seconds",
    "migplane_migration_downtime_seconds",
    "migplane_migration_plane_bytes",
    "migplane_plane_bytes_total",
    "migplane_escalations_total",
    "migplane_postcopy_recoveries_total",
    "migplane_slots_in_use",
    "migplane_slots_limit",
    "migplane_migrations_running",
    "migplane_migrations_queued",
    "migplane_guests_split",
    "migplane_evacuations_in_progress",
    "migplane_evacuation_guests_left",
    "migplane_agent_certificate_expiry_timestamp_seconds",
)


def incoming_planes(interfaces, inbound_address, management_address):
    """``{ifname: plane}`` of a destination: the interface holding its inbound
    migration address carries the migration plane, the one holding the agent's
    own (management) address the management plane.

    :param interfaces: :func:`hostfacts.interfaces`.
    """
    planes = {}
    for interface in interfaces:
        held = {a.get("address") for a in interface.get("addresses") or ()}
        if management_address in held:
            planes[interface["ifname"]] = uri_mod.MANAGEMENT
        if inbound_address and inbound_address in held:
            planes[interface["ifname"]] = uri_mod.MIGRATION
    return planes


def strategy_of(record):
    """The strategy a record's migration follows (its effective settings)."""
    flow = getattr(record, "flow", None)
    if flow is not None:
        return flow.settings.strategy
    plan = (record.result or {}).get("plan") or {}
    return plan.get("strategy") or record.options.get("strategy") or UNKNOWN


def downtime_s(record):
    """The switch-over's downtime in seconds, or None when not measured."""
    progress = record.progress or (record.result or {}).get("progress") or {}
    value = progress.get("downtime_ms")
    return None if value is None else value / 1000.0


class PlaneMeter:
    """Bytes each plane carried while this host transferred at least one guest.

    :param facts: reads ``counters()`` (``{ifname: (tx, rx)}``).
    """

    def __init__(self, facts=hostfacts):
        self._facts = facts
        self._lock = threading.Lock()
        self._totals = {}       # (plane, direction) -> bytes
        self._active = set()    # ids of the records transferring now
        self._planes = {}       # ifname -> plane, of the active transfers
        self._before = None     # counters when the first active transfer began

    def active(self):
        with self._lock:
            return set(self._active)

    def start(self, record_id, planes):
        if not planes:
            return
        with self._lock:
            if not self._active:
                try:
                    self._before = self._facts.counters()
                except Exception as err:  # a nicety; never fail a migration
                    LOG.warning("Metrics: cannot read interface counters: %s", err)
                    return
                self._planes = {}
            self._active.add(record_id)
            self._planes.update(planes)

    def stop(self, record_id):
        with self._lock:
            if record_id not in self._active:
                return
            self._active.discard(record_id)
            if not self._active:
                for key, value in self._live().items():
                    self._totals[key] = self._totals.get(key, 0) + value
                self._before = None

    def _live(self):
        if self._before is None:
            return {}
        try:
            now = self._facts.counters()
        except Exception as err:
            LOG.warning("Metrics: cannot read interface counters: %s", err)
            return {}
        found = {}
        for plane, sums in hostfacts.traffic(self._before, now,
                                             self._planes)["planes"].items():
            found[(plane, "tx")] = sums["tx_bytes"]
            found[(plane, "rx")] = sums["rx_bytes"]
        return found

    def totals(self):
        """``{(plane, direction): bytes}`` so far, the transfers in progress included."""
        with self._lock:
            found = dict(self._totals)
            for key, value in self._live().items():
                found[key] = found.get(key, 0) + value
            return found


class _Gauges:
    """The figures read when scraped (a custom collector of the registry)."""

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self._metrics
        if m.agent is not None:
            m.forget_expired({lease.migration_id for lease in m.agent.slots.leases()})
        totals = m.planes.totals()
        family = prom_core.CounterMetricFamily(
            "migplane_plane_bytes", "Bytes each network plane carried (tx: sent, rx: "
            "received) while this host transferred a guest.", labels=("plane", "direction"))
        for (plane, direction), value in sorted(totals.items()):
            family.add_metric((plane, direction), value)
        yield family
        agent = m.agent
        if agent is None:
            return
        records = agent.registry.all()
        yield prom_core.GaugeMetricFamily(
            "migplane_slots_in_use", "Migration slots this host holds now (outgoing "
            "and incoming).", value=agent.slots.running)
        yield prom_core.GaugeMetricFamily(
            "migplane_slots_limit", "Migration slots of this host "
            "([live_migration] max_concurrent).",
            value=agent.settings.concurrency.max_concurrent)
        yield prom_core.GaugeMetricFamily(
            "migplane_migrations_running", "Migrations this agent coordinates that "
            "are running.", value=sum(r.status == events_mod.RUNNING for r in records))
        yield prom_core.GaugeMetricFamily(
            "migplane_migrations_queued", "Migrations this agent coordinates that wait "
            "for a slot.", value=sum(r.status == events_mod.QUEUED for r in records))
        yield prom_core.GaugeMetricFamily(
            "migplane_guests_split", "Guests found running on two hosts and not yet "
            "released by an operator (migplane release); alert on any.",
            value=len({r.instance for r in records
                       if r.verdict == events_mod.VERDICT_SPLIT and not r.split_released}))
        certificate = getattr(agent, "certificate", None)
        if certificate is not None:
            # What is served now: a refused reload leaves the old certificate here.
            yield prom_core.GaugeMetricFamily(
                "migplane_agent_certificate_expiry_timestamp_seconds", "When the "
                "certificate this agent serves expires (UNIX time); alert 30 days "
                "ahead.", value=certificate.not_after)
        active = agent.evacuations.active()
        yield prom_core.GaugeMetricFamily(
            "migplane_evacuations_in_progress", "Evacuations of this host running.",
            value=len(active))
        left = sum(1 for record in active for guest in record.to_dict(events=False)["guests"]
                   if guest.get("status") in events_mod.ACTIVE)
        yield prom_core.GaugeMetricFamily(
            "migplane_evacuation_guests_left", "Guests the running evacuations have "
            "still to move.", value=left)


class AgentMetrics:
    """The metrics of one agent; ``agent`` is set once the agent is built."""

    def __init__(self, facts=hostfacts, version=None, api=None):
        from migplane import version as version_mod

        self.agent = None
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.planes = PlaneMeter(facts)
        r = self.registry
        prometheus_client.Info(
            "migplane_build", "The agent's version and the version of its API.",
            registry=r).info({"version": version or version_mod.package_version(),
                              "api": api or UNKNOWN})
        self.started = prometheus_client.Counter(
            "migplane_migrations_started", "Migrations this agent started as their "
            "source.", ("strategy",), registry=r)
        self.finished = prometheus_client.Counter(
            "migplane_migrations_finished", "Migrations this agent coordinated that "
            "ended, by outcome (the record's status).", ("outcome", "strategy"),
            registry=r)
        self.duration = prometheus_client.Histogram(
            "migplane_migration_duration_seconds", "Time from start to end of a "
            "migration.", ("strategy",), buckets=DURATION_BUCKETS, registry=r)
        self.downtime = prometheus_client.Histogram(
            "migplane_migration_downtime_seconds", "The guest's pause at the switch-over "
            "of a completed migration, as the hypervisor measured it.", ("strategy",),
            buckets=DOWNTIME_BUCKETS, registry=r)
        self.plane_bytes = prometheus_client.Histogram(
            "migplane_migration_plane_bytes", "Bytes (sent and received) each network "
            "plane carried during one migration.", ("plane",), buckets=BYTES_BUCKETS,
            registry=r)
        self.escalations = prometheus_client.Counter(
            "migplane_escalations", "Escalations migrations took (raise-downtime, "
            "auto-converge, post-copy).", ("escalation",), registry=r)
        self.recoveries = prometheus_client.Counter(
            "migplane_postcopy_recoveries", "Post-copy migrations recovered after "
            "their stream broke.", registry=r)
        r.register(_Gauges(self))

    # -- fed by the migration records -------------------------------------------

    def migration_started(self, record):
        self.started.labels(strategy_of(record)).inc()

    def transfer_started(self, record, planes):
        self.planes.start((OUTGOING, record.id), planes)

    def migration_event(self, record, event):
        if event.kind == events_mod.POST_COPY_RECOVERED:
            self.recoveries.inc()

    def migration_finished(self, record):
        self.planes.stop((OUTGOING, record.id))
        strategy = strategy_of(record)
        self.finished.labels(record.status, strategy).inc()
        if record.finished is not None:
            self.duration.labels(strategy).observe(max(0.0, record.finished
                                                       - record.created))
        downtime = downtime_s(record)
        if record.status == events_mod.COMPLETED and downtime is not None:
            self.downtime.labels(strategy).observe(downtime)
        for plane, sums in ((record.traffic or {}).get("planes") or {}).items():
            self.plane_bytes.labels(plane).observe(sums["tx_bytes"] + sums["rx_bytes"])
        for taken in (record.result or {}).get("escalations") or ():
            self.escalations.labels(taken["escalation"]).inc()

    # -- fed by the slots peers take here (incoming migrations) -----------------

    def incoming_started(self, migration_id, planes):
        self.planes.start((INCOMING, migration_id), planes)

    def incoming_finished(self, migration_id):
        self.planes.stop((INCOMING, migration_id))

    def forget_expired(self, leased):
        """Stop counting for incoming migrations whose slot is gone (expired: the
        source stopped renewing it), so a vanished source never counts forever."""
        for key in self.planes.active():
            if key[0] == INCOMING and key[1] not in leased:
                self.planes.stop(key)

    # -- read by GET /metrics -----------------------------------------------------

    def exposition(self):
        """The registry in the Prometheus text format (bytes)."""
        return prometheus_client.generate_latest(self.registry)


def serve(metrics, host, port):
    """A plain-HTTP server of ``metrics`` alone on ``host:port`` (``[agent]
    metrics_bind_host``), in a daemon thread; returns the server."""
    server, _ = prometheus_client.start_http_server(port, addr=host,
                                                    registry=metrics.registry)
    return server
