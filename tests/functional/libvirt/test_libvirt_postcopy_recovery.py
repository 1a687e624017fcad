"""A post-copy migration whose stream breaks, on real libvirtd + QEMU (TCG).

The migration plane is shaped so that post-copy lasts seconds; the guest is
forced into post-copy as soon as its transfer started, and the stream is
broken while it runs: host-b rejects the migration plane's TCP traffic with a
reset, both ways, as a failing switch or a middlebox would. The libvirt driver
must recover it (libvirt >= 8.5: ``VIR_MIGRATE_POSTCOPY_RESUME``) once the
link answers again, or, after ``postcopy_recovery_timeout``, leave both halves
paused for a later ``resume_postcopy``; never destroy, undefine or resume
either half. The guest's own counter must go on across it all.
"""

import time

import pytest

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.core import migrate_data as md

pytestmark = pytest.mark.lab

#: The migration plane's rate: the 48 MiB the guest stamps (zero pages cost
#: nothing) take about 8 s of post-copy, so the strike lands while pages still
#: flow. (QEMU 7.2's source hangs in post-copy-active, unpausable, when the
#: stream breaks after its last page was sent: that is not recoverable there.)
RATE = "48mbit"
STAMP_MIB = 48
#: libvirt's domain states (virDomainState) and the reasons these tests read.
RUNNING, PAUSED, SHUTOFF = 1, 3, 5
RUNNING_POSTCOPY = 10           # VIR_DOMAIN_RUNNING_POSTCOPY
PAUSED_POSTCOPY_FAILED = 13     # VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
SHUTOFF_CRASHED = 3             # VIR_DOMAIN_SHUTOFF_CRASHED


