"""etc/grafana/migplane.json: every panel asks for metrics the agent exports."""

import json
import re
import types
from pathlib import Path

import pytest
from prometheus_client import parser

from migplane.agent import metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "etc" / "grafana" / "migplane.json"
#: What an operator came for: one panel for each.
REQUIRED = {"migplane_plane_bytes_total", "migplane_migrations_finished_total",
            "migplane_migration_downtime_seconds_bucket",
            "migplane_evacuation_guests_left"}


def exported_samples():
    """The sample names of an agent's metrics with every labelled series present."""
    counters = {"mig0": (0, 0)}
    m = metrics.AgentMetrics(facts=types.SimpleNamespace(counters=lambda: dict(counters)))
    for escalation in ("raise-downtime", "post-copy"):
        m.migration_finished(types.SimpleNamespace(
            id="m1", status="completed", created=0.0, finished=1.0, flow=None, options={},
            progress={"downtime_ms": 100},
            traffic={"planes": {"migration": {"tx_bytes": 1, "rx_bytes": 0}}},
            result={"escalations": [{"escalation": escalation}]}))
    m.migration_started(types.SimpleNamespace(flow=None, result=None, options={}))
    m.planes.start("m1", {"mig0": "migration"})
    counters["mig0"] = (10, 10)
    m.agent = types.SimpleNamespace(
        registry=types.SimpleNamespace(all=list),
        slots=types.SimpleNamespace(running=0, leases=list),
        settings=types.SimpleNamespace(concurrency=types.SimpleNamespace(max_concurrent=1)),
        evacuations=types.SimpleNamespace(active=list))
    text = m.exposition().decode()
    return {s.name for f in parser.text_string_to_metric_families(text) for s in f.samples}


def queries():
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return data, found


def test_the_dashboard_is_grafana_json_with_panels_that_query():
    data, found = queries()
    assert data["uid"] == "migplane" and data["panels"]
    titles = [p["title"] for p in data["panels"]]
    assert len(titles) == len(set(titles))
    assert all(p.get("targets") for p in data["panels"]), "a panel without a query"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("title,expr", queries()[1])
def test_every_query_names_an_exported_metric(title, expr):
    names = set(re.findall(r"\bmigplane_[a-z_]+", expr))
    assert names, "%s: %s names no migplane metric" % (title, expr)
    unknown = names - exported_samples()
    assert not unknown, "%s: %s not exported by the agent" % (title, sorted(unknown))


def test_the_operators_questions_have_panels():
    _, found = queries()
    asked = {name for _, expr in found for name in re.findall(r"\bmigplane_[a-z_]+", expr)}
    assert REQUIRED <= asked
