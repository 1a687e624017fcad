"""The summaries the parts compute from their records."""

import pytest

from migplane.bench import scenarios


def _run(scenario, mgmt, mig, n=100, conc=1, p99=1.0, start=0.0, end=10.0):
    return {"scenario": scenario, "concurrency": conc, "ok": True, "start": start,
            "end": end, "cpu_busy": 0.5,
            "plane_bytes": {"management": mgmt, "migration": mig},
            "probe": {"n": n, "lost": 0, "p50_ms": p99 / 2, "p99_ms": p99,
                      "max_ms": p99 * 2}}


def test_probe_bytes_are_removed_from_the_management_plane():
    runs = [_run("baseline", 100 * 8000, 0), _run("baseline", 50 * 8000, 0, n=50),
            _run("split", 100 * 8000 + 30_000, 9_970_000),
            _run("unsplit", 60 * 8000 + 10_000_000, 0, n=60)]
    per_sample = scenarios._bytes_per_probe_sample(runs)
    assert per_sample == 8000
    for run in runs:
        scenarios._attribute_bytes(run, per_sample)
    assert runs[0]["migration_bytes"] == {"management": 0, "migration": 0}
    assert runs[0]["migration_plane_share"] is None
    assert runs[2]["migration_bytes"]["management"] == 30_000
    assert runs[2]["migration_plane_share"] == pytest.approx(0.997)
    assert runs[3]["migration_plane_share"] == 0.0
    assert scenarios._bytes_per_probe_sample([runs[2]]) is None


def test_isolation_summary_pools_the_windows():
    runs = [_run("split", 0, 100, start=0.0, end=1.0, p99=1.0),
            _run("split", 0, 100, start=2.0, end=3.0, p99=3.0)]
    for run in runs:
        scenarios._attribute_bytes(run, None)
    samples = [[0.5, 1.0]] * 99 + [[0.6, None]] + [[2.5, 2.0]] * 100 + [[5.0, 99.0]]
    s = scenarios.summarize_isolation(runs, (1, 4), samples)
    assert set(s) == {"c1", "c4"} and s["c4"] == {}
    split = s["c1"]["split"]
    assert split["samples"] == 200 and split["lost"] == 1
    assert split["max_ms"] == scenarios.LOST_MS          # a loss counts as the time-out
    assert split["p50_ms"] == 2.0
    assert (split["p99_ms_min"], split["p99_ms_max"]) == (1.0, 3.0)
    assert split["migration_bytes"] == {"management": 0, "migration": 200}
    assert split["migration_plane_share"] == 1.0


def test_efficiency_pairs_and_tools():
    def rec(tool, pair, wall, job, status="completed"):
        return {"tool": tool, "pair": pair, "wall_s": wall, "status": status,
                "goodput_Bps": 11e6, "job": {"time_elapsed": job, "downtime": 100,
                                             "memory_iteration": 3,
                                             "memory_processed": 250e6},
                "link_use": {"share_of_link": 0.95}}
    migs = [rec("migplane", 0, 10.0, 9000), rec("virsh", 0, 10.0, 9000),
            rec("virsh", 1, 10.0, 9000), rec("migplane", 1, 12.0, 9500),
            rec("migplane", 2, 11.0, 9000), rec("virsh", 2, 1.0, 0, status="failed")]
    s = scenarios.summarize_efficiency(migs, 100e6)
    assert [p["ratio"] for p in s["pairs"]] == [1.0, 1.2]      # pair 2 is incomplete
    assert s["ratio"]["median"] == pytest.approx(1.1)
    mp, vs = s["tools"]["migplane"], s["tools"]["virsh"]
    assert mp["migrations"] == 3 and vs["migrations"] == 2 and vs["failed"] == 1
    assert mp["goodput_share_of_link"]["median"] == pytest.approx(0.88)
    assert mp["sending_share_of_link"]["median"] == 0.95
    assert mp["job_ms"]["max"] == 9500


def test_monitor_overhead_only_counts_migplane():
    migs = [{"tool": "migplane", "monitor": {"monitor_cpu_share": 0.001,
                                             "cpu_ms_per_poll": 0.2, "monitor_cpu_s": 0.01,
                                             "monitor_wall_s": 10.0}},
            {"tool": "migplane", "monitor": None},
            {"tool": "virsh"}]
    out = scenarios.monitor_overhead(migs)
    assert out["migrations"] == 1
    assert out["cpu_share"]["median"] == 0.001 and out["wall_s_total"] == 10.0
    assert scenarios.monitor_overhead([])["cpu_share"]["median"] is None
