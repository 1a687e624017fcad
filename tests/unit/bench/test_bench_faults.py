"""The fault matrix's pure parts: strike points, the two-copies checks, the
judgement of a run, the results file and the report (no lab)."""

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migplane.bench import faultrules as rules
from migplane.bench import faults
from migplane.core import units

JOB = {"type": 2, "data_total": 64 * units.MiB}


def sample(t, source="running", destination="paused:migration", **stats):
    return rules.Sample(t, source, destination, dict(JOB, **stats) if stats else {})


# -- strike points -------------------------------------------------------------------

def test_a_random_strike_comes_its_delay_after_the_migration_was_accepted():
    assert rules.strike_time(rules.RANDOM, [], armed_at=10.0, delay_s=2.5) == 12.5


def test_the_switchover_is_the_first_sample_at_or_under_the_threshold():
    samples = [sample(1.0, memory_processed=0, memory_remaining=0),   # counters not yet set
               sample(2.0, memory_processed=30 * units.MiB, memory_remaining=34 * units.MiB),
               sample(3.0, memory_processed=58 * units.MiB, memory_remaining=6 * units.MiB),
               sample(4.0, memory_processed=63 * units.MiB, memory_remaining=1 * units.MiB)]
    assert rules.strike_time(rules.SWITCHOVER, samples[:2], 0.0) is None
    assert rules.strike_time(rules.SWITCHOVER, samples, 0.0) == 3.0


def test_no_job_is_no_switchover():
    idle = rules.Sample(1.0, "running", "absent", {"type": 0, "data_total": 0,
                                                   "memory_remaining": 0})
    assert not rules.at_switchover(idle.stats)
    assert rules.strike_time(rules.SWITCHOVER, [idle], 0.0) is None


def test_the_postcopy_strike_waits_for_the_switch_by_either_sides_reason():
    pre = sample(1.0, data_remaining=40 * units.MiB, memory_processed=24 * units.MiB)
    by_source = rules.Sample(2.0, "paused:postcopy", "paused:migration", {})
    by_destination = rules.Sample(2.0, "paused:migration", "running:postcopy", {})
    assert rules.strike_time(rules.POSTCOPY, [pre], 0.0) is None
    assert rules.strike_time(rules.POSTCOPY, [pre, by_source], 0.0) == 2.0
    assert rules.strike_time(rules.POSTCOPY, [pre, by_destination], 0.0) == 2.0


def test_a_random_postcopy_strike_falls_within_the_predicted_phase():
    samples = [sample(1.0, data_remaining=32 * units.MiB, memory_processed=32 * units.MiB),
               rules.Sample(2.0, "paused:postcopy", "running:postcopy", {})]
    # 32 MiB left at 8 MiB/s: a phase of 4 s; three quarters into it
    assert rules.strike_time(rules.POSTCOPY_RANDOM, samples, 0.0, fraction=0.75,
                             rate_bytes_s=8 * units.MiB) == pytest.approx(5.0)
    lo, hi = rules.POSTCOPY_PHASE_S
    assert rules.postcopy_phase_s(None, 8 * units.MiB) == lo
    assert rules.postcopy_phase_s(10 ** 12, 8 * units.MiB) == hi


def test_an_unknown_strike_point_is_named():
    with pytest.raises(ValueError, match="'sometime'"):
        rules.strike_time("sometime", [], 0.0)


def test_the_phase_at_the_strike():
    samples = [sample(1.0), rules.Sample(2.0, "paused:postcopy", "running:postcopy", {})]
    assert rules.phase_at(samples, 1.5) == "precopy"
    assert rules.phase_at(samples, 2.5) == "postcopy"
    assert rules.phase_at(samples, 2.5, migration_over=True) == "after"


# -- the matrix's cells ----------------------------------------------------------------

def test_each_kind_strikes_only_where_it_means_something():
    cells = rules.cells()
    assert ("random", "abort") in cells and ("postcopy", "abort") not in cells
    assert ("postcopy", "qemu_source") in cells and ("random", "qemu_source") not in cells
    assert ("switchover", "management_outage") in cells
    assert ("armed_switchover", "management_outage") in cells
    assert ("armed_switchover", "qemu_source") not in cells
    assert {s for s, _ in cells} == set(rules.STRIKES)
    assert rules.cells(["switchover"], ["management_outage"]) == [
        ("switchover", "management_outage")]


def test_unknown_kinds_and_strikes_are_named():
    with pytest.raises(ValueError, match="flood"):
        rules.cells(kinds=["flood"])
    with pytest.raises(ValueError, match="never"):
        rules.cells(["never"])


