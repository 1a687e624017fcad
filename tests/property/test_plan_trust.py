"""Property tests of the source's plan check (migplane.core.trust)."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from migplane.core import trust
from migplane.core import uri as uri_mod

ALLOWED = ("198.51.100.0/24", "2001:db8:2::/64")
MANAGEMENT = ("192.0.2.0/24", "2001:db8:ffff::/64")

allowed_v4 = st.integers(1, 254).map(lambda i: "198.51.100.%d" % i)
allowed_v6 = st.integers(1, 2 ** 64 - 1).map(
    lambda i: str(ipaddress.ip_network(ALLOWED[1])[i]))
management_ip = st.integers(1, 254).map(lambda i: "192.0.2.%d" % i)
outside_v4 = st.ip_addresses(v=4).map(str).filter(
    lambda a: not any(ipaddress.ip_address(a) in ipaddress.ip_network(n)
                      for n in ALLOWED[:1] + MANAGEMENT[:1]))
never = st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1",
                         "255.255.255.255", "ff02::1"])
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}\Z").filter(
    lambda n: not n[-1] == "-")


def plan(inbound, listen="same"):
    listen = inbound if listen == "same" else listen
    host = "[%s]" % inbound if ":" in inbound else inbound
    return uri_mod.MigrationURIs(
        control_uri="qemu+tcp://host-b/system", data_uri="tcp://%s" % host,
        listen_address=listen, disks_uri=None, tls_destination=None, bulk_host=inbound,
        plane=uri_mod.MIGRATION)


def check(uris, **kwargs):
    kwargs.setdefault("destination", "host-b")
    kwargs.setdefault("authenticated", "host-b")
    return trust.check_plan(uris, ALLOWED, MANAGEMENT, **kwargs)


@given(st.one_of(allowed_v4, allowed_v6))
def test_an_address_inside_the_migration_networks_is_allowed(inbound):
    verdict = check(plan(inbound))
    assert verdict.allowed, verdict
    assert trust.NETWORKS in verdict.checked


@given(outside_v4)
def test_an_address_outside_the_migration_networks_is_refused_by_name(inbound):
    verdict = check(plan(inbound))
    ip = ipaddress.ip_address(inbound)
    if ip.is_reserved or ip.is_loopback or ip.is_multicast or ip.is_unspecified:
        assert verdict.rule == trust.ADDRESS
    else:
        assert verdict.rule == trust.NETWORKS
    assert not verdict.allowed and verdict.value == inbound and inbound in verdict.reason


@given(management_ip)
def test_the_management_network_is_refused_even_when_allowed(inbound):
    verdict = trust.check_plan(plan(inbound), ALLOWED + ("192.0.2.0/24",), MANAGEMENT)
    assert not verdict.allowed and verdict.rule == trust.MANAGEMENT
    assert "192.0.2.0/24" in verdict.reason


@given(never)
def test_unspecified_loopback_and_multicast_are_refused_without_any_list(inbound):
    verdict = trust.check_plan(plan(inbound))
    assert not verdict.allowed and verdict.rule == trust.ADDRESS


@given(names)
def test_a_name_is_never_a_migration_plane_address(name):
    verdict = trust.check_plan(plan(name))
    assert not verdict.allowed and verdict.rule == trust.ADDRESS and name in verdict.reason


@given(allowed_v4, st.one_of(never, management_ip, outside_v4))
def test_a_listen_address_elsewhere_is_refused(inbound, listen):
    verdict = check(plan(inbound, listen))
    assert not verdict.allowed and verdict.value == listen
    assert verdict.rule in (trust.LISTEN, trust.MANAGEMENT, trust.NETWORKS)


@given(allowed_v4, allowed_v4)
def test_a_listen_address_inside_the_networks_is_allowed(inbound, listen):
    assert check(plan(inbound, listen)).allowed


@given(allowed_v4, allowed_v4)
def test_without_a_list_the_listen_address_must_be_the_inbound_address(inbound, listen):
    verdict = trust.check_plan(plan(inbound, listen))
    assert verdict.allowed == (inbound == listen)


@given(allowed_v4)
def test_an_empty_list_allows_no_migration_plane_address(inbound):
    verdict = trust.check_plan(plan(inbound), ())
    assert not verdict.allowed and verdict.rule == trust.NETWORKS


@given(allowed_v4, names)
def test_the_destination_must_be_the_authenticated_identity(inbound, name):
    verdict = check(plan(inbound), destination=name)
    assert verdict.allowed == (name == "host-b")
    if name != "host-b":
        assert verdict.rule == trust.IDENTITY and name in verdict.reason


@given(names)
def test_the_legacy_plan_has_nothing_from_the_destination_to_check(host):
    uris = uri_mod.MigrationURIs(
        control_uri="qemu+tcp://%s/system" % host, data_uri=None, listen_address=None,
        disks_uri=None, tls_destination=None, bulk_host=host, plane=uri_mod.MANAGEMENT)
    assert trust.check_plan(uris, ALLOWED, MANAGEMENT).allowed
    bad = uri_mod.MigrationURIs(**dict(uris.to_dict(), listen_address="0.0.0.0"))
    assert trust.check_plan(bad, ALLOWED, MANAGEMENT).rule == trust.LISTEN


@given(management_ip)
def test_an_ipv4_mapped_management_address_is_still_the_management_network(inbound):
    verdict = trust.check_plan(plan("::ffff:" + inbound), None, MANAGEMENT)
    assert not verdict.allowed and verdict.rule == trust.MANAGEMENT


@given(st.sampled_from(["198.51.100.0", "198.51.100.255", "2001:db8:2::"]),
       st.sampled_from(["same", None]))
def test_the_network_and_broadcast_addresses_are_refused(inbound, listen):
    verdict = check(plan(inbound, listen))
    assert not verdict.allowed and verdict.rule == trust.NETWORKS
    assert "network or broadcast" in verdict.reason


@given(st.one_of(allowed_v4, allowed_v6), st.booleans())
def test_the_sources_own_address_is_never_a_destination(inbound, mapped):
    own = "::ffff:%s" % inbound if mapped and ":" not in inbound else inbound
    verdict = check(plan(inbound), source_addresses=("192.0.2.11", own))
    assert not verdict.allowed and verdict.rule == trust.SELF and inbound in verdict.reason
    other = check(plan(inbound), source_addresses=("192.0.2.11",))
    assert other.allowed


# -- which networks are allowed and which are management (agent.plan_networks) ---------

_NETS = ["192.0.2.%d", "198.51.100.%d", "203.0.113.%d"]


@st.composite
def host_interfaces(draw):
    """Up to three interfaces, each on its own documentation /24."""
    count = draw(st.integers(0, 3))
    return [{"ifname": "eth%d" % i, "addresses": [
        {"address": _NETS[i] % draw(st.integers(1, 254)), "prefixlen": 24,
         "scope": draw(st.sampled_from(["global", "host"]))}]} for i in range(count)]


@given(host_interfaces(), st.sets(st.sampled_from(["eth0", "eth1", "eth2", "lo"])),
       st.sampled_from([None, "192.0.2.10", "198.51.100.10"]),
       st.one_of(st.none(), st.just(("198.51.100.0/24",))),
       st.sampled_from([None, "198.51.100.20", "203.0.113.20"]),
       st.sampled_from([None, "203.0.113.0/24"]))
def test_a_management_network_is_never_allowed_and_unknown_fails_closed(
        interfaces, routed, bind_host, configured, inbound, inbound_cidr):
    allowed, management = trust.plan_networks(interfaces, routed, bind_host, configured,
                                              inbound, inbound_cidr)
    if configured is not None:
        assert allowed == configured
        return
    assert not set(allowed) & set(management)
    holders = [i for i in interfaces
               if any(a["address"] == bind_host for a in i["addresses"])]
    known = bool(routed) or bool(holders)
    if inbound is None and not known:
        # no management interface known: nothing but the explicit CIDR is allowed
        assert set(allowed) <= {inbound_cidr}
    for iface in interfaces:
        if iface["ifname"] in routed or iface in holders:
            for a in iface["addresses"]:
                if a["scope"] != "host":
                    net = str(ipaddress.ip_interface("%s/24" % a["address"]).network)
                    assert net in management and net not in allowed
