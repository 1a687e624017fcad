"""The fake driver is never more permissive than libvirt (migplane.drivers.fake.driver)."""

import pytest

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import units
from migplane.core import uri
from migplane.core.settings import MigrationSettings
from migplane.drivers.fake import driver as fake_driver
from migplane.drivers.fake import opts as fake_opts
from migplane.drivers.fake import world as world_mod

MiB = units.MiB
A, B = "host-a", "host-b"
B_MIG4 = "198.51.100.12"


def uris(control="qemu+tcp://host-b/system", data="tcp://" + B_MIG4, listen=B_MIG4,
         disks=None, tls=None, plane="migration"):
    return uri.MigrationURIs(control_uri=control, data_uri=data, listen_address=listen,
                             disks_uri=disks, tls_destination=tls, bulk_host=B_MIG4,
                             plane=plane)


@pytest.fixture
def prepared(world, drivers):
    """vm1 on host-a, checked and prepared on host-b: ready for live_migration()."""

    def prepare(block=False, **guest):
        world.add_guest(A, "vm1", **dict({"memory_mib": 256}, **guest))
        a, b = drivers
        data = b.check_can_live_migrate_destination("vm1", block)
        data = a.check_can_live_migrate_source("vm1", data)
        return a, b, b.pre_live_migration("vm1", data)

    return prepare


def assert_nothing_moved(world):
    assert world.transfers == {}
    assert world.history == []
    assert world.hosts[B].guests == {}
    assert world.plane_bytes() == {"management": 0, "migration": 0}


def test_describe():
    info = fake_driver.FakeDriver.describe(None)
    assert info.name == "fake" and info.capabilities.data_uri
    assert driver_mod.DriverInfo.from_dict(info.to_dict()) == info


def test_list_opts():
    assert fake_opts.list_opts() == [(fake_opts.GROUP, fake_opts.fake_opts)]


def test_host_name_from_the_fake_group(world, host_conf):
    conf = host_conf("ignored-hostname")
    conf.set_override("host", B, group=fake_opts.GROUP)
    drv = fake_driver.FakeDriver(conf)
    assert drv.host is world.hosts[B]


def test_unknown_host_is_a_config_error(world, host_conf):
    with pytest.raises(exception.ConfigError) as info:
        fake_driver.FakeDriver(host_conf("host-x"))
    assert "host-x" in str(info.value) and "unit-tests" in str(info.value)


def test_unknown_host_in_an_empty_world(world, host_conf):
    conf = host_conf(A)
    conf.set_override("world", "empty-world", group=fake_opts.GROUP)
    try:
        with pytest.raises(exception.ConfigError, match=r"hosts: none"):
            fake_driver.FakeDriver(conf)
    finally:
        world_mod.reset_world("empty-world")


def test_local_addresses(drivers):
    a, _ = drivers
    assert a.local_addresses() == sorted(["192.0.2.11", "198.51.100.11", "2001:db8:1::11"])


def test_instance_info(world, drivers):
    world.add_guest(A, "vm1", memory_mib=64, disk_mib=8)
    a, b = drivers
    assert a.get_instance_info("vm1") == driver_mod.InstanceInfo("vm1", "running",
                                                                 64 * MiB, 8 * MiB)
    with pytest.raises(exception.InstanceNotFound, match="vm1 is not on host host-b"):
        b.get_instance_info("vm1")


def test_pre_live_migration_returns_the_inbound_address(prepared, world):
    _, _, data = prepared()
    assert data.target_connect_addr == B_MIG4
    assert data.inbound_addr_source == md.INBOUND_FROM_OPTION
    assert dict(data.listen_addrs) == {"migration": B_MIG4}
    assert data.driver_data["memory_bytes"] == 256 * MiB
    assert "vm1" in world.hosts[B].prepared


def test_destination_refuses_a_guest_it_already_runs(world, drivers):
    world.add_guest(B, "vm1")
    with pytest.raises(exception.DestinationCheckFailed, match="already runs here"):
        drivers[1].check_can_live_migrate_destination("vm1")


def test_destination_refuses_a_guest_that_does_not_fit(world, drivers):
    world.hosts[B].memory_bytes = 128 * MiB
    world.add_guest(A, "vm1", memory_mib=256)
    a, b = drivers
    data = a.check_can_live_migrate_source("vm1",
                                           b.check_can_live_migrate_destination("vm1"))
    with pytest.raises(exception.DestinationCheckFailed, match="needs 268435456 bytes"):
        b.pre_live_migration("vm1", data)
    assert world.hosts[B].prepared == {}


