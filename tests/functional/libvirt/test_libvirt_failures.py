"""Migrations that must not happen, or must stop: the guest ends on one host.

Each test checks the end state on both hosts through libvirt and the guest's
own console (same boot, counter still going on the host that keeps it), and
that host-b keeps nothing of a guest that stayed on host-a.
"""

import time

import pytest

from migplane.core import exception
from migplane.core import flow

pytestmark = pytest.mark.lab

#: Bulk-stream rate for migrations that must last: 64 MiB at 2 MiB/s.
SLOW = 2


def migrate(source, destination, name, **kw):
    return flow.LiveMigration(name, source, destination, source.settings.migration,
                              **kw).run()


def assert_kept_on_source(lv, lab, name, watcher):
    a, b = lab.hosts
    watcher.wait_ticks(5, host="host-a", timeout=30)
    watcher.stop()
    assert lv.domain_state(a, name) == (1, True)     # running, still defined
    assert lv.domain_state(b, name) is None          # nothing left on host-b
    assert not watcher.ticks("host-b")
    assert len(watcher.boot_ids()) == 1
    lv.assert_counter_continues(watcher, "host-a")
    assert watcher.max_bad() == 0


@pytest.mark.parametrize("case", ["dest_link_down", "not_an_address_of_b",
                                  "source_link_down"])
def test_unusable_inbound_address_fails_before_memory_moves(
        drv_lab, lv, lab_guest, pair, traffic, case):
    a, b = drv_lab.hosts
    my_ip = "198.51.100.99" if case == "not_an_address_of_b" else b.mig_ip
    source, dest = pair(my_ip=my_ip)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    if case == "dest_link_down":
        b.set_link("migration", False)
    elif case == "source_link_down":
        a.set_link("migration", False)
    with traffic() as sent:
        with pytest.raises(exception.MigrationError) as err:
            migrate(source, dest, lab_guest)
    message = str(err.value)
    if case == "dest_link_down":
        assert isinstance(err.value, exception.InboundAddressError)
        assert "198.51.100.12 of host-b" in message and "mig0 is down" in message
        assert err.value.result.progress is None      # no transfer was started
    elif case == "not_an_address_of_b":
        assert isinstance(err.value, exception.InboundAddressError)
        assert "198.51.100.99" in message and "not an address of this host" in message
        assert err.value.result.progress is None
    else:   # the destination is fine, the source cannot reach it: libvirt says why
        assert "198.51.100.12" in message and "unreachable" in message
        assert err.value.result.progress.memory_processed == 0
    assert sum(sent.sent.values()) < 1 << 20, sent.sent   # no guest memory moved
    assert_kept_on_source(lv, drv_lab, lab_guest, watcher)


def test_abort_mid_migration(drv_lab, lv, lab_guest, pair):
    b = drv_lab.hosts[1]
    source, dest = pair(my_ip=b.mig_ip, bandwidth=SLOW)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    run = lv.background(source, dest, lab_guest)
    run.wait_progress(2 * lv.MIB)
    run.migration.abort()
    run.join()
    assert isinstance(run.error, exception.MigrationAborted), run.error
    assert "canceled by client" in str(run.error)
    assert run.error.result.status == flow.ABORTED
    assert run.error.result.progress.state == "cancelled"
    assert_kept_on_source(lv, drv_lab, lab_guest, watcher)


def test_completion_timeout_with_action_abort(drv_lab, lv, lab_guest, pair):
    b = drv_lab.hosts[1]
    source, dest = pair(my_ip=b.mig_ip, bandwidth=SLOW, completion_timeout=1,
                        timeout_action="abort")
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    with pytest.raises(exception.MigrationTimeout) as err:
        migrate(source, dest, lab_guest)
    assert err.value.result.status == flow.TIMED_OUT
    assert err.value.result.timeout_action == "abort"
    assert_kept_on_source(lv, drv_lab, lab_guest, watcher)


def test_completion_timeout_with_force_complete_switches_to_post_copy(
        drv_lab, lv, lab_guest, pair, traffic):
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, bandwidth=SLOW, completion_timeout=1,
                        timeout_action="force_complete", permit_post_copy=True)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    with traffic() as sent:
        result = migrate(source, dest, lab_guest)
    assert result.status == flow.COMPLETED and result.timeout_action == "force_complete"
    assert result.progress.postcopy
    assert sent.share("migration") >= 0.95, sent.sent
    watcher.wait_ticks(5, host="host-b", timeout=30)
    watcher.stop()
    assert lv.domain_state(a, lab_guest) is None
    assert lv.domain_state(b, lab_guest) == (1, True)
    assert len(watcher.boot_ids()) == 1
    lv.assert_counter_continues(watcher, "host-a", "host-b")
    assert watcher.max_bad() == 0


def test_destination_libvirtd_killed_mid_migration(drv_lab, lv, lab_guest, pair):
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, bandwidth=SLOW)
    watcher = lv.start_guest(drv_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    run = lv.background(source, dest, lab_guest)
    run.wait_progress(2 * lv.MIB)
    b.kill_libvirtd()
    run.join()
    assert isinstance(run.error, exception.MigrationError), run.error
    assert run.error.result.running_on == "host-a"
    # the guest never stopped on host-a
    watcher.wait_ticks(5, host="host-a", timeout=30)
    assert lv.domain_state(a, lab_guest) == (1, True)
    # once host-b's libvirtd is back, it kept nothing of the guest...
    b.start_libvirtd()
    deadline = time.monotonic() + 60
    while lab_guest in lv.domain_names(b) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab_guest not in lv.domain_names(b)
    # ...and a retried rollback (what an operator would run) is harmless
    dest.rollback_live_migration_at_destination(
        lab_guest, run.migration.source.check_can_live_migrate_source(
            lab_guest, dest.check_can_live_migrate_destination(lab_guest)))
    assert_kept_on_source(lv, drv_lab, lab_guest, watcher)
