"""The issue's targets, evaluated on synthetic results."""

import pytest

from migplane.bench import evacuation
from migplane.bench import stats
from migplane.bench import targets

from .conftest import EVAC_CFG


def _by_id(results):
    return {t["id"]: t for t in targets.evaluate(results)}


def test_every_target_of_a_full_run(synthetic_results):
    got = _by_id(synthetic_results)
    assert set(got) == {
        "isolation_quiet_c1", "isolation_vs_unsplit_c1", "isolation_quiet_c4",
        "isolation_vs_unsplit_c4", "plane_share", "wall_ratio_idle", "wall_ratio_dirtying",
        "goodput_idle", "evacuation_planner", "evacuation_fastest", "evacuation_limit",
        "evacuation_intact", "convergence_default", "convergence_downtime",
        "convergence_intact", "convergence_vs_static"}
    for t in got.values():
        assert t["met"] in (True, False)
        assert t["measured"] and t["target"] and t["what"]


def test_figures_and_verdicts(synthetic_results):
    got = _by_id(synthetic_results)
    summary = synthetic_results["isolation"]["summary"]["c1"]
    assert got["isolation_quiet_c1"]["met"] is True
    assert got["isolation_quiet_c1"]["value"] == summary["split"]["p99_ms"]
    # every figure the old split-vs-virsh target reported is still there
    measured = got["isolation_quiet_c1"]["measured"]
    assert "virsh %.2f ms" % summary["virsh"]["p99_ms"] in measured
    assert "split × %.2f of virsh" % (summary["split"]["p99_ms"]
                                      / summary["virsh"]["p99_ms"]) in measured
    assert got["isolation_vs_unsplit_c1"]["value"] > 10
    assert got["plane_share"]["met"] is True and got["plane_share"]["value"] > 0.99
    assert got["wall_ratio_idle"]["met"] is True
    planner = got["evacuation_planner"]
    assert planner["value"] == pytest.approx(50.2 / 48.318, abs=1e-3) and planner["met"]
    assert "median of 3 repeat(s)" in planner["what"]
    assert "(repeats 1.031–1.066; × 1.086 of the bytes the interface counted)" \
        in planner["measured"]
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
    assert got["isolation_quiet_c1"]["met"] is False          # 5 > 0.36 + 2
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
    del r["isolation"]["summary"]["c1"]["baseline"]
    for run in r["evacuation"]["runs"]:
        run["ratio_to_ideal"] = None
    r["evacuation"]["ways"]["planner"]["ratio_to_ideal"] = {"median": None, "min": None,
                                                           "max": None, "n": 0}
    got = _by_id(r)
    assert got["isolation_quiet_c4"]["met"] is True      # virsh is only alongside
    assert "bare virsh n/a ms (n/a; split × n/a of virsh)" in got["isolation_quiet_c4"][
        "measured"]
    assert got["isolation_quiet_c1"]["met"] is None      # no baseline, no verdict
    assert got["evacuation_planner"]["met"] is None


def test_parts_not_run_give_no_targets():
    assert targets.evaluate({}) == []
    assert targets.evaluate({"isolation": None, "efficiency": {"kinds": {}},
                             "evacuation": None}) == []
    assert targets.evaluate({"isolation": {"summary": {}}}) == []


def _summary(baseline_windows, split, virsh=None, unsplit=None):
    """An isolation summary: the baseline's per-window p99s and pooled p99s."""
    def scenario(p99):
        return {"p99_ms": p99, "p99_ms_min": p99, "p99_ms_max": p99, "runs": 3}
    base = {"p99_ms": sorted(baseline_windows)[len(baseline_windows) // 2],
            "p99_ms_min": min(baseline_windows), "p99_ms_max": max(baseline_windows),
            "runs": len(baseline_windows)}
    per = {"baseline": base, "split": scenario(split)}
    if virsh is not None:
        per["virsh"] = scenario(virsh)
    if unsplit is not None:
        per["unsplit"] = scenario(unsplit)
    return {"isolation": {"summary": {"c1": per}}}


def _verdicts(results):
    got = _by_id(results)
    return got["isolation_quiet_c1"]["met"], got["isolation_vs_unsplit_c1"]["met"]


def test_issue_12_rerun_is_not_flipped_by_noise():
    """The committed run (0.29 vs virsh 0.32 ms) met the old "≤ 1.1 × virsh"; a rerun of
    the same code gave 0.45 vs 0.40 ms (× 1.13, "not met") with a baseline of 0.53 ms.
    Both are the same verdict under the restated rule."""
    committed = _summary([0.32, 0.3359, 0.337], split=0.29, virsh=0.32, unsplit=29.6)
    rerun = _summary([0.45, 0.53, 0.55], split=0.45, virsh=0.40, unsplit=30.0)
    assert _verdicts(committed) == _verdicts(rerun) == (True, True)
    # the same rerun, with only the single pooled baseline figure the issue quotes
    rerun_pooled = _summary([0.53], split=0.45, virsh=0.40, unsplit=30.0)
    assert _verdicts(rerun_pooled) == (True, True)


def test_the_rule_still_sees_a_leak():
    """What it must catch: the memory stream on the management link (the unsplit
    windows measured 21–36 ms at 100 Mbit/s), or a split plane that is not quiet."""
    assert _verdicts(_summary([0.32, 0.34], split=21.4, unsplit=29.6)) == (False, False)
    assert _verdicts(_summary([0.32, 0.34], split=2.5, unsplit=29.6)) == (False, True)
    assert _verdicts(_summary([0.32, 0.34], split=2.3, unsplit=29.6)) == (True, True)
    # on a loaded machine (a quick run here: baseline 0.60 ms, bare virsh 1.63 ms) the
    # noise reaches about 1 ms: still quiet
    assert _verdicts(_summary([0.60], split=1.63, unsplit=29.9)) == (True, True)


def test_quiet_limit_widens_by_the_larger_tolerance():
    assert targets.quiet_limit({"p99_ms": 0.3, "p99_ms_max": 0.4}) == (2.4, 0.4)
    assert targets.quiet_limit({"p99_ms": 4.0}) == (8.0, 4.0)     # 2 × > + 2 ms
    assert targets.quiet_limit({}) == (None, None)
    assert targets.quiet_limit(None) == (None, None)


def test_fewer_than_three_planner_repeats_are_judged_on_the_worst():
    def way(ratios, totals):
        return {"ratio_to_ideal": stats.spread(ratios), "total_s": stats.spread(totals),
                "ratio_to_ideal_iface": stats.spread([r * 1.044 for r in ratios]),
                "peak": 3, "limit_respected": True, "all_intact": True}

    ev = {"guests": 16, "limit": 3, "runs": [], "ways": {
        "serial": way([1.8], [300.0]), "naive": way([1.06], [191.0]),
        "planner": way([1.04, 1.07], [185.0, 192.0])}}
    got = {t["id"]: t for t in evacuation.targets(ev)}
    assert got["evacuation_planner"]["value"] == 1.07
    assert got["evacuation_planner"]["met"] is False
    assert "worst of 2 repeat(s)" in got["evacuation_planner"]["what"]
    # the worst planner run (192 s) is slower than naive (191 s): not met
    assert got["evacuation_fastest"]["met"] is False
    assert "planner 192.0 s (worst)" in got["evacuation_fastest"]["measured"]
