"""``migplane dashboard``: a live page of every agent's migrations and evacuations.

A :class:`Monitor` asks each agent of the CLI's agent map, every ``interval``
seconds and with the CLI's credentials, for its migrations, evacuations and
metrics, and keeps a short history of each network plane's throughput and of
each migration's progress. :func:`make_server` serves the page
(``page.html``, ``page.js``: plain HTML and inline SVG, no build step) and the
monitor's latest snapshot as ``/state``, on a local address: the operator's
workstation. Everything an agent says is data to the page: it is drawn as
text, never as markup.
"""

import collections
import concurrent.futures
import http.server
import itertools
import json
import logging
import socket
import threading
import time
from importlib import resources

from prometheus_client import parser as prom_parser

from migplane.agent import errors as agent_errors
from migplane.core import driver as driver_mod
from migplane.core import events as events_mod
from migplane.core import strategy as strategy_mod

LOG = logging.getLogger(__name__)
#: Samples of history kept per plane and per migration (at 1 s: two minutes).
HISTORY = 120
#: The newest migrations shown per agent, and evacuations drawn per agent.
MAX_MIGRATIONS = 50
MAX_EVACUATIONS = 3
PLANES = ("migration", "management")
FILES = {"/": ("page.html", "text/html; charset=utf-8"),
         "/page.js": ("page.js", "text/javascript; charset=utf-8")}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


# -- what the page shows, from what the agents answer (pure) ---------------------------

def plane_bytes(text):
    """``{plane: bytes sent and received}`` of an agent's metrics text."""
    found = {}
    for family in prom_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "migplane_plane_bytes_total":
                plane = sample.labels.get("plane")
                found[plane] = found.get(plane, 0) + sample.value
    return found


def rates(history):
    """``{plane: [[time, bytes/s], ...]}`` of a history of ``(time, plane_bytes)``."""
    series = {}
    samples = list(history)
    for (t0, b0), (t1, b1) in itertools.pairwise(samples):
        if t1 <= t0:
            continue
        for plane in sorted(set(b0) | set(b1), key=lambda p: (p != "migration", p)):
            delta = max(0.0, b1.get(plane, 0) - b0.get(plane, 0))
            series.setdefault(plane, []).append([round(t1, 3), delta / (t1 - t0)])
    return series


def escalations(record):
    """Names of the escalations a migration took: its result's, else its events'."""
    taken = ((record.get("result") or {}).get("escalations")) or []
    if taken:
        return [t.get("escalation") for t in taken]
    return [str(e.get("message") or "").partition(":")[0]
            for e in record.get("events") or () if e.get("kind") == events_mod.ESCALATED]


def strategy(record):
    """The strategy a migration follows: its result's plan, else its planned event's
    (``"adaptive: pre-copy; ..."``), else what its request asked for."""
    plan = (record.get("result") or {}).get("plan") or {}
    if plan.get("strategy"):
        return plan["strategy"]
    for event in record.get("events") or ():
        if event.get("kind") == events_mod.PLANNED:
            named = str(event.get("message") or "").partition(":")[0]
            if named in strategy_mod.STRATEGIES:
                return named
    return (record.get("options") or {}).get("strategy")


def migration_row(agent, record):
    """One line of the page's migrations table."""
    progress = record.get("progress") or {}
    percent = driver_mod.JobProgress.from_dict(progress).percent if progress else 0.0
    result = record.get("result") or {}
    return {
        "agent": agent, "id": record["id"], "instance": record["instance"],
        "source": record["source"], "destination": record["destination"],
        "strategy": strategy(record), "status": record["status"],
        "step": record.get("step"), "percent": round(percent, 1),
        "data_processed": progress.get("data_processed"),
        "data_total": progress.get("data_total"),
        # a running job's figure is the hypervisor's estimate, not a downtime
        "downtime_ms": (None if record["status"] in events_mod.ACTIVE
                        else progress.get("downtime_ms")),
        "escalations": escalations(record),
        "running_on": result.get("running_on"), "error": record.get("error"),
        "created": record.get("created"), "finished": record.get("finished"),
    }


