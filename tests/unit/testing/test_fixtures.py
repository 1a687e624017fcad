"""migplane.testing.fixtures: what embedding stacks build their tests on."""

import pytest

from migplane.core import exception
from migplane.core import settings
from migplane.drivers.fake import world as world_mod
from migplane.testing import fixtures as mp_fixtures


def test_host_conf_fixture_gives_a_host_and_undoes_its_overrides():
    fixture = mp_fixtures.HostConfFixture("host-b", "198.51.100.12", bandwidth=50)
    with fixture:
        fixture.config(when_busy="refuse")
        fixture.config(group=None, my_live_migration_ip="198.51.100.13")
        loaded = settings.load(fixture.conf)
        assert loaded.host.hostname == "host-b"
        assert loaded.host.my_live_migration_ip == "198.51.100.13"
        assert loaded.migration.bandwidth_mib == 50
        assert loaded.concurrency.when_busy == "refuse"
        conf = fixture.conf
    assert conf.live_migration.when_busy == "wait"  # cleaned up


def test_fake_world_fixture_migrates_and_resets_its_world():
    with mp_fixtures.FakeWorldFixture() as fake:
        name = fake.name
        fake.world.add_guest("host-a", "vm1", memory_mib=64)
        source = fake.driver("host-a")
        destination = fake.driver("host-b", "198.51.100.12")
        result = fake.migration("vm1", source, destination).run()
        assert result.status == "completed" and result.uris.data_uri == "tcp://198.51.100.12"
        assert fake.world.where("vm1") == ["host-b"]
    assert world_mod.get_world(name).hosts == {}  # reset on cleanup
    world_mod.reset_world(name)


def test_two_fake_worlds_do_not_share_hosts():
    with mp_fixtures.FakeWorldFixture() as one, mp_fixtures.FakeWorldFixture(
            hosts={"h1": {"mgmt": "192.0.2.21"}}) as two:
        assert one.name != two.name
        assert set(two.world.hosts) == {"h1"}
        with pytest.raises(exception.ConfigError, match="no such host"):
            two.driver("host-a")
