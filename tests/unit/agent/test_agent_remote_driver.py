"""RemoteDriver (the destination behind its agent), peer authentication, the slot API."""

import pytest

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import slots as slots_mod
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow
from migplane.core import versioned
from migplane.core.settings import ConcurrencySettings

MIG_B = "198.51.100.12"
MIGRATE_DATA = {versioned.NAME_KEY: "MigrateData", versioned.VERSION_KEY: "1.0",
                versioned.DATA_KEY: {}}


@pytest.fixture
def peer_client():
    """A client of agent ``to`` as agent ``of`` calls it: its certificate, no token."""
    def make(of, to, name=None):
        return client_mod.AgentClient(to.url, None, ca_file=of.agent.options.ca_file,
                                      timeout=30, ssl_context=of.agent.client_context,
                                      peer_name=name or to.agent.hostname)
    return make


def remote(of, to, peer_client, migration_id=None):
    return client_mod.RemoteDriver(peer_client(of, to), identity=to.agent.hostname,
                                   migration_id=migration_id)


def test_the_core_flow_runs_with_a_remote_destination(pair, world, peer_client):
    a, b = pair
    dest = remote(a, b, peer_client, migration_id="m1")
    assert dest.hostname == "host-b" and MIG_B in dest.local_addresses()
    limiter = slots_mod.MigrationSlots(a.agent.slots, dest.client, "m1", "vm1")
    settings = a.agent.settings.migration.replace(migration_networks=("198.51.100.0/24",))
    migration = flow.LiveMigration("vm1", a.agent.driver, dest, settings, limiter=limiter,
                                   clock=world.clock.now, sleep=world.clock.sleep)
    result = migration.run()
    assert result.status == flow.COMPLETED and result.running_on == "host-b"
    assert result.uris.data_uri == "tcp://%s" % MIG_B
    assert world.where("vm1") == ["host-b"] and b.agent.slots.running == 0


def test_source_side_steps_are_not_remote_operations(pair, world, peer_client, client):
    a, b = pair
    body = {"instance": "vm1", "migrate_data": MIGRATE_DATA, "settings": {},
            "uris": {"control_uri": "qemu+tcp://evil.example.com/system",
                     "bulk_host": "evil.example.com", "plane": "migration"}}
    with pytest.raises(errors.Unauthorized):  # a token holder: not a peer
        client(a).post("/v1/steps/live_migration", body)
    for name in ("live_migration", "get_job_progress", "abort_job", "force_complete",
                 "set_max_downtime", "check_can_live_migrate_source",
                 "post_live_migration_at_source", "rollback_live_migration_at_source"):
        with pytest.raises(errors.NotFound, match=name):  # even from a peer
            peer_client(b, a).step(name, **body)
    proxy = remote(b, a, peer_client)
    assert isinstance(proxy, driver_mod.DestinationDriver)
    assert not isinstance(proxy, driver_mod.SourceDriver)
    assert not hasattr(proxy, "live_migration")
    assert world.transfers == {} and world.where("vm1") == ["host-a"]


def test_destination_steps_need_the_callers_slot(world, start_agent, peer_client, client):
    world.add_guest("host-a", "vm1")
    a, b, c = start_agent("host-a"), start_agent("host-b"), start_agent("host-c")
    peer_client(a, b).take_slot("m1", "host-a", "vm1")
    step = {"instance": "vm1", "migrate_data": MIGRATE_DATA}
    with pytest.raises(errors.Forbidden, match="no slot"):  # another peer
        peer_client(c, b).step("pre_live_migration", migration_id="m1", **step)
    with pytest.raises(errors.Forbidden, match="no slot"):  # another instance
        peer_client(a, b).step("pre_live_migration", migration_id="m1",
                               **dict(step, instance="vm2"))
    with pytest.raises(errors.Forbidden, match="no slot"):  # no such migration
        peer_client(a, b).step("pre_live_migration", migration_id="m2", **step)
    with pytest.raises(errors.Unauthorized, match="peer agents only"):  # a token holder
        client(b).post("/v1/steps/pre_live_migration", dict(step, migration_id="m1"))
    with pytest.raises(errors.BadRequest, match="migration_id"):
        peer_client(a, b).step("pre_live_migration", **step)
    assert world.hosts["host-b"].prepared == {}
    data = peer_client(a, b).step("check_can_live_migrate_destination", instance="vm1",
                                  migration_id="m1")
    assert data["migrate_data"] is not None


