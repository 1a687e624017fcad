"""Examples of the URI policy (migplane.core.uri); properties are in tests/property."""

import json

import pytest

from migplane.core import capabilities
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import uri
from migplane.core.settings import MigrationSettings

FULL = capabilities.Capabilities(
    schemes=("tcp", "tls", "ssh"), data_uri=True, listen_address=True, disks_uri=True,
    tls_destination=True, tunnelled=True, native_tls=True, post_copy=True,
    block_migration=True)
MINIMAL = capabilities.Capabilities()


def legacy(**kwargs):
    return md.MigrateData(dest_hostname="host-b", **kwargs)


def split(addr="198.51.100.12", source="option", **kwargs):
    return md.MigrateData(dest_hostname="host-b", target_connect_addr=addr,
                          inbound_addr_source=source, **kwargs)


def test_legacy_is_exactly_as_before():
    uris = uri.resolve(MigrationSettings(), legacy(), FULL)
    assert (uris.control_uri, uris.data_uri, uris.listen_address, uris.disks_uri,
            uris.tls_destination) == ("qemu+tcp://host-b/system", None, None, None, None)
    assert uris.plane == uri.MANAGEMENT and uris.bulk_host == "host-b"
    assert "my_live_migration_ip unset or an older peer" in uris.reasons["data_uri"]
    assert "(default)" in uris.reasons["control_uri"]


def test_legacy_with_the_deprecated_template_and_block_migration():
    settings = MigrationSettings(uri_template="qemu+ssh://%s/system")
    uris = uri.resolve(settings, legacy(block_migration=True), FULL)
    assert uris.control_uri == "qemu+ssh://host-b/system"
    assert uris.disks_uri is None
    assert "deprecated template" in uris.reasons["control_uri"]


def test_split_plane_direct_data_connection():
    uris = uri.resolve(MigrationSettings(scheme="tls"), split(), FULL)
    assert uris.control_uri == "qemu+tls://host-b/system"
    assert uris.data_uri == "tcp://198.51.100.12"
    assert uris.listen_address == "198.51.100.12"
    assert uris.disks_uri is None
    assert uris.tls_destination is None
    assert (uris.plane, uris.bulk_host) == (uri.MIGRATION, "198.51.100.12")
    assert "from option" in uris.reasons["data_uri"]
    assert "scheme 'tls'" in uris.reasons["control_uri"]


def test_split_plane_ipv6_with_port_and_block_migration():
    uris = uri.resolve(MigrationSettings(), split("[2001:db8:2::11]:49152", "cidr",
                                                  block_migration=True), FULL)
    assert uris.data_uri == "tcp://[2001:db8:2::11]:49152"
    assert uris.listen_address == "2001:db8:2::11"
    assert uris.disks_uri == "tcp://[2001:db8:2::11]"
    assert uris.bulk_host == "2001:db8:2::11"


def test_split_plane_link_local_zone_is_escaped():
    uris = uri.resolve(MigrationSettings(), split("fe80::12%mig0"), FULL)
    assert uris.data_uri == "tcp://[fe80::12%25mig0]"
    assert uris.listen_address == "fe80::12%mig0"


def test_listen_address_chosen_by_the_destination():
    data = split(listen_addrs={md.LISTEN_MIGRATION: "0.0.0.0"})
    uris = uri.resolve(MigrationSettings(), data, FULL)
    assert uris.listen_address == "0.0.0.0"
    assert "chosen by the destination" in uris.reasons["listen_address"]


def test_listen_address_unset_when_the_driver_cannot_bind():
    caps = capabilities.Capabilities(data_uri=True, block_migration=True)
    uris = uri.resolve(MigrationSettings(), split(block_migration=True), caps)
    assert uris.listen_address is None
    assert uris.disks_uri is None
    assert "driver cannot direct disk traffic" in uris.reasons["disks_uri"]
    assert uris.data_uri == "tcp://198.51.100.12"


