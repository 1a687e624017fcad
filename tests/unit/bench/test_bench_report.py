"""REPORT.md, the plots and results.json from synthetic results."""

import json
import struct
from pathlib import Path

import pytest

from migplane.bench import evacuation
from migplane.bench import main as bench_main
from migplane.bench import plots
from migplane.bench import report
from migplane.bench import schema
from migplane.bench import targets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG, checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "%s is not a PNG" % path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_has_the_targets_table_and_every_part(synthetic_results):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    r["plots"] = ["isolation_latency.png", "efficiency.png", "evacuation_planner.png"]
    text = report.render(r)
    assert text.startswith("# migplane benchmark")
    assert report.TARGETS_HEADING in text and report.TARGETS_HEADER in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ("**met**" in ln
                                                                       or "not met" in ln)]
    assert len(rows) == len(r["targets"])
    for heading in ("## What the figures mean", "## 1. Isolation", "## 2. Efficiency",
                    "## 3. Evacuation", "## 4. Overhead", "## Noise", "## Reproduce"):
        assert heading in text
    assert "(isolation_latency.png)" in text and "(efficiency.png)" in text
    assert "(isolation_cdf.png)" not in text       # not in r["plots"]
    assert "100mbit" in text and "python -m migplane.bench" in text


def test_report_says_what_failed_and_what_was_not_measured(synthetic_results):
    r = synthetic_results
    r["efficiency"] = None
    r["errors"] = [{"part": "efficiency", "error": "RuntimeError: boom"}]
    r["isolation"]["summary"]["c1"]["split"]["p99_ms"] = 9.0
    r["targets"] = targets.evaluate(r)
    text = report.render(r)
    assert "Parts that failed:** efficiency: RuntimeError: boom" in text
    assert "**not met**" in text
    assert "## 2. Efficiency" not in text
    assert "Targets not met: isolation_quiet_c1" in text


def test_report_flags_cpu_bound_windows(synthetic_results):
    r = synthetic_results
    r["isolation"]["runs"][1]["cpu_busy"] = 0.97
    r["targets"] = targets.evaluate(r)
    text = report.render(r)
    # the link was held at 95 % while sending: the CPU did not set the pace
    assert "**CPU:** 1 of 33 measurement windows" in text   # 16 + 12 + 5 evacuations
    assert "the link, not the CPU, set the pace" in text
    for kind in r["efficiency"]["kinds"].values():
        for m in kind["migrations"]:
            m["link_use"]["share_of_link"] = 0.6
    text = report.render(r)
    assert "**CPU:** 1 measurement window(s)" in text
    assert r["isolation"]["runs"][1]["id"] in text
    assert "times say more about the CPU than about the link" in text


def test_report_without_busy_windows(synthetic_results):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    assert "No measurement window had the CPUs more than 90 % busy" in report.render(r)


def test_plots_are_valid_pngs(synthetic_results, tmp_path):
    names = plots.render_all(synthetic_results, str(tmp_path))
    assert set(names) == bench_main.plots_names()
    for name in names:
        w, h = png_size(tmp_path / name)
        assert w > 400 and h > 200