def test_the_schedule_spreads_runs_evenly_over_the_cells():
    cells = rules.cells(["postcopy"])
    order = rules.schedule(2 * len(cells) + 1, cells, random.Random(1))
    counts = {c: order.count(c) for c in cells}
    assert set(counts.values()) <= {2, 3} and sum(counts.values()) == len(order)


# -- verdicts --------------------------------------------------------------------------

@pytest.mark.parametrize("shown,verdict", [
    ({"status": "completed"}, "completed"),
    ({"status": "failed"}, "rolled-back"),
    ({"status": "timed_out"}, "rolled-back"),
    ({"status": "running"}, None),
    ({"status": "failed", "verdict": "unresolved"}, "unresolved"),
    ({"status": "failed", "result": {"verdict": "lost"}}, "lost"),
    ({"status": "split"}, "split"),
    (None, None),
])
def test_the_verdict_a_record_states(shown, verdict):
    assert rules.verdict_of(shown) == verdict


def test_the_verdict_table_is_the_contracts():
    assert rules.VERDICT_CODES == {"completed": 0, "rolled-back": 1, "unresolved": 5,
                                   "postcopy-paused": 6, "lost": 7, "split": 8}


# -- two copies --------------------------------------------------------------------------

def _queries(p, q, times):
    """Source runs before p, destination from q on, asked alternately at ``times``."""
    out = []
    for i, t in enumerate(times):
        if i % 2 == 0:
            out.append(("host-a", "running" if t < p else "paused:migration"))
        else:
            out.append(("host-b", "running" if t >= q else "paused:migration"))
    return out


@given(st.lists(st.floats(0, 100), min_size=0, max_size=60),
       st.floats(0, 100), st.floats(0, 50))
def test_a_handover_is_never_taken_for_two_copies(times, p, gap):
    """The source stopped (p) before the destination started (p + gap):
    however the questions fall, no two copies."""
    assert not rules.two_copies_by_state(_queries(p, p + gap, sorted(times)))


def test_two_copies_are_three_answers_in_a_row():
    split = [("host-a", "running"), ("host-b", "running:migrated"),
             ("host-a", "running:migration-canceled")]
    assert rules.two_copies_by_state(split)
    # the source stopped between the first and the third question: a handover
    assert not rules.two_copies_by_state(split[:2] + [("host-a", "paused:migration")])
    samples = [rules.Sample(float(i), "running", "running", {}) for i in range(2)]
    assert rules.two_copies_by_state(rules.queries_of(samples, "host-a", "host-b"))


@given(st.integers(1, 200), st.integers(1, 200), st.floats(0.0, 10.0),
       st.integers(0, 2), st.floats(0.001, 0.2))
def test_a_handover_on_the_consoles_is_never_two_copies(before, after, downtime, late,
                                                        poll):
    """The source printed until the switch, the destination after it; up to
    two of the source's last ticks read a poll late do not make a second copy."""
    ticks = [("host-a", i * 0.05) for i in range(before)]
    switch = before * 0.05 + downtime
    ticks += [("host-b", switch + i * 0.05) for i in range(after)]
    ticks += [("host-a", switch + poll)] * late
    assert not rules.two_copies_by_console(ticks)


def test_interleaved_console_ticks_are_two_copies():
    handover = [("host-a", t / 10) for t in range(50)] + [("host-b", 5.0 + t / 10)
                                                         for t in range(50)]
    assert not rules.two_copies_by_console(handover)
    late = handover + [("host-a", 5.05)]   # one tick read a poll late
    assert not rules.two_copies_by_console(late)
    split = handover + [("host-a", 8.0 + t / 10 + 0.05) for t in range(10)]
    assert rules.two_copies_by_console(split)


# -- recovery and settling -----------------------------------------------------------------

def test_recovery_is_the_link_back_to_the_stream_moving():
    pc = "paused:postcopy"
    samples = [rules.Sample(1.0, pc, "running:postcopy", dict(JOB, data_processed=10)),
               rules.Sample(5.0, "paused:postcopy-failed", "running:postcopy-failed",
                            dict(JOB, data_processed=10)),
               rules.Sample(11.0, pc, "running:postcopy", dict(JOB, data_processed=10)),
               rules.Sample(12.5, pc, "running:postcopy", dict(JOB, data_processed=99))]
    assert rules.recovery_s(samples, 10.0) == 2.5
    assert rules.recovery_s(samples[:3], 10.0) is None
    done = samples[:3] + [rules.Sample(13.0, "absent", "running", {})]
    assert rules.recovery_s(done, 10.0) == 3.0


