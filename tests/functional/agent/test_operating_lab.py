"""Operating migplane on the lab: both agents scraped during a real migration, and
``migplane dashboard`` (run on the controller, with the CLI's credentials) followed
in headless Chromium through a migration and a one-guest evacuation."""

import importlib.util
import json
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from migplane.core import units
from migplane.lab import agents as agents_mod
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

_PATH = pathlib.Path(__file__).resolve().parents[2] / "browser.py"
_SPEC = importlib.util.spec_from_file_location("browser", _PATH)
browser_mod = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(browser_mod)

#: The guest: 64 MiB of its memory stamped with data (zero pages cost no bytes),
#: moved at 4 MiB/s, so the transfer lasts long enough to be watched.
CMDLINE = guest.cmdline(tick_ms=100, stamp_mib=64)
BANDWIDTH_MIB = "4"
#: Scrapes agents from the controller (the management plane), as Prometheus would:
#: all of them at once, one JSON list of their texts.
SCRAPE = """
import json, os, sys, requests
texts = []
for url in sys.argv[2:]:
    answer = requests.get(url + "/metrics", verify=sys.argv[1], timeout=30, headers={
        "Authorization": "Bearer " + os.environ["MIGPLANE_TOKEN"]})
    answer.raise_for_status()
    texts.append(answer.text)
json.dump(texts, sys.stdout)
"""


GUEST_PREFIX = "op"


def cli(agents, *argv, timeout=600):
    done = agents.run_cli(*argv, *agents.cli_args(), timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def show(agents, migration_id):
    return json.loads(cli(agents, "show", migration_id, "--json"))


def scrape(lab, agents):
    """``{host name: {(name, labels): value}}`` of every lab agent's metrics."""
    from prometheus_client import parser

    env = agents_mod.agent_env()
    env["MIGPLANE_TOKEN"] = agents.token
    done = lab.run_controller([sys.executable, "-c", SCRAPE, agents.ca_file,
                               *[agents.url(h) for h in lab.hosts]], env=env, timeout=60)
    scraped = {}
    for host, text in zip(lab.hosts, json.loads(done.stdout), strict=False):
        found = scraped[host.name] = {}
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return scraped


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0)


def plane_bytes(found, plane, direction):
    return value(found, "migplane_plane_bytes_total", plane=plane, direction=direction)


def lab_bytes(host, plane, direction):
    """What the lab's own counter of ``host``'s ``plane`` interface says."""
    return host.counters()[plane]["%s_bytes" % direction]


