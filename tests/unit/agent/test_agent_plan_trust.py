"""The source agent refuses a destination's plan outside its migration networks."""

import pytest

from migplane.agent import testing

MGMT_B, MIG6_B = "192.0.2.12", "2001:db8:2::11"


def migrate(client, a, b, instance="vm1"):
    record = client(a).post("/v1/migrations", {"instance": instance,
                                               "destination": {"host": "host-b"}})
    return testing.wait_for(client(a), record["id"])


@pytest.mark.parametrize("inbound, rule", [
    (MGMT_B, "management"),   # the destination's management address
    (MIG6_B, "networks"),     # host-a's migration interface is on 2001:db8:1::/64 only
])
def test_by_default_only_the_sources_own_migration_networks_are_allowed(
        world, start_agent, client, assert_rolled_back, inbound, rule):
    world.add_guest("host-a", "vm1", memory_mib=64)
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip=inbound)
    record = migrate(client, a, b)
    assert record["status"] == "failed"
    assert inbound in record["error"] and repr(rule) in record["error"]
    assert world.history == [] and b.agent.slots.running == 0
    assert_rolled_back()


def test_configured_migration_networks_allow_another_network(world, start_agent, client):
    world.add_guest("host-a", "vm1", memory_mib=64)
    a = start_agent("host-a", migration_networks=["2001:db8:2::/64"])
    b = start_agent("host-b", my_live_migration_ip=MIG6_B)
    assert migrate(client, a, b)["status"] == "completed"
    assert world.where("vm1") == ["host-b"] and world.history[-1].data_host.strip("[]") == MIG6_B


def test_explain_shows_the_verdict(world, start_agent, client):
    world.add_guest("host-a", "vm1", memory_mib=64)
    a = start_agent("host-a")
    start_agent("host-b", my_live_migration_ip=MGMT_B)
    plan = client(a).post("/v1/plans", {"instance": "vm1",
                                        "destination": {"host": "host-b"}})
    assert plan["trust"]["allowed"] is False and plan["trust"]["rule"] == "management"
    assert world.hosts["host-b"].prepared == {}


def test_without_a_known_management_interface_the_default_allows_nothing(
        world, start_agent, client, assert_rolled_back):
    world.add_guest("host-a", "vm1", memory_mib=64)
    a = start_agent("host-a")
    start_agent("host-b", my_live_migration_ip="198.51.100.12")
    a.agent.facts.route_to = lambda target: {"dev": None, "error": "unreachable"}
    record = migrate(client, a, None)
    assert record["status"] == "failed" and "migration_networks" in record["error"]
    assert_rolled_back()