def test_settling_counts_from_the_faults_end():
    seen = [(3.0, "unresolved"), (20.0, "unresolved"), (31.5, "completed")]
    assert rules.settle_s(seen, 10.0) == 21.5
    assert rules.settle_s(seen[:2], 10.0) is None
    assert rules.settle_s([(5.0, "rolled-back")], 10.0) == 0.0


# -- judgement --------------------------------------------------------------------------

def facts(**kw):
    base = {"kind": "management_outage", "phase": "precopy", "source": "host-a",
            "destination": "host-b", "two_copies": False,
            "hosts": {"host-a": "absent", "host-b": "running:migrated"},
            "persistent": ["host-b"], "continuity": True, "ticked": True,
            "cli_code": 0, "cli_verdict": "completed", "cli_running_on": "host-b",
            "record_verdict": "completed", "record_running_on": "host-b",
            "settle_s": None, "resumed_by_hand": False, "slots_held": []}
    base.update(kw)
    return base


def test_a_clean_completed_run_is_true_and_intact():
    j = rules.judge(facts())
    assert (j.intact, j.verdict_true, j.expected, j.leftovers) == (True, True, "completed", ())


def test_a_bootable_definition_where_the_guest_does_not_run_is_a_leftover():
    j = rules.judge(facts(hosts={"host-a": "shut-off", "host-b": "running"},
                          persistent=["host-a", "host-b"]))
    assert j.verdict_true and not j.intact
    assert j.leftovers == ("domain on host-a (shut-off)",)


def test_the_split_of_issue_16_is_two_copies_and_a_false_verdict():
    j = rules.judge(facts(hosts={"host-a": "running:migration-canceled",
                                 "host-b": "running"},
                          persistent=["host-a", "host-b"], two_copies=True, cli_code=1,
                          cli_verdict="rolled-back", cli_running_on="host-a",
                          record_verdict="rolled-back", record_running_on="host-a"))
    assert j.expected == "split" and not j.verdict_true and not j.intact
    assert any("calls for split" in p for p in j.problems)


def test_an_exit_code_off_the_table_is_a_false_verdict():
    j = rules.judge(facts(cli_code=1))
    assert not j.verdict_true and "the table says 0" in j.problems[0]


def test_an_unresolved_migration_must_settle_true():
    settled = facts(cli_code=5, cli_verdict="unresolved", cli_running_on=None,
                    settle_s=12.0)
    assert rules.judge(settled).verdict_true
    never = dict(settled, settle_s=None, record_verdict="unresolved")
    assert not rules.judge(never).verdict_true
    wrong = dict(settled, record_verdict="rolled-back", record_running_on="host-a")
    assert not rules.judge(wrong).verdict_true


def test_a_qemu_killed_in_postcopy_must_end_lost_with_both_halves_kept():
    lost = facts(kind="qemu_source", phase="postcopy", cli_code=7, cli_verdict="lost",
                 cli_running_on=None, record_verdict="lost", record_running_on=None,
                 hosts={"host-a": "shut-off", "host-b": "running:postcopy-failed"},
                 persistent=["host-a"], ticked=False)
    j = rules.judge(lost)
    assert j.verdict_true and j.expected == "lost" and j.leftovers == ()
    claimed = dict(lost, cli_code=0, cli_verdict="completed", cli_running_on="host-b",
                   record_verdict="completed", record_running_on="host-b")
    assert not rules.judge(claimed).verdict_true
    destroyed = dict(lost, hosts={"host-a": "shut-off", "host-b": "absent"})
    assert not rules.judge(destroyed).verdict_true
    resumed = dict(lost, kind="qemu_dest",
                   hosts={"host-a": "running", "host-b": "absent"})
    assert not rules.judge(resumed).verdict_true


