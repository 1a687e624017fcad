"""The simulated world behind the fake driver (migplane.drivers.fake.world)."""

import pytest

from migplane.core import exception
from migplane.core import units
from migplane.drivers.fake import world as world_mod

MiB = units.MiB


def test_worlds_are_shared_by_name_and_reset():
    world_mod.reset_world("w-test")
    try:
        first = world_mod.get_world("w-test")
        assert world_mod.get_world("w-test") is first
        world_mod.reset_world("w-test")
        assert world_mod.get_world("w-test") is not first
    finally:
        world_mod.reset_world("w-test")
    world_mod.reset_world("never-created")  # no error


def test_the_fixture_world_is_fresh(world):
    assert world.clock.now() == 0.0
    assert world.history == [] and world.faults == {} and world.timers == []
    assert sorted(world.hosts) == ["host-a", "host-b", "host-c"]
    assert all(h.guests == {} for h in world.hosts.values())


def test_sim_clock_only_moves_on_sleep(world):
    assert world.clock.now() == 0.0
    world.clock.sleep(1.234)
    assert world.clock.now() == pytest.approx(1.234)
    world.clock.sleep(-5)
    assert world.clock.now() == pytest.approx(1.234)


def test_timers_fire_once_at_their_time(world):
    fired = []
    world.at(0.5, lambda: fired.append(world.clock.now()))
    world.at(0.2, lambda: fired.append(world.clock.now()))
    world.clock.sleep(0.3)
    assert fired == [pytest.approx(0.2)]
    world.clock.sleep(1.0)
    assert fired == [pytest.approx(0.2), pytest.approx(0.5)]
    assert world.timers == []


def test_running_guests_tick_and_busy_ones_dirty_memory(world):
    idle = world.add_guest("host-a", "idle")
    busy = world.add_guest("host-a", "busy", dirty_mib_s=1)
    stopped = world.add_guest("host-a", "stopped")
    stopped.state = "shutoff"
    world.clock.sleep(0.1)
    assert idle.ticks == busy.ticks == 10 and stopped.ticks == 0
    assert idle.generation == 0 and busy.generation == 10
    assert idle.boot_id != busy.boot_id


def test_add_host_and_resolve(world):
    host = world.add_host("host-z", mgmt=["192.0.2.99", "2001:DB8:9::1"],
                          mig="fe80::99%mig0")
    assert host.addresses == {"192.0.2.99": "management", "2001:db8:9::1": "management",
                              "fe80::99%mig0": "migration"}
    assert world.resolve("host-z") == (host, "management")
    assert world.resolve("2001:db8:9::1") == (host, "management")
    assert world.resolve("fe80::99%mig0") == (host, "migration")
    assert world.resolve("fe80::99%other") == (host, "migration")
    assert world.resolve("fe80::99") == (host, "migration")
    assert world.resolve("198.51.100.12") == (world.hosts["host-b"], "migration")
    assert world.resolve("203.0.113.1") == (None, None)
    assert host.plane_of("203.0.113.1") is None


def test_add_guest_with_a_disk(world):
    guest = world.add_guest("host-a", "vm1", memory_mib=64, disk_mib=32)
    assert guest.memory_bytes == 64 * MiB and guest.disk_bytes == 32 * MiB
    assert world.hosts["host-a"].disks == {"vm1": 32 * MiB}
    assert world.where("vm1") == ["host-a"] and world.defined_on("vm1") == ["host-a"]


def test_where_counts_running_and_paused_guests_only(world):
    world.add_guest("host-a", "vm1").state = "paused"
    world.add_guest("host-b", "vm1").state = "incoming"
    world.add_guest("host-c", "vm1").state = "shutoff"
    assert world.where("vm1") == ["host-a"]
    assert world.defined_on("vm1") == ["host-a", "host-b", "host-c"]


def test_faults_fire_once(world, make_driver):
    world.add_guest("host-a", "vm1")
    a = make_driver("host-a")
    custom = exception.HypervisorUnavailable(host="host-a", reason="custom")
    world.fail("host-a", "get_instance_info", custom)
    with pytest.raises(exception.HypervisorUnavailable) as info:
        a.get_instance_info("vm1")
    assert info.value is custom
    assert a.get_instance_info("vm1").name == "vm1"
    world.fail("host-b", "get_instance_info")  # another host: no effect on host-a
    assert a.get_instance_info("vm1").name == "vm1"
    assert world.take_fault("host-b", "get_instance_info") is not None
    assert world.take_fault("host-b", "get_instance_info") is None


def test_default_fault_names_step_and_host(world):
    world.fail("host-b", "pre_live_migration")
    err = world.take_fault("host-b", "pre_live_migration")
    assert isinstance(err, RuntimeError)
    assert str(err) == "injected fault in pre_live_migration on host-b"


def test_kill_and_restart_daemon_of_the_destination(world):
    source, dest = world.hosts["host-a"], world.hosts["host-b"]
    world.add_guest("host-a", "vm1")
    world.add_guest("host-b", "vm1").state = "incoming"
    world.add_guest("host-b", "other")
    transfer = world_mod.Transfer(instance="vm1", source=source, dest=dest,
                                  plane="migration", data_host="198.51.100.12",
                                  control_host="host-b", settings=None, block=False)
    world.transfers["vm1"] = transfer
    world.kill_daemon("host-b")
    assert not dest.daemon_alive
    assert transfer.state == "failed" and "Connection reset" in transfer.error
    assert "vm1" in dest.guests  # nobody cleaned up the incoming guest yet
    world.restart_daemon("host-b")
    assert dest.daemon_alive
    assert sorted(dest.guests) == ["other"]
    assert source.guests["vm1"].state == "running"


def test_kill_daemon_of_the_source_drops_the_incoming_guest(world):
    source, dest = world.hosts["host-a"], world.hosts["host-b"]
    world.add_guest("host-a", "vm1")
    world.add_guest("host-b", "vm1").state = "incoming"
    world.transfers["vm1"] = world_mod.Transfer(
        instance="vm1", source=source, dest=dest, plane="migration",
        data_host="198.51.100.12", control_host="host-b", settings=None, block=False)
    world.kill_daemon("host-c")  # not involved
    assert world.transfers["vm1"].state == "running"
    world.kill_daemon("host-a")
    assert world.transfers["vm1"].state == "failed"
    assert dest.guests == {}
    assert source.guests["vm1"].state == "running"  # QEMU outlives its daemon


def test_plane_bytes_sums_over_hosts(world):
    world.hosts["host-a"].bytes_sent["migration"] = 10.6
    world.hosts["host-b"].bytes_sent["migration"] = 5
    world.hosts["host-b"].bytes_sent["management"] = 1
    assert world.plane_bytes() == {"management": 1, "migration": 15}