def test_source_refuses_a_guest_that_is_not_running(world, drivers):
    world.add_guest(A, "vm1").state = "paused"
    with pytest.raises(exception.InstanceNotFound):
        drivers[0].check_can_live_migrate_source("vm1", md.MigrateData(dest_hostname=B))


def test_non_shared_disk_without_block_migration(world, drivers):
    world.add_guest(A, "vm1", disk_mib=64)
    a, b = drivers
    data = b.check_can_live_migrate_destination("vm1", block_migration=False)
    with pytest.raises(exception.SourceCheckFailed) as info:
        a.check_can_live_migrate_source("vm1", data)
    assert "not on shared storage" in str(info.value) and A in str(info.value)


def test_shared_storage_needs_no_block_migration(world, drivers):
    world.hosts[A].shared_storage = True
    world.add_guest(A, "vm1", disk_mib=64)
    a, b = drivers
    data = a.check_can_live_migrate_source("vm1",
                                           b.check_can_live_migrate_destination("vm1"))
    assert data.driver_data["disk_bytes"] == 64 * MiB


def test_block_migration_requires_the_pre_created_disk(world, drivers):
    world.add_guest(A, "vm1", disk_mib=64)
    a, b = drivers
    data = a.check_can_live_migrate_source("vm1", b.check_can_live_migrate_destination(
        "vm1", block_migration=True))
    # pre_live_migration on host-b (which creates the disk) was skipped
    with pytest.raises(exception.MigrationError, match="no pre-created disk"):
        a.live_migration("vm1", data, uris(), MigrationSettings())
    assert_nothing_moved(world)


def test_block_migration_with_the_pre_created_disk(prepared, world):
    a, _, data = prepared(block=True, disk_mib=64)
    assert world.hosts[B].disks == {"vm1": 0}
    a.live_migration("vm1", data, uris(disks="tcp://" + B_MIG4), MigrationSettings())
    assert world.transfers["vm1"].disk_remaining == 64 * MiB


def test_data_uri_not_an_address_of_the_destination(prepared, world):
    a, _, data = prepared()
    for wrong in ("tcp://198.51.100.13", "tcp://198.51.100.11", "tcp://203.0.113.9",
                  "tcp://host-c"):
        with pytest.raises(exception.MigrationError) as info:
            a.live_migration("vm1", data, uris(data=wrong), MigrationSettings())
        assert f"unable to connect to {wrong[6:]}" in str(info.value)
        assert "not the destination host-b" in str(info.value)
    assert_nothing_moved(world)


def test_control_uri_not_the_destination(prepared, world):
    a, _, data = prepared()
    with pytest.raises(exception.MigrationError, match="not the destination"):
        a.live_migration("vm1", data, uris(control="qemu+tcp://host-c/system"),
                         MigrationSettings())
    assert_nothing_moved(world)


@pytest.mark.parametrize("control, data", [
    ("http://host-b/system", "tcp://" + B_MIG4),
    ("qemu+rdma://host-b/system", "tcp://" + B_MIG4),
    ("qemu+tcp://host-b/system", "rdma://" + B_MIG4),
])
def test_unsupported_uris(prepared, world, control, data):
    a, _, migrate_data = prepared()
    with pytest.raises(exception.UnsupportedFeature):
        a.live_migration("vm1", migrate_data, uris(control=control, data=data),
                         MigrationSettings())
    assert_nothing_moved(world)


def test_listen_address_not_the_destinations(prepared, world):
    a, _, data = prepared()
    for wrong in ("198.51.100.11", "203.0.113.9"):
        with pytest.raises(exception.MigrationError, match="Cannot assign requested"):
            a.live_migration("vm1", data, uris(listen=wrong), MigrationSettings())
    assert_nothing_moved(world)


def test_plane_link_down_refuses_to_connect(prepared, world):
    a, _, data = prepared()
    world.set_link(B, "migration", False)
    with pytest.raises(exception.MigrationError, match="No route to host"):
        a.live_migration("vm1", data, uris(), MigrationSettings())
    assert_nothing_moved(world)


