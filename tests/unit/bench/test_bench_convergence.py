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


class _Watcher:
    """Ticks of a guest writing 4 MiB/s at rest and 1 MiB/s while it moved."""

    def __init__(self):
        from migplane.lab.console import Tick

        self.ticks_ = []
        written = 0.0
        for i in range(200):            # one tick every 0.1 s, 20 s
            t = i * 0.1
            written += 0.1 * (1.0 if 10.0 <= t < 15.0 else 4.0)
            passes, rest = divmod(written, 16)
            self.ticks_.append(Tick("host-a" if t < 15 else "host-b", t, t, "b" * 16, i,
                                    i * 100, int(passes), 0, False,
                                    int(rest * (1 << 20) / 4)))

    def work_rate(self, dirty_mib, start, end):
        from migplane.lab.console import ConsoleWatcher

        return ConsoleWatcher.work_rate(self, dirty_mib, start, end)

    def ticks(self):
        return self.ticks_


def test_the_guests_work_is_measured_against_itself_at_rest():
    found = convergence.guest_work(_Watcher(), 16, 10.0, 15.0)
    assert abs(found["rest_mib_s"] - 4.0) < 0.5
    assert abs(found["work_mib_s"] - 1.0) < 0.3
    assert 0.15 < found["work_share"] < 0.35


def test_no_post_copy_runs_only_at_1x_and_gets_its_column(synthetic_results):
    assert convergence.tools_at(1.0)[-1] == "no-postcopy"
    assert "no-postcopy" not in convergence.tools_at(2.0)
    synthetic_results["targets"] = targets.evaluate(synthetic_results)
    text = report.render(synthetic_results)
    assert "default, no post-copy" in text
    assert schema.validate(synthetic_results) == []


def test_the_pause_the_guest_felt_is_its_console_gap_at_the_change_of_host():
    # _Watcher's guest changes host at 15 s; its ticks come every 0.1 s
    from migplane.lab.console import ConsoleWatcher

    watcher = _Watcher()
    watcher.gaps = lambda since=None: ConsoleWatcher.gaps(watcher, since)
    watcher.handover = lambda since=None: ConsoleWatcher.handover(watcher, since)
    assert convergence.felt_pause_ms(watcher, 5.0) == 100
    assert convergence.felt_pause_ms(watcher, 16.0) is None   # no change of host since


def test_the_handover_cost_compares_pre_copy_completions_with_bare_virsh(
        synthetic_results):
    part = synthetic_results["convergence"]
    felt = {"virsh": 120, "static": 340, "default": 360}
    for run in part["runs"]:
        run["felt_pause_ms"] = felt[run["tool"]] if run["tool"] in felt else None
    part["summary"] = convergence.summarize(part["runs"])
    text = "\n".join(convergence.report(synthetic_results))
    # virsh completed in pre-copy at 0.25x and 0.5x; the default in post-copy from 1x
    assert "virsh 120/120 ms (2)" in text and "static 340/340 ms (2)" in text
    assert "default 360/360 ms (2)" in text and "felt 360 ms" in text
    assert schema.validate(dict(synthetic_results,
                                targets=targets.evaluate(synthetic_results))) == []
    # no completion by bare virsh in the run: nothing to compare with
    assert convergence.handover_cost([r for r in part["runs"] if r["tool"] != "virsh"]) == []


def _ticks(path, first, count, every_s, words_per_tick=1 << 16):
    """Append ``count`` MPTICK lines (with ``pos``) to ``path``, one every ``every_s``."""
    import time

    for n in range(first, first + count):
        with open(path, "a") as f:
            f.write("MPTICK boot=%s n=%d ms=%d pass=0 bad=0 pos=%d\n"
                    % ("b" * 16, n, 20 * n, n * words_per_tick))
        time.sleep(every_s)


def test_what_the_guest_felt_waits_for_its_first_tick_on_the_destination(
        tmp_path, monkeypatch):
    # A paused handover resumes the destination at the very end of the run: the
    # run ends before the destination's first tick is printed and read.
    import threading
    import time

    from migplane.lab.console import ConsoleWatcher

    monkeypatch.setattr(convergence, "REST_S", 0.2)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.touch()
    b.touch()
    with ConsoleWatcher({"host-a": a, "host-b": b}, poll_s=0.01) as w:
        _ticks(a, 0, 30, 0.02)                      # at rest, then moving
        start = time.monotonic() - 0.1
        _ticks(a, 30, 5, 0.02)
        w.wait_for(lambda w: len(w.ticks("host-a")) == 35, 10, "the source's ticks")
        end = time.monotonic()                      # the run returned; B still paused
        later = threading.Thread(target=lambda: (time.sleep(0.3), _ticks(b, 35, 3, 0.02)))
        later.start()
        try:
            found = convergence.what_the_guest_felt(w, 16, start, end, "host-b")
        finally:
            later.join()
    assert found["felt_pause_ms"] is not None and found["felt_pause_ms"] >= 250
    assert found["work_mib_s"] is not None and found["work_share"] is not None


def test_what_the_guest_felt_gives_up_on_a_guest_that_does_not_tick(tmp_path):
    import time

    from migplane.lab.console import ConsoleWatcher

    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.touch()
    with ConsoleWatcher({"host-a": a, "host-b": b}, poll_s=0.01) as w:
        start = time.monotonic()
        _ticks(a, 0, 3, 0.01)
        w.wait_for(lambda w: len(w.ticks("host-a")) == 3, 10, "the source's ticks")
        end = time.monotonic()
        found = convergence.what_the_guest_felt(w, 16, start, end, "host-b", wait_s=0.3)
    assert found["felt_pause_ms"] is None and found["work_share"] is None