class Reset:
    """The migration plane's TCP connections are reset on both hosts (``ss -K``,
    as a middlebox or a flapping link would do to both ends) and every new
    segment between the two migration addresses is answered with a reset
    while active."""

    def __init__(self, lab):
        self.a, self.b = lab.hosts
        self.rules = [(host, chain, flag, peer.mig_ip)
                      for host, peer in ((self.a, self.b), (self.b, self.a))
                      for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d"))]
        self.on = False

    def _iptables(self, action, host, chain, flag, peer):
        host.run(["iptables", action, chain, flag, peer, "-p", "tcp", "-j", "REJECT",
                  "--reject-with", "tcp-reset"])

    def start(self):
        for rule in self.rules:
            self._iptables("-I", *rule)
        self.on = True
        for host, peer in ((self.a, self.b), (self.b, self.a)):
            host.run(["ss", "-K", "dst", peer.mig_ip], check=False)

    def stop(self):
        if self.on:
            for rule in self.rules:
                self._iptables("-D", *rule)
            self.on = False


@pytest.fixture
def reset(drv_lab):
    found = Reset(drv_lab)
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def shaped(drv_lab):
    drv_lab.shape("migration", rate=RATE)
    yield
    drv_lab.unshape("migration")


def domain_reason(host, name):
    """libvirt's ``(state, reason)`` of ``name`` on ``host``, or None."""
    import libvirt

    conn = libvirt.open(host.uri)
    try:
        try:
            return tuple(conn.lookupByName(name).state())
        except libvirt.libvirtError:
            return None
    finally:
        conn.close()


def post_copy_run(lv, drv_lab, pair, name, recovery_timeout):
    b = drv_lab.hosts[1]
    source, dest = pair(my_ip=b.mig_ip, permit_post_copy=True)
    source.postcopy_recovery_timeout = recovery_timeout
    watcher = lv.start_guest(drv_lab, name, dirty_mib=16, rate_mib_s=4, stamp_mib=STAMP_MIB)
    run = lv.background(source, dest, name)
    run.wait_progress(lv.MIB)
    run.migration.force_complete()
    # strike once the guest runs on the destination in post-copy (libvirt
    # resumes it there only once QEMU's switch went through)
    deadline = time.monotonic() + 60
    while domain_reason(b, name) != (RUNNING, RUNNING_POSTCOPY):
        assert time.monotonic() < deadline, "the guest never ran in post-copy on host-b"
        time.sleep(0.05)
    return source, dest, watcher, run


def destination_crashed(drv_lab, name):
    """Did the destination's QEMU die? QEMU before 8.2 can segfault in its post-copy
    listen thread when a reset stream is resumed (the kernel logs
    ``postcopy/listen[...]: segfault``); the guest is then lost with it,
    whatever migplane does."""
    return domain_reason(drv_lab.hosts[1], name) == (SHUTOFF, SHUTOFF_CRASHED)


def assert_left_paused_after_a_crash(lv, drv_lab, source, name, kinds):
    """What migplane still owes when the running half died under it: the
    source's half neither resumed, destroyed nor undefined, nothing rolled
    back, and a verdict that does not claim success. On a QEMU the driver
    trusts to recover (8.2 or later) the crash fails the test; on an older
    one (Debian 12's 7.2, with MIGPLANE_APT_BACKPORTS=0) it is reported as an
    expected failure: the recovery itself was not shown to work."""
    a = drv_lab.hosts[0]
    assert domain_reason(a, name) == (PAUSED, PAUSED_POSTCOPY_FAILED)
    assert lv.domain_state(a, name) == (PAUSED, True)
    assert events.ROLLED_BACK not in kinds
    if source.describe().capabilities.post_copy_recovery:
        pytest.fail("the destination's QEMU crashed while the broken post-copy was "
                    "resumed, on %s, which declares post-copy recovery"
                    % source.describe().version)
    pytest.xfail("the destination's QEMU crashed while the broken post-copy was "
                 "resumed (QEMU before 8.2); migplane left the source paused and said so")


def assert_moved_intact(lv, drv_lab, name, watcher):
    a, b = drv_lab.hosts
    watcher.wait_ticks(5, host="host-b", timeout=60)
    watcher.stop()
    assert lv.domain_state(a, name) is None
    assert lv.domain_state(b, name) == (RUNNING, True)
    assert len(watcher.boot_ids()) == 1 and watcher.max_bad() == 0
    lv.assert_counter_continues(watcher, "host-a", "host-b")


def test_a_broken_post_copy_stream_is_recovered(drv_lab, lv, lab_guest, pair, shaped,
                                                reset):
    source, _, watcher, run = post_copy_run(lv, drv_lab, pair, lab_guest, 60)
    reset.start()
    noticed_by = time.monotonic() + 60
    while events.POST_COPY_RECOVERING not in [e.kind for e in run.events]:
        assert time.monotonic() < noticed_by, "the broken stream was never noticed"
        time.sleep(0.1)
    time.sleep(5)                      # the link stays broken a while
    reset.stop()
    back = time.monotonic()
    run.join(timeout=240)
    if destination_crashed(drv_lab, lab_guest):
        assert isinstance(run.error, exception.PostCopyPaused), run.error
        assert_left_paused_after_a_crash(lv, drv_lab, source, lab_guest,
                                         [e.kind for e in run.events])
    assert run.error is None, run.error
    assert run.result.status == flow.COMPLETED and run.result.progress.postcopy
    kinds = [e.kind for e in run.events]
    order = [events.POST_COPY_STARTED, events.POST_COPY_RECOVERING,
             events.POST_COPY_RECOVERED, events.POST_COPY_ENDED]
    assert [k for k in kinds if k in order][:2] == order[:2]
    assert events.POST_COPY_ENDED in kinds and events.ROLLED_BACK not in kinds
    print("post-copy recovery: link back -> completed in %.1f s"
          % (time.monotonic() - back))
    assert_moved_intact(lv, drv_lab, lab_guest, watcher)


def test_after_the_deadline_both_halves_wait_for_a_resume_by_hand(drv_lab, lv, lab_guest,
                                                                  pair, shaped, reset):
    a, b = drv_lab.hosts
    source, dest, watcher, run = post_copy_run(lv, drv_lab, pair, lab_guest, 5)
    reset.start()
    run.join(timeout=180)
    assert isinstance(run.error, exception.PostCopyPaused), run.error
    assert "migplane resume" in str(run.error)
    assert source.get_job_progress(lab_guest).state == driver_mod.JOB_POSTCOPY_PAUSED
    # both halves kept, neither destroyed, undefined or resumed
    assert lv.domain_state(a, lab_guest) == (PAUSED, True)
    assert lv.domain_state(b, lab_guest)[0] in (RUNNING, PAUSED)
    assert events.ROLLED_BACK not in [e.kind for e in run.events]
    reset.stop()
    source.postcopy_recovery_timeout = 60
    source._jobs[lab_guest].recovery.timeout_s = 60
    source.resume_postcopy(lab_guest)
    deadline = time.monotonic() + 180
    while True:
        state = source.get_job_progress(lab_guest).state
        if state == driver_mod.JOB_COMPLETED:
            break
        if state == driver_mod.JOB_POSTCOPY_PAUSED and destination_crashed(
                drv_lab, lab_guest):
            assert_left_paused_after_a_crash(lv, drv_lab, source, lab_guest,
                                             [e.kind for e in run.events])
        assert state in (driver_mod.JOB_POSTCOPY_RECOVERING, driver_mod.JOB_RUNNING), state
        assert time.monotonic() < deadline, "the resumed post-copy did not complete"
        time.sleep(0.5)
    data = md.MigrateData(dest_hostname=b.name)
    dest.post_live_migration_at_destination(lab_guest, data)
    source.post_live_migration_at_source(lab_guest, data)
    assert_moved_intact(lv, drv_lab, lab_guest, watcher)


def test_both_libvirtds_restarted_in_post_copy_leave_no_definition_behind(
        drv_lab, lv, lab_guest, pair, shaped):
    """The daemons die under a post-copy (the migration call fails, the
    handles die); the QEMUs go on and finish without them. Once the daemons
    are back, the run reports the migration completed, the guest runs on
    host-b, and host-a keeps no bootable definition of it."""
    a, b = drv_lab.hosts
    source, dest, watcher, run = post_copy_run(lv, drv_lab, pair, lab_guest, 120)
    for host in (a, b):
        host.kill_libvirtd()
    time.sleep(2)                      # the QEMUs stream on without their daemons
    for host in (a, b):
        host.start_libvirtd()
    run.join(timeout=240)
    assert run.error is None, run.error
    assert run.result.status == flow.COMPLETED and run.result.verdict == "completed"
    assert events.ROLLED_BACK not in [e.kind for e in run.events]
    assert_moved_intact(lv, drv_lab, lab_guest, watcher)