def test_peer_calls_need_a_peer_certificate(world, start_agent, peer_client, client):
    a = start_agent("host-a")
    b = start_agent("host-b", peers=False)  # knows nobody
    with pytest.raises(errors.Unauthorized, match="peer agents only"):
        peer_client(a, b).take_slot("m1", "host-a", "vm1")
    with pytest.raises(errors.Unauthorized):  # a peer certificate is no operator
        peer_client(a, b).get("/v1/migrations")
    assert b.agent.slots.running == 0


def test_slots_cannot_be_taken_for_a_made_up_source(pair, peer_client, client):
    a, b = pair
    with pytest.raises(errors.Forbidden, match="'host-c' is not the authenticated"):
        peer_client(a, b).take_slot("m1", "host-c", "vm1")
    with pytest.raises(errors.Unauthorized):
        client(b).post("/v1/slots", {"migration_id": "m1", "source": "host-a",
                                     "instance": "vm1"})
    assert b.agent.slots.running == 0


def test_a_lease_cannot_be_renewed_forever():
    now = [0.0]
    slots = slots_mod.HostSlots("host-b", ConcurrencySettings(max_concurrent=1),
                                lease_s=30, max_lifetime_s=100, clock=lambda: now[0])
    slots.lease("m1", "host-a", "vm1")
    for now[0] in range(10, 100, 10):
        assert slots.renew("m1", source="host-a") is not None
    assert slots.renew("m1", source="host-c") is None  # only its source renews it
    now[0] = 100.5
    assert slots.renew("m1", source="host-a") is None and slots.running == 0


def test_remote_errors_keep_their_class(pair, world, peer_client):
    a, b = pair
    world.add_guest("host-b", "vm9")
    with pytest.raises(exception.DestinationCheckFailed):  # it runs there already
        peer_client(a, b).take_slot("m1", "host-a", "vm9")
    peer_client(a, b).take_slot("m2", "host-a", "vm1")
    with pytest.raises(exception.InstanceNotFound):
        remote(a, b, peer_client, "m2").get_instance_info("vm1")


def test_plan_inbound_prepares_nothing(pair, world, peer_client):
    a, b = pair
    data = remote(a, b, peer_client).plan_inbound("vm1", block_migration=True)
    assert data.target_connect_addr == MIG_B and data.block_migration
    assert world.hosts["host-b"].prepared == {} and world.hosts["host-b"].disks == {}


def test_slot_api(world, start_agent, peer_client, client):
    a, b, c = start_agent("host-a"), start_agent("host-b"), start_agent("host-c")
    p = peer_client(a, b)
    answer = p.take_slot("m1", "host-a", "vm1")
    assert answer["lease_s"] == b.agent.slots.lease_s and p.slot_lease_s == answer["lease_s"]
    listed = client(b).get("/v1/slots")
    assert listed["running"] == 1 and listed["leases"][0]["migration_id"] == "m1"
    assert p.renew_slot("m1")["migration_id"] == "m1"
    with pytest.raises(errors.NotFound):  # another peer cannot renew or release it
        peer_client(c, b).renew_slot("m1")
    with pytest.raises(exception.TooManyMigrations) as busy:
        peer_client(c, b).take_slot("m2", "host-c", "vm2")
    assert busy.value.kwargs["when_busy"] == "wait"
    assert p.release_slot("m1")["released"] is True
    for call in (lambda: p.renew_slot("m1"), lambda: p.release_slot("m1")):
        with pytest.raises(errors.NotFound):
            call()
    with pytest.raises(errors.BadRequest, match="migration_id"):
        p.post("/v1/slots", {"migration_id": "a/b", "source": "host-a", "instance": "vm1"})


def test_steps_are_listed(pair, client):
    a, _ = pair
    steps = client(a).get("/v1/steps")["steps"]
    assert "pre_live_migration" in steps and "plan_inbound" in steps
    assert "live_migration" not in steps


def test_operators_may_use_their_own_client_certificate(world, start_agent, pki, client):
    from migplane.core import exception as exc
    a = start_agent("host-a", agent_options={"operator_names": ["ops-1"]})
    b = start_agent("host-b")
    ops = client_mod.AgentClient(a.url, None, cert=pki.issue("ops-1"))
    assert ops.get("/v1/migrations") == {"migrations": []}
    with pytest.raises(errors.Unauthorized):  # an operator is not a peer
        ops.take_slot("m1", "ops-1", "vm1")
    with pytest.raises(errors.Unauthorized):  # nor a peer an operator
        client_mod.AgentClient(a.url, None, cert=(b.agent.options.cert_file,
                                                  b.agent.options.key_file)).get(
            "/v1/migrations")
    with pytest.raises(exc.ConfigError, match="also a peer"):
        start_agent("host-c", agent_options={"operator_names": ["host-a"],
                                             "peers": {"host-a": a.url}})
