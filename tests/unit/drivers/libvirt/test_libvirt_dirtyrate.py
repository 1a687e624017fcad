"""QEMU's dirty-rate sampling through libvirt (drivers.libvirt.dirtyrate), on stubs."""

import libvirt

from migplane.core import convergence
from migplane.core import units
from migplane.drivers.libvirt import dirtyrate
from migplane.drivers.libvirt import progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Dom:
    def __init__(self):
        self.calls = []

    def name(self):
        return "vm1"

    def startDirtyRateCalc(self, seconds, flags):
        self.calls.append((seconds, flags))


class Conn:
    def __init__(self, answers):
        self.answers = list(answers)

    def domainListGetStats(self, doms, stats):
        assert stats == libvirt.VIR_DOMAIN_STATS_DIRTYRATE
        return [(doms[0], self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])]


MEASURING = {"dirtyrate.calc_status": libvirt.VIR_DOMAIN_DIRTYRATE_MEASURING}
MEASURED = {"dirtyrate.calc_status": libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED,
            "dirtyrate.calc_period": 2, "dirtyrate.megabytes_per_second": 31}


def test_sampling_waits_for_the_result_and_converts_to_bytes():
    clock, dom = Clock(), Dom()
    found = dirtyrate.measure(Conn([MEASURING, MEASURING, MEASURED]), dom, 1.6,
                              clock=clock.time, sleep=clock.sleep)
    assert dom.calls == [(2, libvirt.VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING)]
    assert found.source == convergence.SAMPLING and found.dirty_rate == 31 * units.MiB
    assert found.window_s == 2.0 and "page sampling" in found.reason
    assert 2.0 <= clock.now < 2.5


def test_a_calculation_that_never_finishes_is_unavailable_not_a_hang():
    clock = Clock()
    found = dirtyrate.measure(Conn([MEASURING]), Dom(), 0, clock=clock.time,
                              sleep=clock.sleep)
    assert not found.available and "did not finish" in found.reason
    assert clock.now <= 1 + dirtyrate.GRACE_S + dirtyrate.POLL_S + 1e-6


def test_job_stats_carry_the_auto_converge_throttle():
    stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "auto_converge_throttle": 40,
             "memory_dirty_rate": 10, "memory_page_size": 4096}
    found = progress.to_progress(stats)
    assert found.cpu_throttle_pct == 40 and found.dirty_rate == 40960
    assert progress.to_progress({}).cpu_throttle_pct == 0
