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
from migplane.lab import daemon

pytestmark = pytest.mark.lab

#: How long the management link stays down after the switch to post-copy:
#: longer than libvirt's default keepalive (about 30 s), which lost the guest.
OUTAGE_S = 40


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


@pytest.fixture
def libvirt_default_keepalive(drv_lab):
    """Both daemons with libvirt's default keepalive (5 x 5 s), as on a host
    that kept it: a management outage of 30 s closes the peer-to-peer
    connection, and libvirt gives up on the migration."""
    for host in drv_lab.hosts:
        host.set_keepalive_count(daemon.LIBVIRT_DEFAULT_KEEPALIVE_COUNT)
    yield
    for host in drv_lab.hosts:
        host.set_keepalive_count(daemon.KEEPALIVE_COUNT)


@pytest.mark.parametrize("armed", [False, True], ids=["handover", "post-copy-armed"])
def test_management_link_down_across_the_switch_over_never_makes_two_copies(
        drv_lab, lv, lab_guest, pair, armed, request):
    """The issue's partition: the source's management link is down from early in
    the transfer until well after the switch-over, while the migration link
    carries the memory. Without post-copy, with libvirt's default keepalive, so
    that libvirt gives up on the migration: the paused handover keeps one copy.
    With post-copy armed (no handover possible) the switch-over goes through
    post-copy, with the lab's keepalive: these drivers reach the destination's
    daemon by its unix socket, so the flow switches during the cut, and libvirt's
    Finish arrives when the link is back."""
    if not armed:
        request.getfixturevalue("libvirt_default_keepalive")
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, bandwidth=8, permit_post_copy=armed)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=4, rate_mib_s=2)
    run = lv.background(source, dest, lab_guest)
    try:
        run.wait_progress(2 * lv.MIB)
        a.set_link("management", False)
        time.sleep(30)
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


def test_management_link_cut_between_the_post_copy_switch_and_finish_loses_nothing(
        drv_lab, lv, lab_guest, pair):
    """The narrowest window of the partition: the destination answered, the
    flow switches to post-copy, and the source's management link goes down
    before libvirt's Finish reaches the destination, for longer than libvirt's
    default keepalive (5 x 5 s). Until Finish the destination's libvirtd holds
    the incoming guest paused and destroys it when the source's connection
    closes, so with those defaults the guest was lost; the lab's daemons keep
    the peer-to-peer connection through such an outage (``lab.daemon.
    KEEPALIVE_*``), Finish arrives when the link returns, and the guest goes on
    on the destination."""
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, bandwidth=8, permit_post_copy=True)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=4, rate_mib_s=2)
    switch = source.force_complete
    cut = []

    def cut_then_switch(instance, post_copy):
        if post_copy and not cut:
            a.set_link("management", False)
            cut.append(time.monotonic())
        switch(instance, post_copy)

    source.force_complete = cut_then_switch
    run = lv.background(source, dest, lab_guest)
    try:
        run.wait_progress(2 * lv.MIB)
        while not cut and run.running:
            time.sleep(0.05)
        if cut:
            time.sleep(max(0.0, cut[0] + OUTAGE_S - time.monotonic()))
    finally:
        a.set_link("management", True)
    run.join(240)
    assert cut, "the flow never switched to post-copy"
    outcome = run.result or run.error.result
    assert outcome.verdict == events.VERDICT_COMPLETED, (outcome.verdict, run.error)
    assert outcome.running_on == "host-b" and outcome.progress.postcopy
    watcher.wait_ticks(5, host="host-b", timeout=30)
    watcher.stop()
    lv.assert_counter_continues(watcher, "host-a", "host-b")
    assert lv.domain_state(a, lab_guest) is None
    assert lv.domain_state(b, lab_guest) == (1, True)


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