def test_link_local_without_zone_cannot_be_dialed(prepared, world):
    world.hosts[B].addresses["fe80::12"] = "migration"
    a, _, data = prepared()
    with pytest.raises(exception.MigrationError, match="needs a zone id"):
        a.live_migration("vm1", data, uris(data="tcp://[fe80::12]", listen=None),
                         MigrationSettings())
    a.live_migration("vm1", data, uris(data="tcp://[fe80::12%25mig0]", listen=None),
                     MigrationSettings())
    assert world.history[-1].plane == "migration"


def test_tls_name_mismatch(prepared, world):
    world.hosts[B].tls_names = ("host-b", "host-b.example")
    a, _, data = prepared()
    tls = MigrationSettings(native_tls=True)
    with pytest.raises(exception.MigrationError) as info:
        a.live_migration("vm1", data, uris(), tls)
    assert f"Certificate does not match the hostname {B_MIG4}" in str(info.value)
    assert "host-b, host-b.example" in str(info.value)
    assert_nothing_moved(world)
    with pytest.raises(exception.MigrationError, match="does not match the hostname host-c"):
        a.live_migration("vm1", data, uris(tls="host-c"), tls)
    a.live_migration("vm1", data, uris(tls="host-b"), tls)
    assert world.transfers["vm1"].state == "running"


def test_tls_on_the_host_name_legacy(prepared, world):
    world.hosts[B].tls_names = ("host-b",)
    a, _, data = prepared()
    a.live_migration("vm1", data, uris(data=None, listen=None, plane="management"),
                     MigrationSettings(native_tls=True))
    assert world.transfers["vm1"].plane == "management"
    assert world.transfers["vm1"].data_host == "host-b"


def test_destination_daemon_down_refuses_to_connect(prepared, world):
    a, _, data = prepared()
    world.kill_daemon(B)
    with pytest.raises(exception.MigrationError, match="Connection refused"):
        a.live_migration("vm1", data, uris(), MigrationSettings())


def test_daemon_down_makes_every_step_fail(world, drivers):
    world.kill_daemon(A)
    with pytest.raises(exception.HypervisorUnavailable, match="host-a"):
        drivers[0].get_instance_info("vm1")


def test_one_job_per_guest(prepared, world):
    a, _, data = prepared()
    a.live_migration("vm1", data, uris(), MigrationSettings())
    with pytest.raises(exception.MigrationError, match="already running"):
        a.live_migration("vm1", data, uris(), MigrationSettings())


def test_job_queries_without_a_job(prepared, world):
    a, b, _ = prepared()
    for call in (lambda: a.get_job_progress("vm1"), lambda: a.abort_job("vm1"),
                 lambda: a.force_complete("vm1", False), lambda: a.set_max_downtime("vm1", 9),
                 lambda: b.get_job_progress("vm1")):
        with pytest.raises(exception.NoActiveMigration):
            call()


def test_progress_and_completion(prepared, world):
    a, b, data = prepared()
    a.live_migration("vm1", data, uris(), MigrationSettings())
    first = a.get_job_progress("vm1")
    assert first.state == driver_mod.JOB_RUNNING and first.data_processed == 0
    assert world.hosts[B].guests["vm1"].state == "incoming"
    world.clock.sleep(1.0)
    mid = a.get_job_progress("vm1")
    assert mid.data_processed == pytest.approx(100 * MiB, rel=0.02)
    assert 0 < mid.percent < 100
    world.clock.sleep(5.0)
    done = a.get_job_progress("vm1")
    assert done.state == driver_mod.JOB_COMPLETED and done.downtime_ms > 0
    with pytest.raises(exception.NoActiveMigration):
        a.abort_job("vm1")
    b.post_live_migration_at_destination("vm1", data)
    a.post_live_migration_at_source("vm1", data)
    assert world.where("vm1") == [B] and world.transfers == {}
    assert world.hosts[B].guests["vm1"].persistent


def test_bandwidth_limit(prepared, world):
    a, _, data = prepared()
    a.live_migration("vm1", data, uris(), MigrationSettings(bandwidth_mib=10))
    world.clock.sleep(1.0)
    assert a.get_job_progress("vm1").data_processed == pytest.approx(10 * MiB, rel=0.02)