def timeline(record):
    """An evacuation's lanes, one per guest: when each started, began its transfer
    and ended, in seconds after the evacuation's start (None: not yet)."""
    lanes = collections.OrderedDict()
    for guest in record.get("guests") or ():
        lanes[guest["name"]] = {
            "name": guest["name"], "destination": guest.get("destination"),
            "status": guest.get("status"), "percent": guest.get("percent") or 0.0,
            "downtime_ms": guest.get("downtime_ms"), "started_s": None,
            "transfer_s": None, "finished_s": None}
    for event in record.get("events") or ():
        lane = lanes.get(event.get("instance"))
        if lane is None:
            continue
        kind = event.get("kind")
        migration = event.get("migration") or {}
        if kind == "migration_started" and lane["started_s"] is None:
            lane["started_s"] = event.get("elapsed")
        elif kind == "migration" and migration.get("kind") == events_mod.TRANSFER_STARTED:
            lane["transfer_s"] = event.get("elapsed")
        elif kind == "migration_finished":
            lane["finished_s"] = event.get("elapsed")
    for outcome in ((record.get("result") or {}).get("guests")) or ():
        lane = lanes.get(outcome.get("name"))
        if lane is not None:
            for key in ("started_s", "transfer_s", "finished_s", "downtime_ms"):
                if outcome.get(key) is not None:
                    lane[key] = outcome[key]
    return list(lanes.values())


def evacuation_view(agent, record, now):
    lanes = timeline(record)
    end = record.get("finished") or now
    elapsed = ((record.get("result") or {}).get("duration_s")
               or max(0.0, end - (record.get("created") or end)))
    return {"agent": agent, "id": record["id"], "source": record["source"],
            "status": record["status"], "created": record.get("created"),
            "finished": record.get("finished"),
            "elapsed_s": round(elapsed, 3),
            "guests_total": len(lanes),
            "guests_left": sum(1 for lane in lanes if lane["status"] in events_mod.ACTIVE),
            "lanes": lanes}


# -- sampling the agents -----------------------------------------------------------------

