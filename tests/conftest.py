"""Every failed test's report says how loaded the machine was when it failed:
a failure that only a busy machine shows is a test to fix (see
tools/check_wallclock.py), not a defect to hunt in the code. Also the one
headless browser fixture, for the unit and functional tests of the page."""

import importlib.util
import os
import pathlib

import pytest


def load_average():
    """``/proc/loadavg``'s 1, 5 and 15 minute figures, or None off Linux."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        load = load_average()
        if load is not None:
            report.sections.append(("load average", "load average: %s (1, 5, 15 min) on %s CPUs"
                                    % (load, os.cpu_count())))


@pytest.fixture
def browser():
    """A headless Chromium (tests/browser.py); the test is skipped where none runs."""
    spec = importlib.util.spec_from_file_location(
        "browser", pathlib.Path(__file__).resolve().parent / "browser.py")
    browser_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser_mod)
    reason = browser_mod.skip_reason()
    if reason:
        pytest.skip(reason)
    b = browser_mod.Browser()
    yield b
    b.quit()
