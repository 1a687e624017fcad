"""CI's smoke test of the benchmark: a very short run on a real lab produces a
well-formed report (results.json schema, the targets table in REPORT.md, valid
PNG plots). The figures of so short a run mean nothing and are not checked;
the benchmark itself is not a timed test."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from migplane.bench import report
from migplane.bench import schema

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[3]
#: Smaller than --quick: one window per scenario at one concurrency (2: the
#: concurrent path, a superset of the single one), one pair per guest kind, two
#: guests to evacuate three ways, two convergence cells (0.25x: every tool
#: converges by pre-copy, so every convergence target is measured; 2x: virsh
#: and static are aborted at the time limit, the default escalates) of a 32 MiB
#: guest over a 16 MiB/s link. Every
#: part on one lab, one report. About 2.5 minutes on a quiet machine.
SMOKE_ARGS = ["--quick", "--concurrency", "2", "--pairs", "1", "--stamp-mib", "8",
              "--evac-guests", "2", "--evac-limit", "2", "--evac-repeats", "1",
              "--convergence-rates", "0.25,2", "--parts", ",".join(schema.PARTS)]
TIMEOUT = 420


def _png_ok(path):
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    width, height = struct.unpack(">II", data[16:24])
    return width > 100 and height > 100 and data.rstrip(b"\0").endswith(
        b"IEND\xaeB`\x82")


def test_quick_run_writes_a_well_formed_report(lab_env, tmp_path):
    out = tmp_path / "bench"
    lab_name = "b%d" % os.getpid()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cp = subprocess.run(
        # through the operator's command, as the README runs it
        [sys.executable, "-m", "migplane.cli.main", "bench", *SMOKE_ARGS, "--lab-name",
         lab_name,
         "--out", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=str(ROOT))
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert schema.validate(results) == []
    assert results["errors"] == []
    assert results["meta"]["quick"] is True
    for part in results["meta"]["parts"]:
        assert results.get(part), "part %s produced nothing" % part
    assert {r["scenario"] for r in results["isolation"]["runs"]} == set(schema.SCENARIOS)
    assert all(r["ok"] for r in results["isolation"]["runs"])
    assert results["isolation"]["samples"], "the probe recorded nothing"
    evac = results["evacuation"]
    assert [r["way"] for r in evac["runs"]] == ["serial", "naive", "planner"]
    assert all(r["completed"] == 2 and r["limit_respected"] for r in evac["runs"])
    assert all(r["all_intact"] for r in evac["runs"])
    conv = results["convergence"]
    assert [(r["multiple"], r["tool"]) for r in conv["runs"]] == [
        (m, t) for m in (0.25, 2.0) for t in ("virsh", "static", "default")]
    assert all(r["intact"] for r in conv["runs"]), conv["runs"]
    ids = {t["id"] for t in results["targets"]}
    assert {"isolation_quiet_c2", "isolation_vs_unsplit_c2", "plane_share",
            "wall_ratio_idle", "goodput_idle", "evacuation_planner", "evacuation_fastest",
            "evacuation_limit", "evacuation_intact", "convergence_default",
            "convergence_downtime", "convergence_intact", "convergence_vs_static"} <= ids
    assert [t["id"] for t in results["targets"] if t["met"] is None] == []

    text = (out / "REPORT.md").read_text()
    assert report.TARGETS_HEADING in text and report.TARGETS_HEADER in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and (
        "**met**" in ln or "**not met**" in ln)]
    assert len(rows) == len(results["targets"])
    assert "## What the figures mean" in text
    assert "## Convergence" in text and "| 2.0x |" in text

    assert set(results["plots"]) == {"isolation_latency.png", "isolation_timeline.png",
                                     "isolation_cdf.png", "efficiency.png",
                                     "evacuation_serial.png", "evacuation_naive.png",
                                     "evacuation_planner.png", "convergence.png"}
    for name in results["plots"]:
        assert _png_ok(out / name), name
        assert "(%s)" % name in text

    # and nothing of the lab is left behind
    from migplane.lab import Lab
    assert not Lab.exists(lab_name)
