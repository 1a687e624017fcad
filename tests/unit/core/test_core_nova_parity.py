"""Nova's own URI unit tests, replayed against migplane's URI policy.

The cases and expected strings are those of Nova's
``nova/tests/unit/virt/libvirt/test_driver.py`` (``test_live_migration_uri*``,
``test_migrate_uri*``), which test ``LibvirtDriver._live_migration_uri(dest)``
(the control URI) and ``_migrate_uri(dest)`` (the data URI). In Nova, ``dest``
is the destination's host name, or its ``live_migration_inbound_addr``
(``target_connect_addr``) when one is set: then *both* URIs use it. Each
difference from Nova is a test of its own below, with the reason; the README's
parity table sums them up.
"""

import pytest

from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import uri
from migplane.drivers.libvirt import driver as libvirt_driver

# What a current libvirt/QEMU supports (the libvirt driver's own capability table).
CAPS = libvirt_driver.capabilities(9_000_000, 7_002_000)

# Nova's test_live_migration_uri and test_migrate_uri_forced_live_migration_inboud_addr.
NOVA_ADDRESSES = ("127.0.0.1", "127.0.0.1:4444", "[::1]:4444", "[0:0:0:0:0:0:0:1]:4444",
                  "127.0.0.1", "destination")
# Nova's *_ipv6 variants: bare IPv6 literals, which Nova brackets (escape_ipv6).
NOVA_IPV6 = ("::1", "0:0:0:0:0:0:0:1", "::1")

# Nova's hypervisor_uri_map for the virt types migplane's libvirt driver serves.
NOVA_CONTROL = {"kvm": "qemu+tcp://%s/system", "qemu": "qemu+tcp://%s/system"}
NOVA_DATA = "tcp://%s"

NOVA_STYLE = settings_mod.MigrationSettings(control_plane=settings_mod.CONTROL_MIGRATION)


def inbound(addr, dest="destination"):
    """What Nova's pre_live_migration sends with live_migration_inbound_addr set."""
    return md.MigrateData(dest_hostname=dest, target_connect_addr=addr,
                          inbound_addr_source=md.INBOUND_FROM_OPTION)


def legacy(dest):
    """What a destination without an inbound address sends: its host name only."""
    return md.MigrateData(dest_hostname=dest)


# -- test_live_migration_uri, test_live_migration_uri_ipv6 ------------------------------


@pytest.mark.parametrize("virt_type", sorted(NOVA_CONTROL))
@pytest.mark.parametrize("dest", NOVA_ADDRESSES)
def test_live_migration_uri(virt_type, dest):
    """Nova's dest here is the inbound address (it may carry a port); with
    ``control_plane = migration`` migplane addresses the control connection to it
    exactly as Nova does."""
    result = uri.resolve(NOVA_STYLE, inbound(dest), CAPS)
    assert result.control_uri == NOVA_CONTROL[virt_type] % dest


@pytest.mark.parametrize("virt_type", sorted(NOVA_CONTROL))
@pytest.mark.parametrize("dest", NOVA_IPV6)
def test_live_migration_uri_ipv6(virt_type, dest):
    expected = NOVA_CONTROL[virt_type].replace("%s", "[%s]") % dest
    assert uri.resolve(NOVA_STYLE, inbound(dest), CAPS).control_uri == expected
    # and as a legacy host name: the address exactly as configured, not normalised
    assert uri.resolve(settings_mod.MigrationSettings(), legacy(dest),
                       CAPS).control_uri == expected


@pytest.mark.parametrize("dest", [a for a in NOVA_ADDRESSES if ":" not in a])
def test_live_migration_uri_legacy_host_name(dest):
    """Without an inbound address, Nova's dest is the host name: same output."""
    result = uri.resolve(settings_mod.MigrationSettings(), legacy(dest), CAPS)
    assert result.control_uri == "qemu+tcp://%s/system" % dest
    assert result.data_uri is None  # Nova: migrate_uri None, libvirt chooses


def test_live_migration_uri_forced():
    settings = settings_mod.MigrationSettings(uri_template="foo://%s/bar")
    assert uri.resolve(settings, legacy("destination"), CAPS).control_uri == \
        "foo://destination/bar"


def test_live_migration_scheme():
    settings = settings_mod.MigrationSettings(scheme="ssh")
    assert uri.resolve(settings, legacy("destination"), CAPS).control_uri == \
        "qemu+ssh://destination/system"


def test_live_migration_scheme_does_not_override_uri():
    settings = settings_mod.MigrationSettings(uri_template="qemu+ssh://%s/system",
                                              scheme="tcp")
    assert uri.resolve(settings, legacy("destination"), CAPS).control_uri == \
        "qemu+ssh://destination/system"