def test_abort_job(prepared, world):
    a, b, data = prepared()
    a.live_migration("vm1", data, uris(), MigrationSettings())
    world.clock.sleep(0.5)
    a.abort_job("vm1")
    progress = a.get_job_progress("vm1")
    assert progress.state == driver_mod.JOB_CANCELLED and "canceled" in progress.error
    assert world.hosts[B].guests == {}
    a.rollback_live_migration_at_source("vm1", data)
    b.rollback_live_migration_at_destination("vm1", data)
    b.rollback_live_migration_at_destination("vm1", data)  # idempotent
    assert world.where("vm1") == [A] and world.hosts[B].prepared == {}


def test_post_copy_force_complete_needs_permit_post_copy(prepared, world):
    a, _, data = prepared(dirty_mib_s=150)
    a.live_migration("vm1", data, uris(), MigrationSettings(permit_post_copy=False))
    with pytest.raises(exception.MigrationError, match="post-copy was not enabled"):
        a.force_complete("vm1", post_copy=True)
    assert world.transfers["vm1"].postcopy is False
    assert world.hosts[A].guests["vm1"].state == "running"


def test_post_copy_switch_and_no_abort_after(prepared, world):
    a, _, data = prepared(dirty_mib_s=150)
    a.live_migration("vm1", data, uris(), MigrationSettings(permit_post_copy=True))
    world.clock.sleep(0.5)
    a.force_complete("vm1", post_copy=True)
    assert world.hosts[B].guests["vm1"].state == "running"
    assert world.hosts[A].guests["vm1"].state == "paused"
    with pytest.raises(exception.MigrationError, match="post-copy mode cannot be aborted"):
        a.abort_job("vm1")
    world.clock.sleep(10)
    progress = a.get_job_progress("vm1")
    assert progress.state == driver_mod.JOB_COMPLETED and progress.postcopy


def test_force_complete_by_pausing(prepared, world):
    a, _, data = prepared(dirty_mib_s=150)
    a.live_migration("vm1", data, uris(), MigrationSettings())
    world.clock.sleep(3.0)
    assert a.get_job_progress("vm1").state == driver_mod.JOB_RUNNING  # does not converge
    a.force_complete("vm1", post_copy=False)
    assert world.hosts[A].guests["vm1"].state == "paused"
    world.clock.sleep(6.0)
    assert a.get_job_progress("vm1").state == driver_mod.JOB_COMPLETED


def test_rollback_at_source_resumes_a_paused_guest(prepared, world):
    a, b, data = prepared(dirty_mib_s=150)
    a.live_migration("vm1", data, uris(), MigrationSettings())
    a.force_complete("vm1", post_copy=False)
    a.abort_job("vm1")
    a.rollback_live_migration_at_source("vm1", data)
    b.rollback_live_migration_at_destination("vm1", data)
    assert world.hosts[A].guests["vm1"].state == "running"
    assert world.where("vm1") == [A]


def test_set_max_downtime_lets_a_busy_guest_converge(prepared, world):
    a, _, data = prepared(dirty_mib_s=60)
    a.live_migration("vm1", data, uris(), MigrationSettings())
    a.set_max_downtime("vm1", 30000)
    world.clock.sleep(0.05)
    assert a.get_job_progress("vm1").state == driver_mod.JOB_COMPLETED


def test_every_migrate_data_crosses_as_json(drivers, world):
    world.add_guest(A, "vm1")
    a, b = drivers

    class NotSerialisable(md.MigrateData):
        def to_primitive(self, target_version=None):
            raise TypeError("not serialisable")

    bad = NotSerialisable(dest_hostname=B)
    for call in (lambda: a.check_can_live_migrate_source("vm1", bad),
                 lambda: b.pre_live_migration("vm1", bad),
                 lambda: b.post_live_migration_at_destination("vm1", bad),
                 lambda: b.rollback_live_migration_at_destination("vm1", bad),
                 lambda: a.post_live_migration_at_source("vm1", bad),
                 lambda: a.rollback_live_migration_at_source("vm1", bad),
                 lambda: a.live_migration("vm1", bad, uris(), MigrationSettings())):
        with pytest.raises(TypeError, match="not serialisable"):
            call()


def test_post_at_source_leaves_a_guest_that_still_runs(prepared, world):
    a, _, data = prepared()
    a.post_live_migration_at_source("vm1", data)
    assert world.where("vm1") == ["host-a"]
