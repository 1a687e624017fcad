"""Reading this host's addresses with pyroute2, optionally in a named netns."""

import errno

import pytest

from migplane.core import exception
from migplane.drivers.libvirt import addresses


class FakeIPRoute:
    opened = []

    def __init__(self, netns=None, flags=None):
        FakeIPRoute.opened.append((netns, flags))
        if netns == "missing":
            raise OSError(errno.ENOENT, "No such file or directory")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_links(self):
        return [
            {"index": 1, "flags": 0x49, "IFLA_IFNAME": "lo", "IFLA_OPERSTATE": "UNKNOWN"},
            {"index": 2, "flags": 0x1003, "IFLA_IFNAME": "mgmt0", "IFLA_OPERSTATE": "UP"},
            {"index": 3, "flags": 0x1002, "IFLA_IFNAME": "mig0", "IFLA_OPERSTATE": "DOWN"},
            {"index": 4, "flags": 0x1003, "IFLA_IFNAME": "mig1",
             "IFLA_OPERSTATE": "LOWERLAYERDOWN"},
        ]

    def get_addr(self):
        return [
            {"index": 1, "IFA_ADDRESS": "127.0.0.1", "IFA_LOCAL": "127.0.0.1"},
            {"index": 2, "IFA_ADDRESS": "192.0.2.1", "IFA_LOCAL": "192.0.2.12"},  # p2p
            {"index": 3, "IFA_ADDRESS": "198.51.100.12"},
            {"index": 3, "IFA_ADDRESS": "2001:DB8:2::12"},
            {"index": 4, "IFA_ADDRESS": "198.51.100.112"},
            {"index": 2},
        ]


@pytest.fixture
def fake_iproute(monkeypatch):
    FakeIPRoute.opened = []
    monkeypatch.setattr(addresses, "IPRoute", FakeIPRoute)
    return FakeIPRoute


def test_addresses_with_their_interface_state(fake_iproute):
    found = addresses.read("lab-host-b")
    assert [(a.address, a.ifname, a.up) for a in found] == [
        ("127.0.0.1", "lo", True),
        ("192.0.2.12", "mgmt0", True),
        ("198.51.100.12", "mig0", False),
        ("2001:db8:2::12", "mig0", False),
        ("198.51.100.112", "mig1", False),
    ]
    # never creates a namespace that is not there
    assert fake_iproute.opened == [("lab-host-b", 0)]


def test_a_missing_namespace_is_a_configuration_error(fake_iproute):
    with pytest.raises(exception.ConfigError, match="netns"):
        addresses.read("missing")


def test_find_ignores_zone_and_spelling():
    local = [addresses.LocalAddress("2001:db8:2::12", "mig0", True),
             addresses.LocalAddress("fe80::1", "mig0", True)]
    assert addresses.find(local, "2001:DB8:2:0::12").ifname == "mig0"
    assert addresses.find(local, "fe80::1%mig0").address == "fe80::1"
    assert addresses.find(local, "198.51.100.12") is None


def test_reads_the_real_namespace_of_this_process():
    found = addresses.read()
    assert any(a.address == "127.0.0.1" for a in found)
