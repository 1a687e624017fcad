"""Choosing the destination's inbound migration address (migplane.core.inbound)."""

import ipaddress

import pytest

from migplane.core import exception
from migplane.core import inbound
from migplane.core import migrate_data as md
from migplane.core.settings import HostSettings

LOCAL = ["192.0.2.12", "198.51.100.12", "2001:db8:2::11", "fe80::12%mig0", "127.0.0.1"]


def host(ip=None, cidr=None):
    return HostSettings(hostname="host-b", my_live_migration_ip=ip,
                        inbound_cidr=ipaddress.ip_network(cidr) if cidr else None)


def test_unset_means_legacy():
    assert inbound.select(host(), LOCAL) == (None, md.INBOUND_NONE)
    assert inbound.select(host(), None) == (None, md.INBOUND_NONE)


@pytest.mark.parametrize("ip", ["198.51.100.12", "2001:db8:2::11", "2001:DB8:2:0::11",
                                "fe80::12%mig0", "fe80::12"])
def test_explicit_local_address(ip):
    assert inbound.select(host(ip), LOCAL) == (ip, md.INBOUND_FROM_OPTION)


@pytest.mark.parametrize("ip", ["198.51.100.99", "2001:db8:2::99", "fe80::99%mig0"])
def test_explicit_address_not_local_is_refused_naming_it(ip):
    with pytest.raises(exception.InboundAddressError) as info:
        inbound.select(host(ip), LOCAL)
    message = str(info.value)
    assert ip in message
    assert "host-b" in message
    assert "not an address of this host" in message
    assert "198.51.100.12" in message  # the host's real addresses are listed
    assert isinstance(info.value, exception.MigrationError)


def test_explicit_address_trusted_when_local_addresses_unknown():
    assert inbound.select(host("198.51.100.99"), None) == ("198.51.100.99",
                                                           md.INBOUND_FROM_OPTION)


def test_explicit_host_name_is_trusted():
    assert inbound.select(host("mig.host-b.example"), LOCAL) == ("mig.host-b.example",
                                                                 md.INBOUND_FROM_OPTION)


def test_explicit_address_wins_over_cidr():
    assert inbound.select(host("198.51.100.12", "203.0.113.0/24"), LOCAL) == (
        "198.51.100.12", md.INBOUND_FROM_OPTION)


@pytest.mark.parametrize("cidr, expected", [
    ("198.51.100.0/24", "198.51.100.12"),
    ("198.51.100.12/32", "198.51.100.12"),
    ("2001:db8:2::/64", "2001:db8:2::11"),
    ("192.0.2.0/24", "192.0.2.12"),
])
def test_cidr_selecting_one_address(cidr, expected):
    assert inbound.select(host(cidr=cidr), LOCAL) == (expected, md.INBOUND_FROM_CIDR)


def test_cidr_keeps_the_zone_of_a_link_local_address():
    assert inbound.select(host(cidr="fe80::/64"), LOCAL) == ("fe80::12%mig0",
                                                             md.INBOUND_FROM_CIDR)


def test_cidr_selecting_no_address():
    with pytest.raises(exception.InboundAddressError) as info:
        inbound.select(host(cidr="203.0.113.0/24"), LOCAL)
    assert "203.0.113.0/24" in str(info.value)
    assert "it matches none" in str(info.value)


def test_cidr_of_the_other_family_selects_nothing():
    with pytest.raises(exception.InboundAddressError, match="it matches none"):
        inbound.select(host(cidr="::/0"), ["198.51.100.12"])


def test_cidr_selecting_two_addresses_names_both():
    with pytest.raises(exception.InboundAddressError) as info:
        inbound.select(host(cidr="198.51.100.0/24"), LOCAL + ["198.51.100.13"])
    message = str(info.value)
    assert "198.51.100.12, 198.51.100.13" in message
    assert "set my_live_migration_ip instead" in message


def test_cidr_same_link_local_on_two_interfaces_is_ambiguous():
    with pytest.raises(exception.InboundAddressError, match="fe80::1%a, fe80::1%b"):
        inbound.select(host(cidr="fe80::/64"), ["fe80::1%a", "fe80::1%b"])


def test_cidr_duplicates_count_once():
    assert inbound.select(host(cidr="198.51.100.0/24"), ["198.51.100.12"] * 2) == (
        "198.51.100.12", md.INBOUND_FROM_CIDR)


def test_cidr_needs_the_local_addresses():
    with pytest.raises(exception.InboundAddressError, match="addresses are unknown"):
        inbound.select(host(cidr="198.51.100.0/24"), None)


def test_destination_data_with_an_inbound_address():
    data = inbound.destination_data(host("[2001:db8:2::11]"), LOCAL, block_migration=True,
                                    driver_data={"k": 1})
    assert data == md.MigrateData(
        dest_hostname="host-b", block_migration=True, driver_data={"k": 1},
        target_connect_addr="[2001:db8:2::11]", inbound_addr_source="option",
        listen_addrs={"migration": "2001:db8:2::11"})


def test_destination_data_keeps_a_listen_address_given_by_the_driver():
    data = inbound.destination_data(host("198.51.100.12"), LOCAL,
                                    listen_addrs={"migration": "0.0.0.0", "nbd": "::"})
    assert dict(data.listen_addrs) == {"migration": "0.0.0.0", "nbd": "::"}


def test_destination_data_without_an_inbound_address_is_legacy():
    data = inbound.destination_data(host(), LOCAL)
    assert data == md.MigrateData(dest_hostname="host-b")
    assert not data.uses_split_plane