class Monitor:
    """Samples every agent of ``directory`` (names ``hosts``) each ``interval`` s."""

    def __init__(self, directory, hosts, interval=1.0, clock=time.time):
        self.directory = directory
        self.hosts = list(hosts)
        self.interval = interval
        self._clock = clock
        self._planes = {host: collections.deque(maxlen=HISTORY) for host in self.hosts}
        self._progress = {}   # (agent, id) -> deque of (time, data_processed)
        self._finished = {}   # (agent, id) -> an ended evacuation's record
        self._lock = threading.Lock()
        self._snapshot = {"time": clock(), "agents": [], "migrations": [],
                          "evacuations": [], "polls": 0}
        self._stop = threading.Event()
        self._thread = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, len(self.hosts)))

    def _ask(self, host):
        """Everything one agent says now; an error is named, not raised."""
        client = self.directory.client(host, timeout=max(5.0, 4 * self.interval))
        found = {"name": host, "url": client.url, "error": None, "migrations": [],
                 "evacuations": [], "planes": None}
        try:
            listed = client.get("/v1/migrations")["migrations"]
            listed = sorted(listed, key=lambda m: m.get("created") or 0)[-MAX_MIGRATIONS:]
            for record in listed:
                if record["status"] in events_mod.ACTIVE:  # escalations are in events
                    record = client.get("/v1/migrations/%s" % record["id"])
                found["migrations"].append(record)
            evacuations = client.get("/v1/evacuations")["evacuations"]
            evacuations = sorted(evacuations, key=lambda e: e.get("created") or 0)
            for record in evacuations[-MAX_EVACUATIONS:]:
                key = (host, record["id"])
                full = self._finished.get(key)
                if full is None:
                    full = client.get("/v1/evacuations/%s" % record["id"])
                    if full["status"] != "running":  # it changes no more
                        self._finished[key] = full
                found["evacuations"].append(full)
            found["planes"] = plane_bytes(client.metrics())
        except (agent_errors.AgentError, ValueError, KeyError, TypeError) as err:
            found["error"] = "%s: %s" % (type(err).__name__, err)
        return found

    def poll(self):
        """Ask every agent once; return (and keep) the snapshot."""
        now = self._clock()
        answers = list(self._pool.map(self._ask, self.hosts))
        with self._lock:
            agents, migrations, evacuations = [], [], []
            for found in answers:
                host = found["name"]
                if found["planes"] is not None:
                    self._planes[host].append((now, found["planes"]))
                series = rates(self._planes[host])
                agents.append({"name": host, "url": found["url"], "error": found["error"],
                               "planes": series})
                for record in found["migrations"]:
                    row = migration_row(host, record)
                    key = (host, row["id"])
                    history = self._progress.setdefault(key, collections.deque(
                        maxlen=HISTORY))
                    if row["data_processed"] is not None and (
                            not history or history[-1][1] != row["data_processed"]
                            or row["status"] in events_mod.ACTIVE):
                        history.append((now, {"data": row["data_processed"]}))
                    row["throughput"] = rates(history).get("data", [])
                    start = row["created"] or now
                    end = row["finished"] or now
                    row["planes"] = {plane: [p for p in points if start - 1 <= p[0]
                                             <= end + 1]
                                     for plane, points in series.items()}
                    migrations.append(row)
                evacuations += [evacuation_view(host, r, now) for r in found["evacuations"]]
            shown = {(m["agent"], m["id"]) for m in migrations}
            self._progress = {k: v for k, v in self._progress.items() if k in shown}
            shown = {(e["agent"], e["id"]) for e in evacuations}
            self._finished = {k: v for k, v in self._finished.items() if k in shown}
            migrations.sort(key=lambda m: m["created"] or 0, reverse=True)
            self._snapshot = {"time": now, "interval": self.interval, "agents": agents,
                              "migrations": migrations, "evacuations": evacuations,
                              "polls": self._snapshot["polls"] + 1}
            return self._snapshot

    def snapshot(self):
        with self._lock:
            return self._snapshot

    def start(self):
        def run():
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.poll()
                except Exception:  # keep the page alive; the next poll may work
                    LOG.exception("Dashboard: polling the agents failed")
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

        self._thread = threading.Thread(target=run, name="dashboard-poll", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=False)


# -- serving the page ------------------------------------------------------------------

def _read(name):
    return resources.files(__name__).joinpath(name).read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "migplane-dashboard"

    def log_message(self, fmt, *args):
        LOG.debug("dashboard: %s", fmt % args)

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        # another site's page, through a name that resolves here, must not read
        # what the operator's credentials see (DNS rebinding)
        if self.headers.get("Host") not in self.server.allowed_hosts:
            self._send(421, b"unknown Host\n", "text/plain; charset=utf-8")
            return
        path = self.path.split("?", 1)[0]
        if path == "/state":
            body = json.dumps(self.server.monitor.snapshot()).encode()
            self._send(200, body, "application/json")
        elif path in FILES:
            name, content_type = FILES[path]
            self._send(200, _read(name), content_type)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")


class DashboardServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, monitor):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.monitor = monitor
        host, port = self.server_address[:2]
        shown = "[%s]" % host if ":" in host else host
        self.url = "http://%s:%d/" % (shown, port)
        self.allowed_hosts = {"%s:%d" % (shown, port), "localhost:%d" % port}


def make_server(monitor, host="127.0.0.1", port=0):
    """The page's HTTP server on ``host:port`` (0: any free port); not yet serving."""
    return DashboardServer((host, port), monitor)