def test_a_half_whose_qemu_died_on_its_own_in_postcopy_calls_for_lost():
    """A link cut while the switch's device state was loading: the destination's
    QEMU failed to load it and exited (libvirt: shut off, failed). Nobody
    destroyed it; nothing can resume the stream."""
    died = facts(kind="migration_link_30s", phase="postcopy", cli_code=7,
                 cli_verdict="lost", cli_running_on=None, record_verdict="lost",
                 record_running_on=None,
                 hosts={"host-a": "paused:postcopy-failed", "host-b": "shut-off:failed"},
                 persistent=["host-a", "host-b"], ticked=False)
    j = rules.judge(died)
    assert j.verdict_true and j.expected == "lost" and j.leftovers == ()
    destroyed = dict(died, hosts={"host-a": "paused:postcopy-failed",
                                  "host-b": "shut-off:destroyed"})
    assert not rules.judge(destroyed).verdict_true
    assert rules.expected_verdict(destroyed) == "postcopy-paused"
    # a restarted libvirtd kills an incoming QEMU it cannot take back (no reason)
    killed_by_restart = dict(died, kind="libvirtd_dest", hosts={
        "host-a": "paused:postcopy-failed", "host-b": "shut-off"})
    assert rules.judge(killed_by_restart).verdict_true
    # nothing holds a copy that runs or could run on: lost, whatever the phase
    gone = dict(killed_by_restart, kind="management_outage", phase="precopy",
                hosts={"host-a": "shut-off:migrated", "host-b": "absent"})
    assert rules.expected_verdict(gone) == "lost"
    # struck just before the switch (the samples saw pre-copy), ended in post-copy
    struck_before = dict(killed_by_restart, kind="libvirtd_both", phase="precopy")
    assert rules.expected_verdict(struck_before) == "lost"
    assert rules.judge(struck_before).verdict_true


def test_a_paused_postcopy_keeps_both_halves():
    paused = facts(kind="migration_link_120s", phase="postcopy", cli_code=6,
                   cli_verdict="postcopy-paused", cli_running_on=None,
                   record_verdict="postcopy-paused",
                   hosts={"host-a": "paused:postcopy-failed",
                          "host-b": "paused:postcopy-failed"})
    j = rules.judge(paused)
    assert j.verdict_true and j.expected == "postcopy-paused" and j.leftovers == ()
    resumed_source = dict(paused, hosts={"host-a": "running", "host-b": "absent"})
    assert not rules.judge(resumed_source).verdict_true


def test_a_broken_postcopy_called_completed_is_a_false_verdict():
    """The destination "runs" without its pages: not a completed migration."""
    broken = facts(kind="migration_reset", phase="postcopy",
                   hosts={"host-a": "paused:postcopy-failed",
                          "host-b": "running:postcopy-failed"},
                   persistent=["host-a", "host-b"], ticked=False)
    j = rules.judge(broken)
    assert j.expected == "postcopy-paused" and not j.verdict_true and not j.intact


def test_held_slots_are_leftovers():
    j = rules.judge(facts(slots_held=["https://192.0.2.1:8473: {'running': 1}"]))
    assert j.leftovers == ("slot https://192.0.2.1:8473: {'running': 1}",)


# -- results file and report ----------------------------------------------------------------

def _run(index, **kw):
    base = dict(index=index, kind="management_outage", strike="switchover",
                source="host-a", destination="host-b", phase="precopy", during=True,
                cli_code=0, cli_verdict="completed", running_on=["host-b"],
                expected="completed", intact=True, verdict_true=True, two_copies=False)
    base.update(kw)
    return faults.Run(**base)


def test_runs_are_appended_as_they_end_and_an_append_continues(tmp_path):
    path = tmp_path / "faults.json"
    results = faults.Results(path)
    results.begin("python -m migplane.bench.faults --runs 2", 7)
    results.add(_run(0), 40.0)
    assert len(json.loads(path.read_text())["runs"]) == 1   # on disk at once
    again = faults.Results.load(path)
    again.begin("python -m migplane.bench.faults --append", 8)
    again.add(_run(1), 30.0)
    data = json.loads(path.read_text())
    assert [r["index"] for r in data["runs"]] == [0, 1]
    assert [s["seed"] for s in data["sessions"]] == [7, 8]


def test_a_results_file_of_one_session_still_loads(tmp_path):
    old = {"seed": 5, "seconds": 600.0, "command": "python -m migplane.bench.faults",
           "kinds": {}, "total": {}, "runs": [
               {"index": 0, "kind": "abort", "source": "host-a", "destination": "host-b",
                "intact": True, "verdict_true": True, "leftovers": [], "during": True,
                "running_on": ["host-a"], "defined_on": ["host-a"], "continuity": True}]}
    (tmp_path / "faults.json").write_text(json.dumps(old))
    results = faults.Results.load(tmp_path / "faults.json")
    assert results.runs[0].strike == "random" and results.runs[0].kind == "abort"
    assert results.data["sessions"][0]["seed"] == 5
    # those runs were never looked at for a second copy: the report says so
    assert "| abort | 1 | 1 | 0 | 0 | 1 | 0 | 1 | 0 (1 not checked) |" in faults.report(
        results.runs, results.data["sessions"])


