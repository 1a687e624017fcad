"""``GET /metrics``: agents on fake-world hosts scraped and parsed as Prometheus does."""

import types

import pytest
import requests
from prometheus_client import parser

from migplane.agent import metrics
from migplane.agent import service
from migplane.agent import testing
from migplane.core import events

MIG_B = "198.51.100.12"


def scrape(local, token=testing.TOKEN):
    answer = testing.request(local, "GET", "/metrics", token=token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return samples(answer.text)


def samples(text):
    """``{(name, ((label, value), ...)): value}`` of an exposition text."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0)


def test_a_migration_is_counted_with_its_outcome_bytes_and_downtime(pair, client):
    a, b = pair
    record = client(a).post("/v1/migrations", {"instance": "vm1",
                                               "destination": {"url": b.url}})
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == "completed"
    found = scrape(a)

    assert value(found, "migplane_migrations_started_total", strategy="static") == 1
    assert value(found, "migplane_migrations_finished_total", outcome="completed",
                 strategy="static") == 1
    assert value(found, "migplane_migration_duration_seconds_count", strategy="static") == 1
    assert value(found, "migplane_migration_downtime_seconds_count", strategy="static") == 1
    assert value(found, "migplane_migration_downtime_seconds_sum", strategy="static") == \
        pytest.approx(done["progress"]["downtime_ms"] / 1000)
    # the host counter and the record's summary count the same interfaces' bytes
    sent = done["traffic"]["planes"]["migration"]["tx_bytes"]
    assert sent >= 256 << 20
    assert value(found, "migplane_plane_bytes_total", plane="migration",
                 direction="tx") == pytest.approx(sent, rel=0.01)
    assert value(found, "migplane_plane_bytes_total", plane="management",
                 direction="tx") < sent / 100
    assert value(found, "migplane_migration_plane_bytes_count", plane="migration") == 1
    assert value(found, "migplane_slots_in_use") == 0
    assert value(found, "migplane_slots_limit") >= 1
    assert value(found, "migplane_migrations_running") == 0
    info = [k for k in found if k[0] == "migplane_build_info"]
    assert len(info) == 1 and dict(info[0][1])["version"]
    assert dict(info[0][1])["api"] == service.VERSION
    # no label names a migration, a guest or a host
    for name, labels in found:
        for label, text in labels:
            assert text not in (record["id"], "vm1", "host-a", "host-b"), (name, label)


def test_each_agent_exports_only_its_own(pair, client):
    a, b = pair
    testing.wait_for(client(a), client(a).post(
        "/v1/migrations", {"instance": "vm1", "destination": {"url": b.url}})["id"])
    assert value(scrape(b), "migplane_migrations_started_total", strategy="static") == 0
    assert value(scrape(a), "migplane_migrations_started_total", strategy="static") == 1


def test_every_exported_family_is_named_and_named_families_are_exported(pair):
    a, _ = pair
    answer = testing.request(a, "GET", "/metrics")
    # the parser names a counter without _total, and its creation time apart
    exported = {f.name for f in parser.text_string_to_metric_families(answer.text)
                if not f.name.endswith("_created")}
    named = {n[:-len("_total")] if n.endswith("_total") else n for n in metrics.NAMES}
    assert exported == named


def test_metrics_are_an_operator_read(pair, pki, start_agent):
    a, b = pair
    assert testing.request(a, "GET", "/metrics", token=None).status_code == 401
    assert testing.request(a, "GET", "/metrics", token="not-the-token-at-all").status_code \
        == 401
    # a peer's host certificate is not an operator's
    assert testing.request(a, "GET", "/metrics", peer=b).status_code == 401


def test_an_operator_certificate_may_scrape(world, start_agent, pki):
    local = start_agent("host-a", agent_options={"operator_names": ["prometheus"]})
    cert = pki.issue("prometheus")
    answer = requests.get(local.url + "/metrics", cert=cert, timeout=10)
    assert answer.status_code == 200
    assert "migplane_slots_in_use" in answer.text


def test_a_separate_bind_serves_metrics_without_authentication(world, start_agent):
    local = start_agent("host-a")
    server = metrics.serve(local.agent.metrics, "127.0.0.1", 0)
    try:
        answer = requests.get("http://127.0.0.1:%d/metrics" % server.server_port,
                              timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200
    assert value(samples(answer.text), "migplane_slots_in_use") == 0


# -- the metrics fed directly: outcomes, escalations, recoveries, evacuations ----------

def record(status="completed", escalations=(), downtime_ms=120, traffic=None,
           strategy="adaptive"):
    return types.SimpleNamespace(
        id="m1", status=status, created=100.0, finished=130.0, flow=None,
        options={}, progress={"downtime_ms": downtime_ms}, traffic=traffic,
        result={"plan": {"strategy": strategy},
                "escalations": [{"escalation": e, "reason": "r"} for e in escalations]})


def exported(m):
    return samples(m.exposition().decode())


@pytest.mark.parametrize("status", ["completed", "failed", "aborted", "timed_out", "lost",
                                    "unresolved", "split", "postcopy-paused",
                                    "rolled-back"])
def test_the_outcome_is_the_records_status_whatever_it_is(status):
    m = metrics.AgentMetrics()
    m.migration_finished(record(status=status))
    found = exported(m)
    assert value(found, "migplane_migrations_finished_total", outcome=status,
                 strategy="adaptive") == 1
    assert value(found, "migplane_migration_duration_seconds_sum",
                 strategy="adaptive") == 30.0
    # only a completed migration had a switch-over to measure
    assert value(found, "migplane_migration_downtime_seconds_count",
                 strategy="adaptive") == (1 if status == "completed" else 0)


def test_escalations_and_post_copy_recoveries_are_counted():
    m = metrics.AgentMetrics()
    m.migration_finished(record(escalations=("raise-downtime", "auto-converge",
                                             "post-copy")))
    m.migration_finished(record(escalations=("raise-downtime",)))
    event = types.SimpleNamespace(kind=events.POST_COPY_RECOVERED)
    m.migration_event(record(), event)
    m.migration_event(record(), types.SimpleNamespace(kind=events.PROGRESS))
    found = exported(m)
    assert value(found, "migplane_escalations_total", escalation="raise-downtime") == 2
    assert value(found, "migplane_escalations_total", escalation="auto-converge") == 1
    assert value(found, "migplane_escalations_total", escalation="post-copy") == 1
    assert value(found, "migplane_postcopy_recoveries_total") == 1


def test_bytes_per_plane_histogram_takes_both_directions():
    m = metrics.AgentMetrics()
    m.migration_finished(record(traffic={"planes": {
        "migration": {"tx_bytes": 300 << 20, "rx_bytes": 1 << 20},
        "management": {"tx_bytes": 1000, "rx_bytes": 2000}}}))
    found = exported(m)
    assert value(found, "migplane_migration_plane_bytes_sum", plane="migration") == \
        301 << 20
    assert value(found, "migplane_migration_plane_bytes_sum", plane="management") == 3000


class Counters:
    def __init__(self):
        self.now = {"mig0": (0, 0), "mgmt0": (0, 0), "lo": (0, 0)}

    def counters(self):
        return dict(self.now)

    def add(self, ifname, tx, rx=0):
        t, r = self.now[ifname]
        self.now[ifname] = (t + tx, r + rx)


def test_overlapping_transfers_count_an_interfaces_bytes_once():
    facts = Counters()
    meter = metrics.PlaneMeter(facts)
    facts.add("mig0", 50)                      # before any transfer: not counted
    meter.start("m1", {"mig0": "migration", "mgmt0": "management"})
    facts.add("mig0", 100, 7)
    meter.start("m2", {"mig0": "migration"})
    facts.add("mig0", 100)
    facts.add("lo", 999)                       # no plane: not counted
    assert meter.totals()[("migration", "tx")] == 200   # live, during the transfers
    meter.stop("m1")
    facts.add("mig0", 10)
    meter.stop("m2")
    facts.add("mig0", 1000)                    # after: not counted
    meter.stop("m2")                           # twice: no effect
    assert meter.totals() == {("migration", "tx"): 210, ("migration", "rx"): 7}
    meter.start("m3", {"mgmt0": "management"})
    facts.add("mgmt0", 5)
    assert meter.totals()[("management", "tx")] == 5
    assert meter.totals()[("migration", "tx")] == 210


def test_slots_queue_and_evacuations_are_read_when_scraped():
    def evacuation(*statuses):
        guests = [{"name": "g%d" % i, "status": s} for i, s in enumerate(statuses)]
        return types.SimpleNamespace(to_dict=lambda events=True: {"guests": guests})

    agent = types.SimpleNamespace(
        registry=types.SimpleNamespace(all=lambda: [
            types.SimpleNamespace(status=s, instance=i, verdict=v, split_released=r)
            for s, i, v, r in (("queued", "a", None, False), ("queued", "b", None, False),
                               ("running", "c", None, False),
                               ("completed", "d", "completed", False),
                               ("failed", "e", "split", False),
                               ("failed", "e", "split", False),
                               ("failed", "f", "split", True))]),
        slots=types.SimpleNamespace(running=3, leases=list),
        settings=types.SimpleNamespace(concurrency=types.SimpleNamespace(max_concurrent=4)),
        evacuations=types.SimpleNamespace(active=lambda: [
            evacuation("completed", "running", "pending", "failed")]))
    m = metrics.AgentMetrics()
    m.agent = agent
    found = exported(m)
    assert value(found, "migplane_slots_in_use") == 3
    assert value(found, "migplane_slots_limit") == 4
    assert value(found, "migplane_migrations_queued") == 2
    assert value(found, "migplane_migrations_running") == 1
    assert value(found, "migplane_guests_split") == 1   # e; f was released
    assert value(found, "migplane_evacuations_in_progress") == 1
    assert value(found, "migplane_evacuation_guests_left") == 2


def test_a_destination_counts_the_interfaces_of_its_inbound_and_own_addresses():
    interfaces = [
        {"ifname": "lo", "addresses": [{"address": "127.0.0.1"}]},
        {"ifname": "mgmt0", "addresses": [{"address": "192.0.2.12"}]},
        {"ifname": "mig0", "addresses": [{"address": "198.51.100.12"},
                                         {"address": "2001:db8:2::11"}]}]
    assert metrics.incoming_planes(interfaces, "198.51.100.12", "192.0.2.12") == {
        "mgmt0": "management", "mig0": "migration"}
    # no inbound address: the data rides the management plane's interface
    assert metrics.incoming_planes(interfaces, None, "192.0.2.12") == {
        "mgmt0": "management"}


def test_an_incoming_migration_counts_while_its_slot_is_held():
    facts = Counters()
    m = metrics.AgentMetrics(facts=facts)
    m.incoming_started("m9", {"mig0": "migration"})
    facts.add("mig0", 0, 400)
    m.forget_expired({"m9"})                    # still leased: still counted
    facts.add("mig0", 0, 100)
    assert m.planes.totals() == {("migration", "tx"): 0, ("migration", "rx"): 500}
    m.forget_expired(set())                     # its slot expired: counting stops
    facts.add("mig0", 0, 1000)
    assert m.planes.totals()[("migration", "rx")] == 500
    assert not m.planes.active()


def test_the_destination_counts_while_the_source_holds_its_slot(pair, client,
                                                                monkeypatch):
    a, b = pair
    started = []
    count = b.agent.metrics.incoming_started
    monkeypatch.setattr(b.agent.metrics, "incoming_started",
                        lambda mid, planes: (started.append((mid, planes)),
                                             count(mid, planes)))
    migration_id = client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"url": b.url}})["id"]
    testing.wait_for(client(a), migration_id)
    # host-b's inbound address 198.51.100.12 is on its mig0
    assert started == [(migration_id, {"mig0": "migration"})]
    assert not b.agent.metrics.planes.active()
    assert not a.agent.metrics.planes.active()


def test_the_served_certificates_expiry_is_a_gauge(pair):
    a, _ = pair
    found = scrape(a)
    expiry = value(found, "migplane_agent_certificate_expiry_timestamp_seconds")
    assert expiry == a.agent.certificate.not_after
    assert expiry > 0
