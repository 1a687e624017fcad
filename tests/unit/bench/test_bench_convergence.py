"""The convergence part's summary, targets and report (pure), on synthetic runs."""

from migplane.bench import convergence
from migplane.bench import report
from migplane.bench import schema
from migplane.bench import targets


def _by_id(results):
    return {t["id"]: t for t in targets.evaluate(results)}


def test_targets_met_when_default_converges_everywhere(synthetic_results):
    found = _by_id(synthetic_results)
    assert found["convergence_default"]["met"] is True
    assert found["convergence_intact"]["met"] is True
    assert found["convergence_downtime"]["met"] is True
    assert found["convergence_downtime"]["value"] == 300
    assert found["convergence_vs_static"]["met"] is True
    assert schema.validate(dict(synthetic_results, targets=list(found.values()))) == []


def test_a_slow_or_failed_default_cell_is_not_met(synthetic_results):
    part = synthetic_results["convergence"]
    for run in part["runs"]:
        if run["tool"] == "default" and run["multiple"] == 4.0:
            run.update(converged=False, status="aborted", ratio=5.0)
        if run["tool"] == "default" and run["multiple"] == 0.25:
            run["wall_s"] = 2 * run["wall_s"]  # slower than static
    part["summary"] = convergence.summarize(part["runs"])
    found = _by_id(synthetic_results)
    assert found["convergence_default"]["met"] is False
    assert "4.0x: not converged" in found["convergence_default"]["measured"]
    assert found["convergence_vs_static"]["met"] is False
    assert "0.25x" in found["convergence_vs_static"]["measured"]


def test_report_section_has_a_row_per_rate(synthetic_results):
    synthetic_results["targets"] = targets.evaluate(synthetic_results)
    text = report.render(synthetic_results)
    assert "## Convergence" in text
    assert "| 4.0x | not converged | not converged | " in text
    assert "post-copy" in text


def test_schema_catches_a_bad_run(synthetic_results):
    synthetic_results["targets"] = targets.evaluate(synthetic_results)
    synthetic_results["convergence"]["runs"][0]["tool"] = "curl"
    assert any("convergence.runs[0].tool" in p for p in schema.validate(synthetic_results))
