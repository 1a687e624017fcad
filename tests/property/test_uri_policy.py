"""Property tests of the URI policy and the pre-migration data contract."""

import ipaddress
import urllib.parse

import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

from migplane.core import address
from migplane.core import capabilities
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import uri

CAPS = capabilities.Capabilities(
    schemes=("tcp", "tls", "ssh"), data_uri=True, listen_address=True, disks_uri=True,
    tls_destination=True, tunnelled=True, native_tls=True, post_copy=True,
    auto_converge=True, parallel_connections=True, block_migration=True)

# -- strategies -----------------------------------------------------------------

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(label, min_size=1, max_size=4).map(".".join).filter(
    lambda name: not name.split(".")[-1].isdigit())
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
zones = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
link_local = st.builds(lambda n, z: "fe80::%x%%%s" % (n, z), st.integers(1, 0xFFFF), zones)
ports = st.integers(1, 65535)


@st.composite
def inbound_addresses(draw):
    """(text as a peer may send it, expected host as urllib reports it, expected port)."""
    kind = draw(st.sampled_from(["v4", "v4port", "v6", "v6bracket", "v6port", "zone",
                                 "zonebracket", "name", "nameport"]))
    port = draw(ports)
    if kind.startswith("v4"):
        host = draw(ipv4)
        return (host + (":%d" % port if kind == "v4port" else ""), host,
                port if kind == "v4port" else None)
    if kind.startswith("v6"):
        host = draw(ipv6)
        text = {"v6": host, "v6bracket": "[%s]" % host,
                "v6port": "[%s]:%d" % (host, port)}[kind]
        return text, str(ipaddress.IPv6Address(host)), port if kind == "v6port" else None
    if kind.startswith("zone"):
        host = draw(link_local)
        addr, zone = host.split("%")
        text = host if kind == "zone" else "[%s%%25%s]" % (addr, zone)
        return text, "%s%%25%s" % (ipaddress.IPv6Address(addr), zone), None
    host = draw(hostnames)
    return (host + (":%d" % port if kind == "nameport" else ""), host,
            port if kind == "nameport" else None)


dest_names = st.one_of(hostnames, ipv4, ipv6)
# How operators may write an IPv6 address: Nova keeps their spelling in URIs.
ipv6_spellings = st.ip_addresses(v=6).flatmap(lambda a: st.sampled_from(
    [str(a), str(a).upper(), a.exploded, a.exploded.upper(),
     ":".join("%x" % int(g, 16) for g in a.exploded.split(":"))]))
templates = st.sampled_from([None, "qemu+ssh://%s/system", "qemu+tcp://%s/system?no_tty=1"])


@st.composite
def migration_settings(draw):
    tunnelled = draw(st.booleans())
    return settings_mod.MigrationSettings(
        scheme=draw(st.sampled_from([None, "tcp", "tls", "ssh"])),
        uri_template=draw(templates),
        tunnelled=tunnelled,
        native_tls=False if tunnelled else draw(st.booleans()),
        bandwidth_mib=draw(st.integers(0, 10_000)),
        permit_post_copy=draw(st.booleans()),
        permit_auto_converge=draw(st.booleans()),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                 inner, max_size=3),
    max_leaves=8)


@st.composite
def migrate_datas(draw):
    inbound = draw(st.one_of(st.none(), inbound_addresses()))
    source = md.INBOUND_NONE if inbound is None else draw(
        st.sampled_from([md.INBOUND_FROM_OPTION, md.INBOUND_FROM_CIDR]))
    listen = {}
    if inbound is not None and draw(st.booleans()):
        listen = {md.LISTEN_MIGRATION: address.parse_host(inbound[0]).host}
    return md.MigrateData(
        dest_hostname=draw(dest_names),
        block_migration=draw(st.booleans()),
        driver_data=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
        target_connect_addr=None if inbound is None else inbound[0],
        inbound_addr_source=source,
        listen_addrs=listen,
    )


# -- helpers --------------------------------------------------------------------


def urllib_host(text):
    """How urllib reports a host we put into a URI authority."""
    parsed = address.parse_host(text)
    return parsed.uri_host.strip("[]").lower()


def legacy_control_uri(settings, dest):
    """Nova's _live_migration_uri(), the behaviour to keep character for character."""
    dest = "[%s]" % dest if ":" in dest else dest  # oslo_utils.netutils.escape_ipv6
    if settings.uri_template:
        return settings.uri_template % dest
    return "qemu+%s://%s/system" % (settings.scheme or "tcp", dest)


def assert_only_host(uri_text, host, port=None):
    parts = urllib.parse.urlsplit(uri_text)
    assert parts.hostname == host.lower()
    assert parts.port == port
    assert parts.username is None and parts.password is None
    assert parts.path in ("", "/system")
    assert parts.fragment == ""


