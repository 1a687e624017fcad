"""migplane.testing.host_conf: what embedders and our own tests build hosts from."""

from migplane import testing
from migplane.core import settings


def test_host_conf_registers_everything_and_applies_overrides():
    conf = testing.host_conf("host-b", "198.51.100.12", bandwidth=50, driver="fake")
    loaded = settings.load(conf)
    assert loaded.host.hostname == "host-b"
    assert loaded.host.my_live_migration_ip == "198.51.100.12"
    assert loaded.migration.bandwidth_mib == 50 and loaded.driver == "fake"
    conf.set_override("connection_uri", "qemu:///session", group="driver_libvirt")
    assert conf.driver_libvirt.connection_uri == "qemu:///session"


def test_host_conf_without_inbound_address_is_legacy():
    assert settings.load(testing.host_conf("host-a")).host.my_live_migration_ip is None