def test_plots_skip_parts_without_data(tmp_path):
    r = {"meta": {"rate": "100mbit", "rate_bps": 1e8}, "isolation": None,
         "efficiency": None, "evacuation": None}
    assert plots.render_all(r, str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []


def test_render_writes_everything_and_validates(synthetic_results, tmp_path):
    (tmp_path / "isolation_cdf.png").write_bytes(b"stale")
    (tmp_path / "keep.png").write_bytes(b"not ours")
    problems = bench_main.render(synthetic_results, tmp_path, log=lambda m: None)
    assert problems == []
    data = json.loads((tmp_path / "results.json").read_text())
    assert schema.validate(data) == []
    assert data["plots"] and all((tmp_path / p).exists() for p in data["plots"])
    png_size(tmp_path / "isolation_cdf.png")        # replaced
    assert (tmp_path / "keep.png").read_bytes() == b"not ours"
    assert report.TARGETS_HEADER in (tmp_path / "REPORT.md").read_text()


def test_render_without_matplotlib_still_writes_the_report(synthetic_results, tmp_path,
                                                          monkeypatch):
    import sys

    import migplane.bench

    monkeypatch.setitem(sys.modules, "migplane.bench.plots", None)
    monkeypatch.delattr(migplane.bench, "plots", raising=False)
    problems = bench_main.render(synthetic_results, tmp_path, log=lambda m: None)
    assert any("pip install matplotlib" in p for p in problems)
    assert json.loads((tmp_path / "results.json").read_text())["plots"] == []
    assert report.TARGETS_HEADER in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("mutate, problem", [
    (lambda r: r.update(schema="other/1"), "schema"),
    (lambda r: r["meta"].pop("rate_bps"), "meta: missing rate_bps"),
    (lambda r: r["targets"][0].update(met="yes"), "targets[0].met"),
    (lambda r: r.update(targets=[]), "targets: not a non-empty list"),
    (lambda r: r["isolation"]["runs"][0].update(scenario="odd"), "isolation.runs[0].scenario"),
    (lambda r: r["isolation"]["runs"][0].update(start=9e9), "isolation.runs[0]"),
    (lambda r: r["isolation"]["samples"].append([1.0]), "isolation.samples"),
    (lambda r: r["efficiency"]["kinds"]["idle"]["tools"].pop("virsh"), "efficiency.kinds"),
    (lambda r: r["evacuation"]["runs"][0].update(peaks={"host-a": "x"}),
     "evacuation.runs[0].peaks"),
    (lambda r: r["evacuation"]["runs"][1].update(way="odd"), "evacuation.runs[1].way"),
    (lambda r: r["overhead"]["micro"]["uri_resolve_split"].pop("ops_per_s"),
     "overhead.micro"),
    (lambda r: r.update(plots=["a.svg"]), "plots"),
])
def test_schema_catches_malformed_results(synthetic_results, mutate, problem):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    assert schema.validate(r) == []
    mutate(r)
    problems = schema.validate(r)
    assert any(p.startswith(problem) for p in problems), problems


def test_schema_of_a_non_object():
    assert schema.validate([]) == ["results: not an object"]


def test_link_idle_counts_gaps_from_the_start_to_the_last_arrival():
    rows = [[0.1, 0, 0.0], [0.2, 0, 0.0], [0.3, 0, 0.0], [0.4, 0, 95.0], [0.5, 0, 2.0],
            [0.6, 0, 1.0], [0.7, 0, 1.0], [0.8, 0, 1.0], [0.9, 0, 96.0], [1.0, 0, 0.0],
            [1.1, 0, 97.0], [1.2, 0, 0.0], [1.3, 0, 0.0]]
    idle, gaps = evacuation.link_idle(rows, 100e6, total_s=1.1)
    assert idle == pytest.approx(0.8)
    assert gaps == [[0.0, 0.3], [0.4, 0.4]]   # the 0.1 s dip at 1.0 is no gap
    assert evacuation.link_idle([], 100e6) == (0.0, [])


def test_evacuation_section_compares_the_three_ways(synthetic_results):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    r["plots"] = ["evacuation_serial.png", "evacuation_planner.png"]
    text = report.render(r)
    section = text[text.index("## 3. Evacuation"):text.index("## 4. Overhead")]
    assert "| serial | 1 | 70.0 s |" in section
    assert "| planner | 3 | 50.2 (49.8–51.5) s | 1.039 (1.031–1.066) (1.086 (1.077–1.114)) |" \
        in section
    assert "| 0.8 s (0) | 0.0 / 0.8 / 0.1 s |" in section  # first fixed cost / between / last
    assert "2 lane(s)" not in section and "1 stream(s) on the link" in section
    assert "(evacuation_serial.png)" in section and "(evacuation_naive.png)" not in section
    assert "serial 70.0 s (× 1.45" in text    # the summary sentence


def test_a_broken_results_file_names_the_path_of_each_bad_value(synthetic_results):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    r["isolation"]["runs"][1]["probe"]["p99_ms"] = 3  # open records: unchecked figures
    r["isolation"]["runs"][1]["scenario"] = "odd"
    r["meta"]["quick"] = "yes"
    r["evacuation"]["runs"][0]["peaks"]["host-a"] = "x"
    del r["convergence"]["runs"][0]["tool"]
    assert schema.validate(r) == [
        "convergence.runs[0]: missing tool",
        "evacuation.runs[0].peaks.host-a: not an integer, got 'x'",
        "isolation.runs[1].scenario: not one of baseline, split, unsplit, virsh, got 'odd'",
        "meta.quick: not a boolean, got 'yes'"]


def test_parts_may_add_fields_to_their_records(synthetic_results):
    r = synthetic_results
    r["targets"] = targets.evaluate(r)
    for part in ("evacuation", "convergence", "isolation"):
        r[part]["runs"][0]["a_new_figure"] = {"anything": [1, "two"]}
        r[part]["a_new_summary"] = 1
    r["meta"]["new_meta"] = None
    assert schema.validate(r) == []


def test_the_committed_results_validate_and_render(tmp_path):
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    results = json.loads((repo / "benchmarks" / "results.json").read_text())
    assert schema.validate(results) == []
    assert schema.validate(dict(results, convergence=None)) == []  # a part not run
    shutil.copy(repo / "benchmarks" / "results.json", tmp_path / "results.json")
    done = subprocess.run([sys.executable, "-m", "migplane.bench", "--render-only",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not well formed" not in done.stdout + done.stderr
    assert (tmp_path / "REPORT.md").read_text().startswith("#")
