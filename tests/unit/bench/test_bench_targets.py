"""The issue's targets, evaluated on synthetic results."""

from migplane.bench import targets


def _by_id(results):
    return {t["id"]: t for t in targets.evaluate(results)}


def test_every_target_of_a_full_run(synthetic_results):
    got = _by_id(synthetic_results)
    assert set(got) == {
        "isolation_vs_virsh_c1", "isolation_vs_unsplit_c1", "isolation_vs_virsh_c4",
        "isolation_vs_unsplit_c4", "plane_share", "wall_ratio_idle", "wall_ratio_dirtying",
        "goodput_idle", "evacuation", "limit", "intact", "convergence_default",
        "convergence_downtime", "convergence_intact", "convergence_vs_static"}
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
    assert got["evacuation"]["value"] == 1.077 and got["evacuation"]["met"] is True
    assert got["limit"]["value"] == 2 and got["limit"]["met"] is True
    assert got["intact"]["value"] == 12 and got["intact"]["met"] is True


def test_targets_fail_when_figures_are_bad(synthetic_results):
    r = synthetic_results
    r["isolation"]["summary"]["c1"]["split"]["p99_ms"] = 5.0
    r["efficiency"]["kinds"]["idle"]["ratio"]["median"] = 1.3
    r["efficiency"]["kinds"]["idle"]["tools"]["migplane"]["goodput_share_of_link"][
        "median"] = 0.8
    r["scale"]["ratio_to_ideal"] = 1.5
    r["scale"]["peaks"]["host-a"] = 3
    r["scale"]["limit_respected"] = False
    r["scale"]["all_intact"] = False
    r["scale"]["guest_checks"][0]["intact"] = False
    got = _by_id(r)
    assert got["isolation_vs_virsh_c1"]["met"] is False
    assert got["isolation_vs_unsplit_c1"]["met"] is False     # 25 * 1.2 / 5 = 6
    assert got["wall_ratio_idle"]["met"] is False
    assert got["goodput_idle"]["met"] is False
    assert got["evacuation"]["met"] is False
    assert got["limit"]["met"] is False and got["limit"]["value"] == 3
    assert got["intact"]["met"] is False and got["intact"]["value"] == 11


def test_missing_figures_are_not_measured(synthetic_results):
    r = synthetic_results
    del r["isolation"]["summary"]["c4"]["virsh"]
    r["scale"]["ratio_to_ideal"] = None
    got = _by_id(r)
    assert got["isolation_vs_virsh_c4"]["met"] is None
    assert " ms vs n/a ms" in got["isolation_vs_virsh_c4"]["measured"]
    assert got["evacuation"]["met"] is None


def test_parts_not_run_give_no_targets():
    assert targets.evaluate({}) == []
    assert targets.evaluate({"isolation": None, "efficiency": {"kinds": {}},
                             "scale": None}) == []
    assert targets.evaluate({"isolation": {"summary": {}}}) == []