def test_the_report_has_a_table_per_strike_point_and_per_kind():
    runs = [_run(0),
            _run(1, two_copies=True, two_copies_seen_by=["consoles"], verdict_true=False,
                 intact=False, expected="split", running_on=["host-a", "host-b"],
                 cli_code=1, cli_verdict="rolled-back",
                 hosts={"host-a": "running", "host-b": "running"}),
            _run(2, strike="postcopy", kind="migration_link_30s", phase="postcopy",
                 recovery_s=4.2, duration_s=30.0),
            _run(3, strike="postcopy", kind="qemu_source", phase="postcopy",
                 cli_code=7, cli_verdict="lost", expected="lost", intact=False,
                 running_on=[]),
            _run(4, cli_code=5, cli_verdict="unresolved", settle_s=12.0)]
    text = faults.report(runs, [{"command": "python -m migplane.bench.faults",
                                 "seed": 3, "seconds": 600}])
    assert "## By strike point" in text and "## By fault kind" in text
    assert "two copies running" in text
    # switchover: 3 runs, 1 with two copies, the unresolved one settled within 30 s
    assert "| switchover | 3 | 3 | 0 | 2 | 2 | 0 | 2 | 1 | 1/1 (max 12 s) | - | 0 |" in text
    assert "| postcopy | 2 | 2 | 2 | 1 | 1 | 1 | 2 | 0 | - | 4.2 (max 4.2) | 0 |" in text
    assert "| qemu_source | 1 |" in text and "| abort |" not in text
    assert "| 2 | postcopy | migration_link_30s | - | 30.0 | 4.2 |" in text
    assert "- run 1, management_outage at switchover" in text
    assert "two copies running, verdict not true, guest not intact" in text
    assert "run 3," not in text   # lost, and truly so: no target missed


def test_render_fails_when_a_run_missed_a_target(tmp_path, capsys):
    results = faults.Results(tmp_path / "faults.json")
    results.begin("cmd", 1)
    # render judges every run again from its facts, by the current rules
    clean = dict(hosts={"host-a": "absent", "host-b": "running:migrated"},
                 persistent=["host-b"], continuity=True, ticked=True,
                 cli_running_on="host-b", record_verdict="completed",
                 record_running_on="host-b")
    results.add(_run(0, **clean), 1.0)
    assert faults.render(tmp_path) == 0
    left = dict(clean, hosts={"host-a": "shut-off:migrated", "host-b": "running:migrated"})
    results.add(_run(1, leftovers=[], **left), 2.0)
    assert faults.render(tmp_path) == 1
    assert "Runs that missed a target" in (tmp_path / "FAULTS.md").read_text()
    capsys.readouterr()


@pytest.mark.parametrize("argv,message", [
    (["--kinds", "flood"], "unknown fault kind(s) flood"),
    (["--strike", "soon"], "unknown strike point(s) soon"),
    (["--strike", "postcopy", "--kinds", "abort"], "no fault kind of abort strikes at"),
    (["--duration", "9-3"], "0 < LOW <= HIGH"),
    (["render", "--out", "/nonexistent/x"], "no results to render"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        faults.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_libvirts_states_in_the_rules_words():
    libvirt = pytest.importorskip("libvirt")
    assert faults.view(libvirt.VIR_DOMAIN_PAUSED,
                       libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED) == "paused:postcopy-failed"
    assert faults.view(libvirt.VIR_DOMAIN_RUNNING,
                       libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED) == \
        "running:migration-canceled"
    assert faults.view(libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED) == \
        "running"
    assert faults.view(libvirt.VIR_DOMAIN_SHUTOFF, 0) == "shut-off"
    assert faults.view(libvirt.VIR_DOMAIN_SHUTOFF,
                       libvirt.VIR_DOMAIN_SHUTOFF_FAILED) == "shut-off:failed"
    sample = rules.Sample(0.0, faults.view(libvirt.VIR_DOMAIN_PAUSED,
                                           libvirt.VIR_DOMAIN_PAUSED_POSTCOPY), "absent")
    assert rules.in_postcopy(sample)


def test_a_post_copy_kept_paused_keeps_its_slot_without_a_leftover():
    paused = facts(kind="migration_link_120s", phase="postcopy", cli_code=6,
                   cli_verdict="postcopy-paused", cli_running_on=None,
                   record_verdict="postcopy-paused", record_running_on=None,
                   hosts={"host-a": "paused:postcopy-failed", "host-b": "paused:migration"},
                   persistent=["host-a", "host-b"], ticked=False,
                   slots_held=["https://192.0.2.12:7480: 1 incoming"])
    j = rules.judge(paused)
    assert j.verdict_true and j.leftovers == ()
    done = facts(slots_held=["https://192.0.2.12:7480: 1 incoming"])
    assert rules.judge(done).leftovers == ("slot https://192.0.2.12:7480: 1 incoming",)
