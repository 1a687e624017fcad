"""The command line: presets, overrides, --render-only."""

import json

import pytest

from migplane.bench import main as bench_main
from migplane.bench import schema


def _cfg(*argv):
    return bench_main.config_from_args(bench_main.parser().parse_args(list(argv)))


def test_full_and_quick_presets():
    full, quick = _cfg(), _cfg("--quick")
    assert not full.quick and quick.quick
    assert full.concurrency == quick.concurrency == (1, 4)
    assert full.eff_stamp_mib == 256 and quick.eff_stamp_mib < full.eff_stamp_mib
    assert full.evac_guests == 16 and full.evac_repeats >= 2
    assert quick.evac_guests < full.evac_guests
    assert full.rate == "100mbit" and full.parts == schema.PARTS
    assert "evacuation" in full.parts and "convergence" in full.parts
    assert full.conv_multiples == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert quick.conv_memory_mib < full.conv_memory_mib
    assert _cfg("--convergence-rates", "0.5,2").conv_multiples == (0.5, 2.0)


def test_overrides():
    cfg = _cfg("--quick", "--rate", "50mbit", "--concurrency", "1,2", "--repeats", "2",
               "--pairs", "4", "--stamp-mib", "64", "--evac-guests", "9",
               "--evac-limit", "3", "--evac-repeats", "5", "--parts", "evacuation,overhead",
               "--lab-name", "x1")
    assert cfg.quick and cfg.rate == "50mbit" and cfg.concurrency == (1, 2)
    assert cfg.repeats_c1 == cfg.repeats_cn == 2
    assert cfg.pairs_idle == cfg.pairs_dirty == 4
    assert cfg.eff_stamp_mib == 64 and cfg.evac_guests == 9 and cfg.evac_limit == 3
    assert cfg.evac_repeats == 5
    assert cfg.parts == ("evacuation", "overhead") and cfg.lab_name == "x1"


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench_main.parser().parse_args(["--parts", "isolation,bogus"])
    assert "unknown part(s) bogus" in capsys.readouterr().err


def test_render_only(synthetic_results, tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps(synthetic_results))
    assert bench_main.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "REPORT.md").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["targets"] and data["plots"]


def test_render_only_without_results(tmp_path, capsys):
    assert bench_main.main(["--render-only", "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_overhead_only_needs_no_lab(tmp_path):
    """The one part that runs anywhere: the report says the rest was not run."""
    rc = bench_main.main(["--parts", "overhead", "--quick", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["overhead"]["micro"]["uri_resolve_split"]["ops_per_s"] > 0
    assert data["overhead"]["monitor"]["migrations"] == 0
    assert data["meta"]["parts"] == ["overhead"]
    assert [t["met"] for t in data["targets"]] == [None]
    assert "## 4. Overhead" in (tmp_path / "REPORT.md").read_text()


def test_finite_replaces_nan():
    assert bench_main._finite({"a": [float("nan"), 1.0, float("inf")], "b": (2,)}) == {
        "a": [None, 1.0, None], "b": [2]}


def test_dumps_keeps_number_lists_on_one_line():
    data = {"b": [[1.5, None], [2, 3.25]], "a": {"s": "x [1,  2]", "e": [], "o": {}},
            "t": [True, "y"], "n": 1}
    text = bench_main.dumps(data)
    assert json.loads(text) == data
    assert "[1.5, null]" in text
    assert '"s": "x [1,  2]"' in text            # strings are left alone
    assert text.index('"a"') < text.index('"b"') < text.index('"n"')
    assert '"e": []' in text and '"o": {}' in text
    lines = text.splitlines()
    assert "  [1.5, null]," in lines and "  [2, 3.25]" in lines
    with pytest.raises(ValueError):
        bench_main.dumps({"x": float("nan")})


def test_a_lab_that_does_not_come_up_still_gives_a_report(tmp_path, monkeypatch):
    from migplane.bench import labrun

    def broken_up(self):
        raise RuntimeError("no libvirtd here")

    monkeypatch.setattr(labrun.BenchLab, "up", broken_up)
    monkeypatch.setattr(bench_main.os, "geteuid", lambda: 0)
    rc = bench_main.main(["--quick", "--parts", "evacuation,overhead", "--out",
                          str(tmp_path)])
    assert rc == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["errors"] == [{"part": "lab", "error": "RuntimeError: no libvirtd here"}]
    assert "evacuation" not in data and data["overhead"]["micro"]
    assert "Parts that failed:** lab: RuntimeError: no libvirtd here" in (
        tmp_path / "REPORT.md").read_text()


def test_the_lab_needs_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_main.os, "geteuid", lambda: 1000)
    assert bench_main.main(["--quick", "--out", str(tmp_path)]) == 2
    assert "run it as root" in capsys.readouterr().err
