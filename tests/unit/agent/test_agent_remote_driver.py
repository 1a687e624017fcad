"""RemoteDriver: the core flow with both hosts behind their agents, and the slot API."""

import pytest

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow

MIG_B = "198.51.100.12"


def remote(local, client):
    return client_mod.RemoteDriver(client(local))


def test_the_core_flow_runs_with_two_remote_drivers(pair, world, client):
    a, b = pair
    source, dest = remote(a, client), remote(b, client)
    assert (source.hostname, dest.hostname) == ("host-a", "host-b")
    assert source.describe().name == "fake"
    assert MIG_B in dest.local_addresses()
    info = source.get_instance_info("vm1")
    assert isinstance(info, driver_mod.InstanceInfo) and info.memory_bytes == 256 << 20
    migration = flow.LiveMigration("vm1", source, dest, a.agent.settings.migration,
                                   clock=world.clock.now, sleep=world.clock.sleep)
    result = migration.run()
    assert result.status == flow.COMPLETED and result.running_on == "host-b"
    assert result.uris.data_uri == "tcp://%s" % MIG_B
    assert result.progress.downtime_ms is not None
    assert world.where("vm1") == ["host-b"]


def test_abort_force_and_downtime_cross_the_wire(pair, world, client):
    a, b = pair
    world.add_guest("host-a", "slow", memory_mib=512, dirty_mib_s=150)
    source, dest = remote(a, client), remote(b, client)
    data = dest.pre_live_migration(
        "slow", source.check_can_live_migrate_source(
            "slow", dest.check_can_live_migrate_destination("slow")))
    from migplane.core import uri
    settings = a.agent.settings.migration.replace(permit_post_copy=True)
    uris = uri.resolve(settings, data, source.describe().capabilities,
                       dest_hostname="host-b")
    source.live_migration("slow", data, uris, settings)
    source.set_max_downtime("slow", 300)
    assert world.transfers["slow"].max_downtime_ms == 300
    assert source.get_job_progress("slow").state == driver_mod.JOB_RUNNING
    source.abort_job("slow")
    assert source.get_job_progress("slow").state == driver_mod.JOB_CANCELLED
    source.rollback_live_migration_at_source("slow", data)
    dest.rollback_live_migration_at_destination("slow", data)
    assert world.where("slow") == ["host-a"]
    with pytest.raises(exception.NoActiveMigration):
        source.force_complete("slow", post_copy=True)


def test_remote_errors_keep_their_class(pair, client):
    a, b = pair
    with pytest.raises(exception.InstanceNotFound, match="ghost"):
        remote(a, client).get_instance_info("ghost")
    with pytest.raises(exception.DestinationCheckFailed):
        remote(a, client).check_can_live_migrate_destination("vm1")  # it runs there


def test_plan_inbound_prepares_nothing(pair, world, client):
    a, b = pair
    data = remote(b, client).plan_inbound("vm1", block_migration=True)
    assert data.target_connect_addr == MIG_B and data.block_migration
    assert world.hosts["host-b"].prepared == {} and world.hosts["host-b"].disks == {}


def test_slot_api(pair, client):
    a, b = pair
    c = client(b)
    answer = c.take_slot("m1", "host-a", "vm1")
    assert answer["lease_s"] == b.agent.slots.lease_s and c.slot_lease_s == answer["lease_s"]
    listed = c.get("/v1/slots")
    assert listed["running"] == 1 and listed["leases"][0]["migration_id"] == "m1"
    assert c.renew_slot("m1")["migration_id"] == "m1"
    with pytest.raises(exception.TooManyMigrations) as busy:
        c.take_slot("m2", "host-c", "vm2")
    assert busy.value.kwargs["when_busy"] == "wait"
    assert c.release_slot("m1")["released"] is True
    for call in (lambda: c.renew_slot("m1"), lambda: c.release_slot("m1")):
        with pytest.raises(errors.NotFound):
            call()
    with pytest.raises(errors.BadRequest, match="migration_id"):
        c.post("/v1/slots", {"migration_id": "a/b", "source": "x", "instance": "vm1"})


def test_steps_are_listed(pair, client):
    a, _ = pair
    steps = client(a).get("/v1/steps")["steps"]
    assert "pre_live_migration" in steps and "plan_inbound" in steps
