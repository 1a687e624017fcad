"""``migplane dashboard``: its data from fake-world agents, and the page in a real
browser (headless Chromium driven by Selenium)."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from migplane.agent import testing
from migplane.cli import agents as agents_mod
from migplane.cli import dashboard
from migplane.core import units

# -- pure: what the page is given ------------------------------------------------------

def test_rates_are_per_plane_bytes_per_second():
    history = [(10.0, {"migration": 0, "management": 0}),
               (12.0, {"migration": 200 * units.MiB, "management": 2000}),
               (13.0, {"migration": 300 * units.MiB, "management": 2000})]
    assert dashboard.rates(history) == {
        "migration": [[12.0, 100.0 * units.MiB], [13.0, 100.0 * units.MiB]],
        "management": [[12.0, 1000.0], [13.0, 0.0]]}


def test_plane_bytes_add_both_directions():
    text = ("# TYPE migplane_plane_bytes counter\n"
            'migplane_plane_bytes_total{direction="tx",plane="migration"} 300\n'
            'migplane_plane_bytes_total{direction="rx",plane="migration"} 5\n'
            'migplane_plane_bytes_total{direction="tx",plane="management"} 7\n'
            "# TYPE migplane_slots_in_use gauge\nmigplane_slots_in_use 1\n")
    assert dashboard.plane_bytes(text) == {"migration": 305, "management": 7}


def test_the_strategy_comes_from_the_result_else_the_planned_event():
    assert dashboard.strategy({"result": {"plan": {"strategy": "static"}}}) == "static"
    assert dashboard.strategy({"result": None, "events": [
        {"kind": "planned", "message": "adaptive: pre-copy; predicted 3.0 s"}]}) == \
        "adaptive"
    assert dashboard.strategy({"result": None, "events": [
        {"kind": "planned", "message": "<b>x</b>: y"}], "options": {}}) is None


def test_escalations_come_from_the_result_else_the_events():
    assert dashboard.escalations({"result": {"escalations": [
        {"escalation": "raise-downtime", "reason": "x"}]}}) == ["raise-downtime"]
    assert dashboard.escalations({"result": None, "events": [
        {"kind": "escalated", "message": "auto-converge: the job does not converge"},
        {"kind": "progress", "message": None}]}) == ["auto-converge"]


def test_an_evacuations_timeline_has_a_lane_per_guest():
    record = {"guests": [{"name": "vm1", "destination": "host-b", "status": "completed",
                          "percent": 100.0, "downtime_ms": 30},
                         {"name": "vm2", "destination": "host-c", "status": "running",
                          "percent": 40.0, "downtime_ms": None},
                         {"name": "vm3", "destination": "host-b", "status": "pending"}],
              "events": [{"kind": "migration_started", "instance": "vm1", "elapsed": 0.5},
                         {"kind": "migration", "instance": "vm1", "elapsed": 1.5,
                          "migration": {"kind": "transfer_started"}},
                         {"kind": "migration_finished", "instance": "vm1", "elapsed": 4.0},
                         {"kind": "migration_started", "instance": "vm2", "elapsed": 3.0},
                         {"kind": "migration_started", "instance": "evil", "elapsed": 1}]}
    lanes = dashboard.timeline(record)
    assert [(x["name"], x["started_s"], x["transfer_s"], x["finished_s"]) for x in lanes] \
        == [("vm1", 0.5, 1.5, 4.0), ("vm2", 3.0, None, None), ("vm3", None, None, None)]
    view = dashboard.evacuation_view("host-a", dict(record, id="e1", source="host-a",
                                                    status="running", created=100.0,
                                                    finished=None), now=110.0)
    assert view["guests_left"] == 2 and view["elapsed_s"] == 10.0


# -- agents on fake-world hosts, the dashboard serving them ----------------------------

@pytest.fixture
def serve(pki):
    """Serve the dashboard of ``locals_`` on 127.0.0.1; stopped after the test."""
    running = []

    def start(*locals_, interval=0.2):
        directory = agents_mod.Directory(
            agents={x.agent.hostname: x.url for x in locals_}, token=testing.TOKEN,
            ca_file=pki.ca_file)
        monitor = dashboard.Monitor(directory, sorted(directory.agents), interval)
        server = dashboard.make_server(monitor, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monitor.start()
        running.append((server, monitor))
        return server

    yield start
    for server, monitor in running:
        server.shutdown()
        server.server_close()
        monitor.stop()


def get(url, host=None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_the_server_serves_the_page_and_the_state_to_this_host_only(world, start_agent,
                                                                    serve):
    server = serve(start_agent("host-a"))
    status, headers, body = get(server.url)
    assert status == 200 and b"<title>migplane</title>" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = get(server.url + "state")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(json.loads(body)) >= {"agents", "migrations", "evacuations"}
    assert get(server.url + "etc/passwd")[0] == 404
    # a page of another site, reaching this port through its own name: refused
    assert get(server.url + "state", host="attacker.example:%d"
               % server.server_address[1])[0] == 421


def test_an_unreachable_agent_is_named_on_the_page(world, start_agent, serve):
    a = start_agent("host-a")
    gone = start_agent("host-b")
    gone.stop()
    server = serve(a, gone)
    deadline = time.monotonic() + 60
    while True:  # until the first poll of the agents is in
        state = json.loads(get(server.url + "state")[2])
        if state["agents"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    errors = {found["name"]: found["error"] for found in state["agents"]}
    assert errors["host-a"] is None
    assert "AgentUnreachable" in errors["host-b"]


def test_the_page_follows_a_migration_and_an_evacuation(world, start_agent, serve,
                                                        browser, cli):
    for name, mib in (("vm1", 256), ("vm2", 128), ("vm3", 96)):
        world.add_guest("host-a", name, memory_mib=mib, dirty_mib_s=5 if name == "vm1" else 0)
    a = start_agent("host-a", max_concurrent=2)
    b = start_agent("host-b", my_live_migration_ip="198.51.100.12", max_concurrent=2)
    c = start_agent("host-c", my_live_migration_ip="198.51.100.13", max_concurrent=2)
    # slow enough in real time for the page to see it move
    a.agent.sleep = testing.paced(world, real_s=0.05)
    server = serve(a, b, c)
    browser.open(server.url)
    browser.wait(lambda p: p["polls"] >= 1 and len(p["agents"]) == 3, 60, "the agents")

    client = testing.request
    started = client(a, "POST", "/v1/migrations", body={
        "instance": "vm1", "destination": {"url": b.url},
        "options": {"bandwidth_mib": 40}}).json()
    seen = []

    def moving(page):
        rows = [m for m in page["migrations"] if m["id"] == started["id"]]
        if rows:
            seen.append(rows[0]["percent"])
        return rows and rows[0]["status"] == "completed"

    page = browser.wait(moving, 120, "migration %s completed" % started["id"], poll=0.1)
    assert any(0 < p < 100 for p in seen), seen       # it was seen in flight
    assert seen == sorted(seen) and seen[-1] == 100   # and it only rose
    row = next(m for m in page["migrations"] if m["id"] == started["id"])
    browser.screenshot("dashboard-migration.png")

    # the final state is what `migplane show` says
    code, out, err = cli("show", started["id"], "--json", "--agent", "host-a=%s" % a.url,
                         "--token", testing.TOKEN)
    assert code == 0, err
    shown = json.loads(out)
    assert row["status"] == shown["status"] == "completed"
    assert row["guest"] == shown["instance"] == "vm1"
    assert row["route"] == "%s \u2192 %s" % (shown["source"], shown["destination"])
    assert row["downtime"] == "%d ms" % shown["progress"]["downtime_ms"]
    assert row["strategy"] == shown["result"]["plan"]["strategy"]
    taken = [e["escalation"] for e in shown["result"]["escalations"]]
    assert row["escalations"] == (", ".join(taken) or "-")
    assert row["bar"] == "100%"
    assert "migration" in row["planes"]   # the migration plane's throughput is drawn

    # an evacuation: a lane per guest, each ending moved
    a.agent.sleep = testing.paced(world, real_s=0.01)
    evacuation = client(a, "POST", "/v1/evacuations", body={
        "destinations": [{"url": b.url}, {"url": c.url}], "link_rate_mib": 100,
        "fixed_cost_s": 0.5}).json()

    def evacuated(page):
        found = [e for e in page["evacuations"] if e["id"] == evacuation["id"]]
        return found and found[0]["status"] == "completed" and all(
            lane["status"] == "completed" for lane in found[0]["lanes"])

    browser.wait(evacuated, 120, "evacuation %s completed" % evacuation["id"])
    page = browser.wait(lambda p: all(m["status"] == "completed" for m in p["migrations"]),
                        60, "every migration completed")
    shown = next(e for e in page["evacuations"] if e["id"] == evacuation["id"])
    assert sorted(lane["guest"] for lane in shown["lanes"]) == ["vm2", "vm3"]
    assert all(lane["bars"] == 2 for lane in shown["lanes"])
    assert "2 of 2 guests moved" in shown["heading"]
    path = browser.screenshot("dashboard-evacuation.png")
    assert path.stat().st_size > 0


def test_a_running_migration_shows_no_downtime_yet():
    record = {"id": "m1", "instance": "vm1", "source": "host-a", "destination": "host-b",
              "status": "running", "progress": {"state": "running", "data_total": 100,
                                                "data_remaining": 40, "downtime_ms": 250}}
    row = dashboard.migration_row("host-a", record)
    assert row["downtime_ms"] is None and row["percent"] == 60.0
    row = dashboard.migration_row("host-a", dict(record, status="completed", progress=dict(
        record["progress"], state="completed", data_remaining=0, downtime_ms=31)))
    assert row["downtime_ms"] == 31 and row["percent"] == 100.0


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "[::]", "*", "0x0", "::ffff:0.0.0.0"])
def test_the_page_is_never_served_on_a_wildcard(cli, bind):
    code, out, err = cli("dashboard", "--bind", bind, "--agent",
                         "host-a=https://192.0.2.11:7480", "--token", testing.TOKEN)
    assert code == 2
    assert "--bind %s: a wildcard" % bind in err
