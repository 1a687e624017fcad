"""tools/check_wallclock.py: the CI check that no test asserts wall-clock time."""

import importlib.util
import pathlib
import textwrap

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "tools" / "check_wallclock.py"
_SPEC = importlib.util.spec_from_file_location("check_wallclock", _PATH)
check_wallclock = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_wallclock)

BAD = textwrap.dedent('''
    import threading
    import time
    from time import perf_counter as pc


    def test_a_duration_bound():
        t0 = time.monotonic()
        work()
        took = time.monotonic() - t0
        assert took < 5


    def test_a_direct_bound():
        t0 = pc()
        work()
        assert 0.1 <= pc() - t0 < 1


    def test_a_short_deadline():
        deadline = time.monotonic() + 5
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)


    def wait(timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.01)


    def test_a_bound_enforced_by_hand():
        began = time.time()
        work()
        if time.time() - began > 5:
            raise AssertionError("slow")


    def test_a_fixed_sleep_then_an_assert():
        start()
        time.sleep(0.2)
        assert started()


    def test_counts_what_fitted_in_a_window():
        halt = threading.Event()
        threading.Timer(0.4, halt.set).start()
        samples = run(halt)
        assert len(samples) >= 8


    def test_counts_what_fitted_in_max_seconds():
        count = run(max_seconds=0.5)
        assert count >= 2
''')

GOOD = textwrap.dedent('''
    import threading
    import time


    def test_a_hang_guard():
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, "never done"
            time.sleep(0.01)


    def wait(timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.01)


    def test_a_lower_bound():
        began = time.monotonic()
        acquire_with_timeout(0.1)
        assert time.monotonic() - began >= 0.09


    def test_a_figure_reported():
        t0 = time.monotonic()
        work()
        print("took", time.monotonic() - t0)


    def test_a_run_of_a_number_of_events():
        halt = threading.Event()
        samples = run(stop_after=8, stop=halt)
        assert len(samples) == 8


    def test_a_simulated_clock(world):
        result = migrate(world)
        assert result.duration_s < 40 and world.clock.now() < 60


    def test_a_delayed_event():
        threading.Timer(0.05, deliver).start()
        assert wait_for_delivery(timeout=60)
''')

MEASURED = textwrap.dedent('''
    def test_a_real_migration(lab):
        result = migrate(lab)
        assert result.duration_s < 40
        assert result.progress["downtime_ms"] < 2000
        assert rtt_ms(lab) >= 80
''')


def _lines(findings):
    return sorted(f.line for f in findings)


def test_every_bad_pattern_is_flagged():
    found = check_wallclock.check_source(BAD, "tests/unit/test_x.py")
    by_function = {f.function for f in found}
    assert by_function == {
        "test_a_duration_bound", "test_a_direct_bound", "test_a_short_deadline", "wait",
        "test_a_bound_enforced_by_hand", "test_a_fixed_sleep_then_an_assert",
        "test_counts_what_fitted_in_a_window", "test_counts_what_fitted_in_max_seconds"}
    assert all(f.path == "tests/unit/test_x.py" and f.line > 0 for f in found)
    assert "tests/unit/test_x.py:11: compares a wall-clock reading" in str(found[0])


def test_good_patterns_pass():
    assert check_wallclock.check_source(GOOD, "tests/unit/test_x.py") == []


@pytest.mark.parametrize("path, flagged", [
    ("tests/functional/lab/test_x.py", [4, 5]),   # measured there: upper bounds flagged
    ("tests/unit/test_x.py", []),                  # a simulated clock there
])
def test_timing_names_are_measured_only_in_the_functional_tests(path, flagged):
    assert _lines(check_wallclock.check_source(MEASURED, path)) == flagged


def test_the_allow_list_names_a_function_and_must_match(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(BAD)
    paths = check_wallclock.test_files(tmp_path)
    allowed = {("tests/test_x.py", "wait"): "a reason",
               ("tests/test_x.py", "test_gone"): "a reason"}
    findings, stale = check_wallclock.check(paths, root=tmp_path, allowed=allowed)
    assert "wait" not in {f.function for f in findings} and len(findings) == 7
    assert stale == [("tests/test_x.py", "test_gone")]


def test_methods_and_nested_functions_are_named_by_their_scope():
    source = textwrap.dedent('''
        import time

        class TestThing:
            def test_it(self):
                def inner():
                    t0 = time.monotonic()
                    assert time.monotonic() - t0 < 1
                inner()
    ''')
    found = check_wallclock.check_source(source, "tests/unit/test_x.py")
    assert [f.function for f in found] == ["TestThing.test_it.inner"]


def test_the_repository_passes(capsys):
    assert check_wallclock.main([]) == 0, capsys.readouterr().out


def test_every_allow_list_entry_says_why():
    assert all(len(why) > 40 for why in check_wallclock.ALLOWED.values())
