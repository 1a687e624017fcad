"""The migrateToURI3 plan built from the core's resolved URIs and the settings."""

import pytest

from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import uri as uri_mod
from migplane.drivers.libvirt import driver
from migplane.drivers.libvirt import flags

libvirt = pytest.importorskip("libvirt")
P = libvirt
CAPS = driver.capabilities(9_000_000, 7_002_000)


def data(addr="198.51.100.12", block=False):
    if addr is None:
        return md.MigrateData(dest_hostname="host-b", block_migration=block)
    return md.MigrateData(dest_hostname="host-b", block_migration=block,
                          target_connect_addr=addr, inbound_addr_source="option")


def plan(addr="198.51.100.12", block=False, disks=(), caps=CAPS, compression=(), **kw):
    settings = settings_mod.MigrationSettings(**kw)
    uris = uri_mod.resolve(settings, data(addr, block), caps, driver="libvirt")
    return flags.build(settings, uris, caps, migrate_disks=disks, compression=compression)


def test_legacy_plan_has_no_data_uri_and_targets_the_host_name():
    p = plan(addr=None)
    assert p.dconnuri == "qemu+tcp://host-b/system"
    assert p.flags == flags.BASE_FLAGS | libvirt.VIR_MIGRATE_PAUSED
    assert p.flag_names == ["LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE",
                            "PAUSED"]
    assert dict(p.params) == {}


def test_the_handover_holds_the_destination_unless_post_copy_is_armed():
    """libvirt refuses VIR_MIGRATE_PAUSED with POSTCOPY: one or the other."""
    held = plan()
    assert held.flags & libvirt.VIR_MIGRATE_PAUSED
    assert "the guest never runs on both hosts" in held.reasons["PAUSED"]
    armed = plan(permit_post_copy=True)
    assert armed.flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert not armed.flags & libvirt.VIR_MIGRATE_PAUSED


def test_split_plane_sends_data_to_the_inbound_address_and_listens_there_only():
    p = plan()
    assert p.dconnuri == "qemu+tcp://host-b/system"
    assert p.params[P.VIR_MIGRATE_PARAM_URI] == "tcp://198.51.100.12"
    assert p.params[P.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] == "198.51.100.12"
    assert P.VIR_MIGRATE_PARAM_DISKS_URI not in p.params


def test_ipv6_inbound_address_is_bracketed_in_the_uri_only():
    p = plan(addr="2001:db8:2::12")
    assert p.params[P.VIR_MIGRATE_PARAM_URI] == "tcp://[2001:db8:2::12]"
    assert p.params[P.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] == "2001:db8:2::12"


