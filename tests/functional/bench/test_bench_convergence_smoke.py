"""CI's smoke test of the benchmark's convergence part, run alone: two cells
(0.5x and 2x the link) of a 32 MiB guest over a 16 MiB/s link (the quick
preset: runs that do not converge are aborted after 10 s), every tool, a
well-formed report.
The figures of so short a run are not checked (a benchmark, not a timed test);
only that each run is recorded and every guest stayed intact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migplane.bench import schema

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[3]
ARGS = ["--quick", "--parts", "convergence", "--convergence-rates", "0.5,2"]
TIMEOUT = 300


def test_convergence_part_alone_writes_a_well_formed_report(lab_env, tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cp = subprocess.run(
        [sys.executable, "-m", "migplane.bench", *ARGS, "--lab-name",
         "bc%d" % os.getpid(), "--out", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=str(ROOT))
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert schema.validate(results) == [] and results["errors"] == []
    conv = results["convergence"]
    assert [(r["multiple"], r["tool"]) for r in conv["runs"]] == [
        (m, t) for m in (0.5, 2.0) for t in ("virsh", "static", "default")]
    assert all(r["intact"] for r in conv["runs"]), conv["runs"]
    assert {t["id"] for t in results["targets"]} >= {
        "convergence_default", "convergence_downtime", "convergence_intact",
        "convergence_vs_static"}
    report = (out / "REPORT.md").read_text()
    assert "## Convergence" in report and "| 2.0x |" in report
    assert "convergence.png" in results["plots"]
