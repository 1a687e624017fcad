"""Never two copies, on real libvirtd + QEMU: the handover, the partition, the detector.

The drivers reach each libvirtd through its unix socket, so the flow can ask
both hosts while the management plane between the daemons is cut: what is
tested is what libvirt's peer-to-peer protocol does across the switch-over,
and that settling never lets the guest run twice. The guests' consoles tell:
one counter across the hosts, never two.
"""

import time

import pytest

from migplane.core import events
from migplane.core import settle
from migplane.core import settling

pytestmark = pytest.mark.lab


def test_the_destination_is_held_paused_until_the_source_stopped(drv_lab, lv, lab_guest,
                                                                  pair):
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=4, rate_mib_s=4)
    seen = []
    real_post = dest.post_live_migration_at_destination

    def post(instance, data):  # what each host holds when the flow ends the handover
        seen.append((dest.get_instance_info(instance).reason,
                     settling.side(source, instance).state))
        real_post(instance, data)

    dest.post_live_migration_at_destination = post
    result = lv.background(source, dest, lab_guest).join().result
    assert result is not None and result.verdict == events.VERDICT_COMPLETED
    assert result.progress.handover
    assert seen == [(settle.REASON_HELD, settle.ABSENT)]
    watcher.wait_ticks(5, host="host-b", timeout=30)
    watcher.stop()
    assert lv.domain_state(a, lab_guest) is None
    assert lv.domain_state(b, lab_guest) == (1, True)       # running, defined
    lv.assert_counter_continues(watcher, "host-a", "host-b")


@pytest.mark.parametrize("armed", [False, True], ids=["handover", "post-copy-armed"])
def test_management_link_down_across_the_switch_over_never_makes_two_copies(
        drv_lab, lv, lab_guest, pair, armed):
    """The issue's partition: the source's management link is down from early in
    the transfer until well after the switch-over (longer than the daemons'
    keepalive), while the migration link carries the memory. Without post-copy
    the paused handover keeps one copy; with post-copy armed (no handover
    possible) the switch-over goes through post-copy."""
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, bandwidth=8, permit_post_copy=armed)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=4, rate_mib_s=2)
    run = lv.background(source, dest, lab_guest)
    try:
        run.wait_progress(2 * lv.MIB)
        a.set_link("management", False)
        time.sleep(24)
    finally:
        a.set_link("management", True)
    run.join(240)
    outcome = run.result or run.error.result
    assert outcome.verdict in (events.VERDICT_COMPLETED, events.VERDICT_ROLLED_BACK), (
        run.error)
    switched = [e for e in run.events if e.kind == events.SWITCH_OVER]
    assert bool(switched) == armed, switched
    assert bool(outcome.progress and outcome.progress.postcopy) == armed
    where = "host-b" if outcome.verdict == events.VERDICT_COMPLETED else "host-a"
    assert outcome.running_on == where
    watcher.wait_ticks(5, host=where, timeout=30)
    time.sleep(2)   # a second copy, had one been resumed, would tick meanwhile
    watcher.stop()
    lv.assert_counter_continues(watcher, "host-a", where)
    other = b if where == "host-a" else a
    assert lv.domain_state(other, lab_guest) is None         # nothing left there


def test_the_detector_pauses_a_second_copy_started_by_hand(drv_lab, lv, lab_guest, pair):
    from migplane.lab import guest

    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=1, rate_mib_s=1)
    guest.define_guest(b, lab_guest, drv_lab.kernel, memory_mib=64,
                       cmdline=guest.cmdline(tick_ms=50, dirty_mib=1, rate_mib_s=1))
    watcher.wait_ticks(3, host="host-b", timeout=30)
    split = []
    settler = settling.Settler(lab_guest, source, dest, None, time.monotonic, time.sleep,
                               split=split.append)
    decision = settler.run(None, 0)
    assert decision.verdict == events.VERDICT_SPLIT and split == [decision]
    # neither copy was resumed by a cancelled migration: which is newer cannot be told
    assert decision.pause_source and decision.pause_destination
    assert lv.domain_state(a, lab_guest)[0] == 3 and lv.domain_state(b, lab_guest)[0] == 3
    assert source.get_instance_info(lab_guest).state == "paused"
    assert decision.final and decision.hands_off and decision.exit_code == 8
    watcher.stop()
