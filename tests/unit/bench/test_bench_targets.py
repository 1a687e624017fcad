"""The issue's targets, evaluated on synthetic results."""

import pytest

from migplane.bench import evacuation
from migplane.bench import targets

from .conftest import EVAC_CFG


def _by_id(results):
    return {t["id"]: t for t in targets.evaluate(results)}


def test_every_target_of_a_full_run(synthetic_results):
    got = _by_id(synthetic_results)
    assert set(got) == {
        "isolation_vs_virsh_c1", "isolation_vs_unsplit_c1", "isolation_vs_virsh_c4",
        "isolation_vs_unsplit_c4", "plane_share", "wall_ratio_idle", "wall_ratio_dirtying",
        "goodput_idle", "evacuation_planner", "evacuation_fastest", "evacuation_limit",
        "evacuation_intact"}
    for t in got.values():
        assert t["met"] in (True, False)
        assert t["measured"] and t["target"] and t["what"]


def test_figures_and_verdicts(synthetic_results):
    got = _by_id(synthetic_results)
    summary = synthetic_results["isolation"]["summary"]["c1"]
    assert got["isolation_vs_virsh_c1"]["met"] is True
    assert got["isolation_vs_virsh_c1"]["value"] == summary["split"]["p99_ms"] / summary[
        "virsh"]["p99_ms"]
    assert got["isolation_vs_unsplit_c1"]["value"] > 10
    assert got["plane_share"]["met"] is True and got["plane_share"]["value"] > 0.99
    assert got["wall_ratio_idle"]["met"] is True
    planner = got["evacuation_planner"]
    assert planner["value"] == pytest.approx(50.2 / 48.318, abs=1e-3) and planner["met"]
    assert "median of 3 repeat(s)" in planner["what"]
    assert "(repeats 1.031–1.066)" in planner["measured"]
    assert got["evacuation_fastest"]["met"] is True
    assert "planner 50.2 s (median) vs naive 58.0 s, serial 70.0 s" == \
        got["evacuation_fastest"]["measured"]
    assert got["evacuation_limit"]["value"] == 3 and got["evacuation_limit"]["met"] is True
    assert got["evacuation_intact"]["value"] == 60 and got["evacuation_intact"]["met"]


def test_targets_fail_when_figures_are_bad(synthetic_results):
    r = synthetic_results
    r["isolation"]["summary"]["c1"]["split"]["p99_ms"] = 5.0
    r["efficiency"]["kinds"]["idle"]["ratio"]["median"] = 1.3
    r["efficiency"]["kinds"]["idle"]["tools"]["migplane"]["goodput_share_of_link"][
        "median"] = 0.8
    ev = r["evacuation"]
    for run in ev["runs"]:
        if run["way"] == "planner":
            run["total_s"] = 80.0
            run["ratio_to_ideal"] = 80.0 / run["ideal_s"]
    ev["runs"][0]["peaks"]["host-a"] = 4
    ev["runs"][0]["limit_respected"] = False
    ev["runs"][1]["guest_checks"][0]["intact"] = False
    ev["runs"][1]["all_intact"] = False
    ev.update(evacuation.summarize(ev["runs"], EVAC_CFG, ev["destinations"],
                                   ev["link_rate_bps"]))
    got = _by_id(r)
    assert got["isolation_vs_virsh_c1"]["met"] is False
    assert got["isolation_vs_unsplit_c1"]["met"] is False     # 25 * 1.2 / 5 = 6
    assert got["wall_ratio_idle"]["met"] is False
    assert got["goodput_idle"]["met"] is False
    assert got["evacuation_planner"]["met"] is False
    assert got["evacuation_fastest"]["met"] is False
    assert got["evacuation_limit"]["met"] is False and got["evacuation_limit"]["value"] == 4
    assert got["evacuation_intact"]["met"] is False
    assert got["evacuation_intact"]["value"] == 59


def test_missing_figures_are_not_measured(synthetic_results):
    r = synthetic_results
    del r["isolation"]["summary"]["c4"]["virsh"]
    for run in r["evacuation"]["runs"]:
        run["ratio_to_ideal"] = None
    r["evacuation"]["ways"]["planner"]["ratio_to_ideal"] = {"median": None, "min": None,
                                                           "max": None, "n": 0}
    got = _by_id(r)
    assert got["isolation_vs_virsh_c4"]["met"] is None
    assert " ms vs n/a ms" in got["isolation_vs_virsh_c4"]["measured"]
    assert got["evacuation_planner"]["met"] is None


def test_parts_not_run_give_no_targets():
    assert targets.evaluate({}) == []
    assert targets.evaluate({"isolation": None, "efficiency": {"kinds": {}},
                             "evacuation": None}) == []
    assert targets.evaluate({"isolation": {"summary": {}}}) == []
