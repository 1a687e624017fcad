"""The agent load benchmark runs on loopback and reports its figures (not timed here)."""

import json

from migplane.bench import agentload


def test_agentload_reports_stall_and_load_figures(tmp_path, capsys):
    out = tmp_path / "agentload.json"
    assert agentload.main(["--clients", "8", "--requests", "2", "--idle", "2",
                           "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["stall"]["held"] == 6 and figures["stall"]["failures"] == 0
    assert figures["load"]["requests"] == 16 and figures["load"]["failures"] == 0
    assert 0 < figures["load"]["p50_s"] <= figures["load"]["p99_s"] \
        <= figures["load"]["max_s"]
    assert "p99" in capsys.readouterr().out
