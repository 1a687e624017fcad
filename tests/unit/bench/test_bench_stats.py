"""The benchmark's statistics: percentiles, latency summaries, CPU busy share."""

import pytest

from migplane.bench import stats


def test_percentile_interpolates_like_numpy():
    data = [1, 2, 3, 4]
    assert stats.percentile(data, 0) == 1
    assert stats.percentile(data, 100) == 4
    assert stats.percentile(data, 50) == 2.5
    assert stats.percentile(data, 99) == pytest.approx(3.97)
    assert stats.percentile([7], 99) == 7


def test_percentile_ignores_none_and_handles_empty():
    assert stats.percentile([None, 3, None, 1], 50) == 2
    assert stats.percentile([], 50) is None
    assert stats.percentile([None], 50) is None
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_spread_and_ratio():
    assert stats.spread([3, None, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}
    assert stats.spread([]) == {"median": None, "min": None, "max": None, "n": 0}
    assert stats.ratio(2, 4) == 0.5
    assert stats.ratio(None, 4) is None
    assert stats.ratio(1, 0) is None


def test_in_window_is_inclusive():
    samples = [(0.0, 1), (1.0, 2), (2.0, 3), (3.0, 4)]
    assert stats.in_window(samples, 1.0, 2.0) == [(1.0, 2), (2.0, 3)]


def test_latency_summary_counts_losses_at_the_timeout():
    samples = [(i, 1.0) for i in range(98)] + [(98, None), (99, None)]
    plain = stats.latency_summary(samples)
    assert plain["n"] == 100 and plain["lost"] == 2
    assert plain["p99_ms"] == 1.0 and plain["max_ms"] == 1.0
    counted = stats.latency_summary(samples, lost_ms=5000.0)
    assert counted["max_ms"] == 5000.0
    assert counted["p99_ms"] == 5000.0
    assert counted["p50_ms"] == 1.0


def test_latency_summary_of_nothing():
    summary = stats.latency_summary([])
    assert summary["n"] == 0 and summary["p99_ms"] is None and summary["max_ms"] is None


def test_busy_fraction():
    before = [100, 0, 100, 800, 0, 0, 0, 0]
    after = [200, 0, 200, 1000, 0, 0, 0, 0]     # 200 busy, 200 idle
    assert stats.busy_fraction(before, after) == pytest.approx(0.5)
    assert stats.busy_fraction(before, before) is None
    assert stats.busy_fraction(None, after) is None


def test_read_cpu_times(tmp_path):
    f = tmp_path / "stat"
    f.write_text("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1\n")
    assert stats.read_cpu_times(str(f)) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert stats.read_cpu_times(str(tmp_path / "missing")) is None
    assert len(stats.read_cpu_times()) >= 4