def test_block_migration_copies_only_the_listed_disks_over_the_migration_plane():
    p = plan(block=True, disks=["vda"])
    assert p.flags & P.VIR_MIGRATE_NON_SHARED_INC
    assert p.call_params()[P.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda"]
    assert p.params[P.VIR_MIGRATE_PARAM_DISKS_URI] == "tcp://198.51.100.12"


def test_block_migration_without_local_disks_sets_no_storage_flag():
    p = plan(block=True, disks=())
    assert not p.flags & P.VIR_MIGRATE_NON_SHARED_INC
    assert P.VIR_MIGRATE_PARAM_MIGRATE_DISKS not in p.params


def test_native_tls_verifies_the_host_name_while_dialing_the_ip():
    p = plan(native_tls=True)
    assert p.flags & P.VIR_MIGRATE_TLS
    assert p.params[P.VIR_MIGRATE_PARAM_TLS_DESTINATION] == "host-b"
    assert p.params[P.VIR_MIGRATE_PARAM_URI] == "tcp://198.51.100.12"


def test_native_tls_without_inbound_address_needs_no_tls_destination():
    p = plan(addr=None, native_tls=True)
    assert p.flags & P.VIR_MIGRATE_TLS
    assert P.VIR_MIGRATE_PARAM_TLS_DESTINATION not in p.params


def test_tunnelled_targets_the_inbound_address_with_the_control_connection():
    p = plan(tunnelled=True)
    assert p.flags & P.VIR_MIGRATE_TUNNELLED
    assert p.dconnuri == "qemu+tcp://198.51.100.12/system"
    assert P.VIR_MIGRATE_PARAM_URI not in p.params
    assert P.VIR_MIGRATE_PARAM_LISTEN_ADDRESS not in p.params


def test_post_copy_wins_over_auto_converge():
    p = plan(permit_post_copy=True, permit_auto_converge=True, strategy="static")
    assert p.flags & P.VIR_MIGRATE_POSTCOPY
    assert not p.flags & P.VIR_MIGRATE_AUTO_CONVERGE
    p = plan(permit_auto_converge=True)
    assert p.flags & P.VIR_MIGRATE_AUTO_CONVERGE
    assert not p.flags & P.VIR_MIGRATE_POSTCOPY
    assert P.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL not in p.params


def test_adaptive_plan_arms_both_with_its_throttle():
    p = plan(permit_post_copy=True, permit_auto_converge=True, auto_converge_initial=30,
             auto_converge_increment=15)
    assert p.flags & P.VIR_MIGRATE_POSTCOPY and p.flags & P.VIR_MIGRATE_AUTO_CONVERGE
    assert p.params[P.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] == 30
    assert p.params[P.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] == 15
    assert "adaptive" in p.reasons["AUTO_CONVERGE"]


def test_parallel_bandwidth_and_compression_parameters():
    p = plan(parallel_connections=4, bandwidth_mib=50, compression=("xbzrle",))
    assert p.flags & P.VIR_MIGRATE_PARALLEL
    assert p.flags & P.VIR_MIGRATE_COMPRESSED
    assert p.params[P.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] == 4
    assert p.params[P.VIR_MIGRATE_PARAM_BANDWIDTH] == 50
    assert p.call_params()[P.VIR_MIGRATE_PARAM_COMPRESSION] == ["xbzrle"]


def test_the_plans_compression_joins_the_configured_one():
    assert not plan().flags & P.VIR_MIGRATE_COMPRESSED
    settings = settings_mod.MigrationSettings(compression=("xbzrle",))
    uris = uri_mod.resolve(settings, data(), CAPS, driver="libvirt")
    armed = flags.build(settings, uris, CAPS)
    assert armed.flags & P.VIR_MIGRATE_COMPRESSED
    assert armed.call_params()[P.VIR_MIGRATE_PARAM_COMPRESSION] == ["xbzrle"]
    assert "adaptive plan" in armed.reasons["COMPRESSED"]
    both = flags.build(settings, uris, CAPS, compression=("xbzrle",))
    assert both.call_params()[P.VIR_MIGRATE_PARAM_COMPRESSION] == ["xbzrle"]
    assert CAPS.compression == ("xbzrle", "mt")
    assert driver.capabilities(1_003_000).compression == ()


def test_a_configured_compression_this_qemu_lacks_is_refused_by_name():
    new_qemu = driver.capabilities(9_000_000, 10_000_002)
    with pytest.raises(exception.UnsupportedFeature,
                       match=r"compression=mt \(this host's QEMU offers only xbzrle\)"):
        plan(caps=new_qemu, compression=("mt",))
    assert plan(caps=new_qemu, compression=("xbzrle",)).flags & P.VIR_MIGRATE_COMPRESSED


def test_persistent_and_destination_xml_are_passed_when_given():
    settings = settings_mod.MigrationSettings()
    uris = uri_mod.resolve(settings, data(), CAPS)
    p = flags.build(settings, uris, CAPS, persistent_xml="<domain/>",
                    destination_xml="<domain>d</domain>")
    assert p.params[P.VIR_MIGRATE_PARAM_PERSIST_XML] == "<domain/>"
    assert p.params[P.VIR_MIGRATE_PARAM_DEST_XML] == "<domain>d</domain>"


@pytest.mark.parametrize("kw, compression, named", [
    ({"tunnelled": True, "parallel_connections": 2}, (), "parallel_connections=2"),
    ({"tunnelled": True, "permit_post_copy": True}, (), "permit_post_copy=True"),
    ({"permit_post_copy": True, "parallel_connections": 3}, (), "parallel_connections=3"),
    ({"parallel_connections": 2}, ("mt",), "compression=mt"),
    ({"permit_post_copy": True}, ("mt",), "compression=mt"),
])
def test_impossible_combinations_are_refused_naming_the_values(kw, compression, named):
    settings = settings_mod.MigrationSettings(**kw)
    with pytest.raises(exception.ConflictingOptions) as err:
        flags.check_settings(settings, compression)
    assert named in str(err.value)
    with pytest.raises(exception.ConflictingOptions):
        flags.build(settings, uri_mod.resolve(settings, data(), CAPS), CAPS,
                    compression=compression)


def test_features_the_daemon_lacks_are_refused_before_starting():
    old = driver.capabilities(5_000_000, 4_000_000)
    assert not old.disks_uri and not old.tls_destination and not old.parallel_connections
    with pytest.raises(exception.UnsupportedFeature, match="parallel"):
        plan(caps=old, parallel_connections=2)
    settings = settings_mod.MigrationSettings(native_tls=True)
    uris = uri_mod.resolve(settings, data(), CAPS)   # planned for a newer daemon
    with pytest.raises(exception.UnsupportedFeature, match="host-b"):
        flags.build(settings, uris, old)
    settings = settings_mod.MigrationSettings()
    uris = uri_mod.resolve(settings, data(block=True), CAPS)
    with pytest.raises(exception.UnsupportedFeature, match="block-migration traffic"):
        flags.build(settings, uris, old, migrate_disks=["vda"])


def test_a_plan_with_a_data_uri_cannot_be_tunnelled():
    settings = settings_mod.MigrationSettings()
    uris = uri_mod.resolve(settings, data(), CAPS)
    with pytest.raises(exception.InconsistentURIs, match="tcp://198.51.100.12"):
        flags.build(settings.replace(tunnelled=True), uris, CAPS)


def test_post_copy_without_support_is_not_requested():
    caps = driver.capabilities(1_002_010)
    assert not caps.post_copy
    p = flags.build(settings_mod.MigrationSettings(permit_post_copy=True),
                    uri_mod.resolve(settings_mod.MigrationSettings(), data(None), caps), caps)
    assert not p.flags & P.VIR_MIGRATE_POSTCOPY


def test_describe_names_the_call():
    text = plan().describe()
    assert text.startswith("migrateToURI3('qemu+tcp://host-b/system'")
    assert "LIVE|PEER2PEER|PERSIST_DEST|UNDEFINE_SOURCE" in text


def test_tunnelled_block_migration_is_refused():
    settings = settings_mod.MigrationSettings(tunnelled=True)
    uris = uri_mod.resolve(settings, data(block=True), CAPS)
    with pytest.raises(exception.ConflictingOptions, match="tunnelled=True and block"):
        flags.build(settings, uris, CAPS, migrate_disks=["vda"])