# -- properties -------------------------------------------------------------------


@given(migration_settings(), st.one_of(dest_names, ipv6_spellings), st.booleans())
def test_unset_inbound_address_gives_exactly_the_legacy_uris(settings, dest, block):
    data = md.MigrateData(dest_hostname=dest, block_migration=block)
    result = uri.resolve(settings, data, CAPS)
    assert result.control_uri == legacy_control_uri(settings, dest)
    assert (result.data_uri, result.listen_address, result.disks_uri,
            result.tls_destination) == (None, None, None, None)
    assert result.plane == uri.MANAGEMENT


@given(migration_settings(), hostnames, inbound_addresses(), st.booleans())
def test_with_inbound_address_bulk_data_rides_the_migration_plane(settings, dest,
                                                                 inbound, block):
    text, host, port = inbound
    assume(host != dest.lower())
    data = md.MigrateData(dest_hostname=dest, target_connect_addr=text,
                          inbound_addr_source=md.INBOUND_FROM_OPTION,
                          block_migration=block)
    result = uri.resolve(settings, data, CAPS)
    assert result.plane == uri.MIGRATION
    assert result.bulk_host == address.parse_host(text).host
    if settings.tunnelled:
        assert result.data_uri is None
        assert_only_host(result.control_uri, host, port)
    else:
        # Control stays on the management plane, addressed by host name...
        assert_only_host(result.control_uri, dest)
        # ...and the bulk stream never targets the management address.
        assert_only_host(result.data_uri, host, port)
        assert urllib.parse.urlsplit(result.data_uri).hostname != dest.lower()
        assert result.listen_address == address.parse_host(text).host
        if block:
            assert_only_host(result.disks_uri, host)
        else:
            assert result.disks_uri is None
        if settings.native_tls and address.parse_host(text).is_ip:
            assert result.tls_destination == dest
        else:
            assert result.tls_destination is None


@given(migration_settings(), migrate_datas())
def test_every_uri_parses_back_to_the_intended_host(settings, data):
    result = uri.resolve(settings, data, CAPS)
    if result.plane == uri.MANAGEMENT or not settings.tunnelled:
        assert_only_host(result.control_uri, urllib_host(data.dest_hostname))
    for text in (result.data_uri, result.disks_uri):
        if text is not None:
            parts = urllib.parse.urlsplit(text)
            assert parts.scheme == "tcp"
            assert parts.hostname == urllib_host(data.target_connect_addr)
            assert parts.path == parts.query == parts.fragment == ""


@given(migration_settings(), migrate_datas())
def test_resolution_is_deterministic(settings, data):
    assert uri.resolve(settings, data, CAPS) == uri.resolve(settings, data, CAPS)


@given(migrate_datas())
def test_primitive_round_trip(data):
    assert md.MigrateData.from_primitive(data.to_primitive()) == data


@given(migrate_datas(), migration_settings())
def test_every_older_version_primitive_still_loads_as_legacy(data, settings):
    old = md.MigrateData.from_primitive(data.to_primitive(target_version="1.0"))
    assert old.target_connect_addr is None
    assert (old.dest_hostname, old.block_migration, old.driver_data) == (
        data.dest_hostname, data.block_migration, data.driver_data)
    legacy = uri.resolve(settings, old, CAPS)
    assert legacy.control_uri == legacy_control_uri(settings, data.dest_hostname)
    assert legacy.data_uri is None


@given(migrate_datas(), st.dictionaries(st.from_regex(r"new_[a-z]{1,8}", fullmatch=True),
                                        json_values, min_size=1, max_size=3))
def test_a_newer_peers_unknown_fields_are_tolerated(data, extra):
    primitive = data.to_primitive()
    primitive["migplane.version"] = "1.99"
    primitive["migplane.data"].update(extra)
    assert md.MigrateData.from_primitive(primitive) == data


injections = st.builds(
    lambda host, bad, tail: host + bad + tail,
    st.one_of(ipv4, hostnames), st.sampled_from(list("/?#@ \t\n\\") + ["%2f", "\x00"]),
    st.text(alphabet="abc/=.:@", max_size=6))


@given(hostnames, injections)
def test_nothing_beyond_the_host_is_ever_injected(dest, evil):
    with pytest.raises((exception.InvalidMigrateData, exception.InvalidAddress)):
        data = md.MigrateData(dest_hostname=dest, target_connect_addr=evil,
                              inbound_addr_source=md.INBOUND_FROM_OPTION)
        uri.resolve(settings_mod.MigrationSettings(), data, CAPS)


@given(injections)
def test_a_bad_destination_host_name_is_refused(evil):
    with pytest.raises((exception.InvalidMigrateData, exception.InvalidAddress)):
        uri.resolve(settings_mod.MigrationSettings(), md.MigrateData(), CAPS,
                    dest_hostname=evil)