def wait_record(agents, migration_id, predicate, timeout=600, what="done"):
    """The record once ``predicate`` holds (the deadline only turns a hang into a
    failure)."""
    deadline = time.monotonic() + timeout
    while True:
        record = show(agents, migration_id)
        if predicate(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError("migration %s never %s: %s, step %s" % (
                migration_id, what, record["status"], record.get("step")))
        time.sleep(0.5)


def start_guest(lab, kernel, name):
    a = lab.hosts[0]
    with ConsoleWatcher.for_domain(lab.hosts, name) as w:
        guest.define_guest(a, name, kernel, memory_mib=96, cmdline=CMDLINE)
        w.wait_for(lambda w: w.stamped(), 120, "MPSTAMPED")


def migrate_detached(agents, name, frm="host-a", to="host-b"):
    out = cli(agents, "migrate", name, "--from", frm, "--to", to, "--bandwidth",
              BANDWIDTH_MIB, "--detach", "--json")
    return json.loads(out)["id"]


def transferring(record):
    progress = record.get("progress") or {}
    return (record["status"] == "running"
            and (progress.get("data_processed") or 0) > 8 * units.MiB
            and (progress.get("data_remaining") or 0) > 8 * units.MiB)


def test_both_agents_count_the_planes_bytes_as_the_lab_does(lab, agents, kernel,
                                                            guest_name):
    a, b = lab.hosts
    start_guest(lab, kernel, guest_name)
    before = scrape(lab, agents)
    lab_before = {(h.name, p, d): lab_bytes(h, p, d) for h in lab.hosts
                  for p in ("migration", "management") for d in ("tx", "rx")}

    migration_id = migrate_detached(agents, guest_name)
    wait_record(agents, migration_id, transferring, 300, "transferred")
    during = scrape(lab, agents)
    # the counters rise during the transfer, on both hosts, and the slots show it
    assert plane_bytes(during["host-a"], "migration", "tx") > \
        plane_bytes(before["host-a"], "migration", "tx") + 4 * units.MiB
    assert plane_bytes(during["host-b"], "migration", "rx") > \
        plane_bytes(before["host-b"], "migration", "rx") + 4 * units.MiB
    assert value(during["host-a"], "migplane_migrations_running") == 1
    assert value(during["host-a"], "migplane_slots_in_use") == 1
    assert value(during["host-b"], "migplane_slots_in_use") == 1

    record = wait_record(agents, migration_id, lambda r: r["status"] != "running", 600,
                         "ended")
    assert record["status"] == "completed", record.get("error")
    after = scrape(lab, agents)
    lab_after = {key: lab_bytes(next(h for h in lab.hosts if h.name == key[0]),
                                key[1], key[2]) for key in lab_before}

    def agent_delta(host, plane, direction):
        return (plane_bytes(after[host], plane, direction)
                - plane_bytes(before[host], plane, direction))

    def lab_delta(host, plane, direction):
        return lab_after[(host, plane, direction)] - lab_before[(host, plane, direction)]

    # the migration plane: what the agents count is what the interfaces carried
    for host, direction in (("host-a", "tx"), ("host-b", "rx")):
        counted, carried = agent_delta(host, "migration", direction), \
            lab_delta(host, "migration", direction)
        assert carried > 48 * units.MiB, (host, carried)
        assert counted == pytest.approx(carried, rel=0.03), (host, counted, carried)
    # the management plane carried almost nothing of it, by both counts
    assert agent_delta("host-a", "management", "tx") < 4 * units.MiB
    assert lab_delta("host-a", "management", "tx") < 8 * units.MiB
    # the source's summary and its counter agree
    assert record["traffic"]["planes"]["migration"]["tx_bytes"] == pytest.approx(
        agent_delta("host-a", "migration", "tx"), rel=0.03)
    # the outcome, duration and downtime
    strategy = record["result"]["plan"]["strategy"]
    assert value(after["host-a"], "migplane_migrations_finished_total",
                 outcome="completed", strategy=strategy) == value(
        before["host-a"], "migplane_migrations_finished_total", outcome="completed",
        strategy=strategy) + 1
    assert value(after["host-a"], "migplane_migration_downtime_seconds_count",
                 strategy=strategy) >= 1
    assert value(after["host-a"], "migplane_slots_in_use") == 0
    assert value(after["host-b"], "migplane_slots_in_use") == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard(lab, agents):
    """``migplane dashboard`` on the controller (its 127.0.0.1), reachable here."""
    port = free_port()
    env = agents_mod.agent_env()
    env["MIGPLANE_TOKEN"] = agents.token
    log = open(pathlib.Path(agents.dir) / "dashboard.log", "w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.controller_netns,
         *agents.cli_argv("dashboard", "--port", str(port), "--interval", "0.5",
                          *agents.cli_args())],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    forward = browser_mod.NetnsForward(lab.controller_netns, port)
    try:
        yield "http://127.0.0.1:%d/" % port
    finally:
        forward.close()
        process.terminate()  # by its own pid
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_the_dashboard_follows_a_migration_and_an_evacuation(lab, agents, kernel,
                                                             guest_name, dashboard,
                                                             browser):
    start_guest(lab, kernel, guest_name)
    deadline = time.monotonic() + 60
    while True:  # the page's server is up once it answers
        try:
            browser.open(dashboard)
            browser.wait(lambda p: p["polls"] >= 1 and len(p["agents"]) == 2, 30,
                         "the agents")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)

    migration_id = migrate_detached(agents, guest_name)
    seen = []

    def row(page):
        found = [m for m in page["migrations"] if m["id"] == migration_id]
        if found:
            seen.append(found[0]["percent"])
        return found[0] if found else None

    browser.wait(lambda p: (row(p) or {}).get("status") == "running"
                 and 0 < row(p)["percent"] < 100, 300, "the migration in flight", poll=0.5)
    browser.screenshot("dashboard-lab-migration-running.png")
    page = browser.wait(lambda p: (row(p) or {}).get("status") not in (
        None, "pending", "queued", "running"), 600, "the migration ended", poll=0.5)
    shown = row(page)
    assert seen == sorted(seen) and len(set(seen)) >= 2, seen   # the progress rose
    record = show(agents, migration_id)
    assert shown["status"] == record["status"] == "completed"
    assert shown["guest"] == guest_name
    assert shown["route"] == "host-a \u2192 host-b"
    assert shown["strategy"] == record["result"]["plan"]["strategy"]
    assert shown["downtime"] == "%d ms" % record["progress"]["downtime_ms"]
    assert shown["escalations"] == (", ".join(
        e["escalation"] for e in record["result"]["escalations"]) or "-")
    assert "migration" in shown["planes"]
    browser.screenshot("dashboard-lab-migration.png")

    # a one-guest evacuation of host-b, back to host-a: its lane on the timeline
    out = cli(agents, "evacuate", "host-b", "--to", "host-a", "--detach", "--json")
    evacuation_id = json.loads(out)["id"]

    def evacuation(page):
        found = [e for e in page["evacuations"] if e["id"] == evacuation_id]
        return found[0] if found else None

    page = browser.wait(lambda p: (evacuation(p) or {}).get("status") not in (
        None, "running"), 600, "the evacuation ended", poll=0.5)
    shown = evacuation(page)
    assert shown["status"] == "completed"
    assert [(lane["guest"], lane["status"]) for lane in shown["lanes"]] == [
        (guest_name, "completed")]
    assert shown["lanes"][0]["bars"] == 2
    assert "1 of 1 guests moved" in shown["heading"]
    path = browser.screenshot("dashboard-lab-evacuation.png")
    assert path.stat().st_size > 0
