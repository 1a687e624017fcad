"""The flow refuses a destination's plan outside the source's migration networks,
before any memory moves (migplane.core.trust called after resolve_uris)."""

import pytest

from migplane.core import exception
from migplane.core import flow

A, B = "host-a", "host-b"
POLICY = {"migration_networks": ("198.51.100.0/24", "2001:db8:2::/64"),
          "management_networks": ("192.0.2.0/24",)}


@pytest.fixture
def guest(world):
    return world.add_guest(A, "vm1", memory_mib=256, dirty_mib_s=10)


def migrate(make_driver, make_migration, inbound, **policy):
    a, b = make_driver(A), make_driver(B, my_live_migration_ip=inbound)
    settings = a.settings.migration.replace(**dict(POLICY, **policy))
    return make_migration(a, b, settings=settings)


@pytest.mark.parametrize("inbound, rule", [
    ("192.0.2.12", "management"),       # the destination's management address
    ("2001:db8:1::11", "networks"),     # host-a's own v6 network: not an allowed one
])
def test_a_plan_outside_the_networks_is_refused_and_nothing_moves(
        world, make_driver, make_migration, assert_rolled_back, guest, inbound, rule):
    migration = migrate(make_driver, make_migration, inbound)
    if inbound == "2001:db8:1::11":  # make it host-b's so pre_live_migration accepts it
        world.hosts[B].addresses[inbound] = "migration"
    with pytest.raises(exception.PlanRefused) as info:
        migration.run()
    assert inbound in str(info.value) and repr(rule) in str(info.value)
    assert migration.status == flow.FAILED
    assert world.history == [] and world.plane_bytes()["migration"] == 0
    assert_rolled_back(boot_id=guest.boot_id)


def test_the_configured_networks_allow_the_plan(world, make_driver, make_migration, guest):
    result = migrate(make_driver, make_migration, "198.51.100.12").run()
    assert result.status == flow.COMPLETED and world.where("vm1") == [B]


def test_a_destination_that_is_not_the_authenticated_identity_is_refused(
        world, make_driver, make_migration, assert_rolled_back, guest):
    migration = migrate(make_driver, make_migration, "198.51.100.12")
    migration.destination.identity = "host-c"
    with pytest.raises(exception.PlanRefused, match="'identity'.*host-c"):
        migration.run()
    assert world.history == []
    assert_rolled_back()


def test_the_option_is_read_and_a_bad_cidr_names_the_value(host_conf):
    from migplane.core import settings as settings_mod
    conf = host_conf(A, migration_networks=["198.51.100.0/24"])
    assert settings_mod.load(conf).migration.migration_networks == ("198.51.100.0/24",)
    conf = host_conf(A, migration_networks=["198.51.100.0/33"])
    with pytest.raises(exception.ConfigError, match="198.51.100.0/33"):
        settings_mod.load(conf)