def test_tunnelled_control_connection_rides_the_migration_plane():
    settings = MigrationSettings(scheme="ssh", tunnelled=True)
    uris = uri.resolve(settings, split("2001:db8:2::11"), FULL)
    assert uris.control_uri == "qemu+ssh://[2001:db8:2::11]/system"
    assert uris.data_uri is None and uris.listen_address is None
    assert uris.plane == uri.MIGRATION
    assert "tunnelled" in uris.reasons["data_uri"]


def test_tunnelled_legacy_stays_on_the_host_name():
    uris = uri.resolve(MigrationSettings(tunnelled=True), legacy(), FULL)
    assert uris.control_uri == "qemu+tcp://host-b/system" and uris.plane == uri.MANAGEMENT


def test_native_tls_to_an_ip_verifies_the_host_name():
    uris = uri.resolve(MigrationSettings(native_tls=True), split(), FULL)
    assert uris.tls_destination == "host-b"
    assert "verified against the host name 'host-b'" in uris.reasons["tls_destination"]


def test_native_tls_to_a_name_needs_no_tls_destination():
    uris = uri.resolve(MigrationSettings(native_tls=True), split("mig.host-b.example"),
                       FULL)
    assert uris.tls_destination is None
    assert uris.data_uri == "tcp://mig.host-b.example"


def test_native_tls_to_an_ip_without_tls_destination_support():
    caps = capabilities.Capabilities(data_uri=True, native_tls=True)
    with pytest.raises(exception.UnsupportedFeature) as info:
        uri.resolve(MigrationSettings(native_tls=True), split(), caps, driver="drv")
    assert "'host-b'" in str(info.value) and "'198.51.100.12'" in str(info.value)
    assert "drv" in str(info.value)


def test_split_plane_without_data_uri_support_is_refused():
    with pytest.raises(exception.UnsupportedFeature, match="separate migration data URI"):
        uri.resolve(MigrationSettings(), split(), MINIMAL)


@pytest.mark.parametrize("settings, data, feature", [
    (MigrationSettings(scheme="ssh"), legacy(), "control URI scheme 'ssh'"),
    (MigrationSettings(tunnelled=True), legacy(), "tunnelled migration"),
    (MigrationSettings(native_tls=True), legacy(), "native TLS migration"),
    (MigrationSettings(), legacy(block_migration=True), "block migration"),
])
def test_unsupported_features(settings, data, feature):
    with pytest.raises(exception.UnsupportedFeature) as info:
        uri.resolve(settings, data, MINIMAL, driver="minimal")
    assert feature in str(info.value) and "minimal" in str(info.value)


def test_template_bypasses_the_scheme_check():
    uris = uri.resolve(MigrationSettings(uri_template="qemu+ssh://%s/system"), legacy(),
                       MINIMAL)
    assert uris.control_uri == "qemu+ssh://host-b/system"


def test_block_migration_argument_overrides_the_data():
    uris = uri.resolve(MigrationSettings(), split(block_migration=True), FULL,
                       block_migration=False)
    assert uris.disks_uri is None
    uris = uri.resolve(MigrationSettings(), split(), FULL, block_migration=True)
    assert uris.disks_uri == "tcp://198.51.100.12"


def test_dest_hostname_argument_overrides_the_data():
    uris = uri.resolve(MigrationSettings(), split(), FULL, dest_hostname="2001:db8::b")
    assert uris.control_uri == "qemu+tcp://[2001:db8::b]/system"


def test_unknown_destination_is_refused():
    with pytest.raises(exception.InconsistentURIs, match="host name is unknown"):
        uri.resolve(MigrationSettings(), md.MigrateData(), FULL)


def test_bad_destination_name_is_refused():
    with pytest.raises(exception.InvalidAddress, match="destination host name"):
        uri.resolve(MigrationSettings(), legacy(), FULL, dest_hostname="host-b/x")


def test_result_is_frozen_and_serialisable():
    uris = uri.resolve(MigrationSettings(), split(), FULL)
    with pytest.raises(TypeError):
        uris.reasons["data_uri"] = "x"
    with pytest.raises(AttributeError):
        uris.data_uri = "tcp://198.51.100.13"
    data = json.loads(json.dumps(uris.to_dict()))
    assert data["data_uri"] == "tcp://198.51.100.12"
    assert data["reasons"]["data_uri"] == uris.reasons["data_uri"]