# -- test_migrate_uri* -------------------------------------------------------------------


def test_migrate_uri():
    result = uri.resolve(settings_mod.MigrationSettings(), inbound("destination"), CAPS)
    assert result.data_uri == NOVA_DATA % "destination"


def test_migrate_uri_forced_live_migration_uri():
    """The deprecated template shapes the control URI only, never the data URI."""
    settings = settings_mod.MigrationSettings(uri_template="qemu+tcp://user:pass@%s/system")
    result = uri.resolve(settings, inbound("destination"), CAPS)
    assert result.data_uri == "tcp://destination"


@pytest.mark.parametrize("dest", NOVA_ADDRESSES)
def test_migrate_uri_forced_live_migration_inboud_addr(dest):
    for settings in (settings_mod.MigrationSettings(), NOVA_STYLE):
        result = uri.resolve(settings, inbound(dest), CAPS)
        assert result.data_uri == NOVA_DATA % dest
        assert isinstance(result.data_uri, str)


@pytest.mark.parametrize("dest", NOVA_IPV6)
def test_migrate_uri_forced_live_migration_inboud_addr_ipv6(dest):
    result = uri.resolve(settings_mod.MigrationSettings(), inbound(dest), CAPS)
    assert result.data_uri == "tcp://[%s]" % dest


# -- the differences, each with its reason ----------------------------------------------


@pytest.mark.parametrize("dest", NOVA_ADDRESSES)
def test_difference_control_connection_stays_on_management_by_default(dest):
    """Nova points the control connection at the inbound address too; migplane's
    default keeps it on the management plane (the spec's split), addressing the
    host name. ``control_plane = migration`` gives Nova's output (above)."""
    result = uri.resolve(settings_mod.MigrationSettings(), inbound(dest, "host-b"), CAPS)
    assert result.control_uri == "qemu+tcp://host-b/system"
    assert result.data_uri == NOVA_DATA % dest


def test_difference_tunnelled_uses_the_inbound_address_as_nova_does():
    """Same as Nova: tunnelled, there is no data URI and the control connection
    (which carries the data) targets the inbound address, whatever control_plane."""
    settings = settings_mod.MigrationSettings(tunnelled=True)
    result = uri.resolve(settings, inbound("[::1]:4444"), CAPS)
    assert (result.control_uri, result.data_uri) == ("qemu+tcp://[::1]:4444/system", None)


def test_difference_a_port_belongs_to_the_inbound_address_not_the_host_name():
    """Nova's tests feed '127.0.0.1:4444' to _live_migration_uri: in Nova that
    only happens through live_migration_inbound_addr, which is where migplane
    accepts a port; a destination's host name with a port is refused."""
    with pytest.raises(exception.InvalidMigrateData, match="a port is not allowed"):
        legacy("127.0.0.1:4444")


def test_difference_non_qemu_virt_types_are_other_drivers():
    """Nova's map also has parallels (parallels+tcp://%s/system) and refuses lxc.
    migplane's libvirt driver serves QEMU/KVM only; another hypervisor is another
    driver, which declares its control URI format in its capabilities."""
    import dataclasses
    parallels = dataclasses.replace(CAPS, schemes=("tcp",),
                                    control_uri_format="parallels+tcp://{host}/system")
    result = uri.resolve(NOVA_STYLE, inbound("127.0.0.1:4444"), parallels)
    assert result.control_uri == "parallels+tcp://127.0.0.1:4444/system"


def test_difference_a_link_local_zone_is_escaped():
    """Nova's escape_ipv6 would give tcp://[fe80::1%eth0], which is not a valid
    URI (RFC 6874 wants %25); migplane escapes the zone id."""
    result = uri.resolve(settings_mod.MigrationSettings(), inbound("fe80::1%eth0"), CAPS)
    assert result.data_uri == "tcp://[fe80::1%25eth0]"


def test_control_plane_migration_runs_a_migration_end_to_end():
    """Nova's behaviour as an option: the control connection to the inbound
    address too, e.g. for a libvirtd listening on the migration network only."""
    from migplane.testing import fixtures as mp_fixtures

    with mp_fixtures.FakeWorldFixture() as fake:
        fake.world.add_guest("host-a", "vm1", memory_mib=64)
        source = fake.driver("host-a", control_plane="migration")
        destination = fake.driver("host-b", "198.51.100.12")
        result = fake.migration("vm1", source, destination).run()
        assert result.status == "completed"
        assert result.uris.control_uri == "qemu+tcp://198.51.100.12/system"
        assert result.uris.data_uri == "tcp://198.51.100.12"
        transfer = fake.world.history[-1]
        assert (transfer.control_host, transfer.plane) == ("198.51.100.12", "migration")
