"""Every failed test's report says how loaded the machine was when it failed:
a failure that only a busy machine shows is a test to fix (see
tools/check_wallclock.py), not a defect to hunt in the code."""

import os

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
