"""``[live_migration] control_plane = migration`` (Nova's behaviour) on the lab.

The control connection goes to the destination's my_live_migration_ip, as Nova
points it at live_migration_inbound_addr; the session lab's libvirtds listen on
every address, as such a deployment's do on the migration network.
"""

from migplane.core import flow


def test_control_connection_to_the_inbound_address(drv_lab, lv, lab_guest, pair):
    a, b = drv_lab.hosts
    source, dest = pair(my_ip=b.mig_ip, control_plane="migration")
    watcher = lv.start_guest(drv_lab, lab_guest)
    result = flow.LiveMigration(lab_guest, source, dest, source.settings.migration).run()
    assert result.status == flow.COMPLETED
    assert result.uris.control_uri == "qemu+tcp://%s/system" % b.mig_ip
    assert result.uris.data_uri == "tcp://%s" % b.mig_ip
    watcher.wait_ticks(3, host="host-b", timeout=30)  # resumed after the handover
    lv.assert_counter_continues(watcher, "host-a", "host-b")
    watcher.stop()
    assert lv.domain_state(b, lab_guest)[0] == 1  # running on host-b
    assert lv.domain_state(a, lab_guest) is None
