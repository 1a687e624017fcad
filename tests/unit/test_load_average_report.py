"""tests/conftest.py: a failed test's report says the machine's load average."""

import pathlib
import shutil
import subprocess
import sys

CONFTEST = pathlib.Path(__file__).resolve().parents[1] / "conftest.py"


def test_a_failure_reports_the_load_average_and_a_pass_does_not(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "test_sample.py").write_text(
        "def test_passes():\n    print('PASSED OUTPUT')\n\n"
        "def test_fails():\n    assert 1 == 2\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
                          str(tests)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("- load average -") == 1, run.stdout
    assert "load average: " in run.stdout and " (1, 5, 15 min) on " in run.stdout
