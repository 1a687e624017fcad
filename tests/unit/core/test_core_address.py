"""Parsing and formatting the host part of migration URIs (migplane.core.address)."""

import pytest

from migplane.core import address
from migplane.core import exception


@pytest.mark.parametrize("value, host, kind, port", [
    ("192.0.2.1", "192.0.2.1", address.IPV4, None),
    ("192.0.2.1:49152", "192.0.2.1", address.IPV4, 49152),
    ("2001:db8::1", "2001:db8::1", address.IPV6, None),
    ("2001:DB8:0:0::1", "2001:db8::1", address.IPV6, None),
    ("[2001:db8::1]", "2001:db8::1", address.IPV6, None),
    ("[2001:db8::1]:49152", "2001:db8::1", address.IPV6, 49152),
    ("fe80::1%eth0", "fe80::1%eth0", address.IPV6, None),
    ("fe80::1%25eth0", "fe80::1%eth0", address.IPV6, None),
    ("[fe80::1%25mig0]", "fe80::1%mig0", address.IPV6, None),
    ("[fe80::1%mig0]:1", "fe80::1%mig0", address.IPV6, 1),
    ("host.example", "host.example", address.HOSTNAME, None),
    ("host.example.", "host.example.", address.HOSTNAME, None),
    ("host-b", "host-b", address.HOSTNAME, None),
    ("host.example:65535", "host.example", address.HOSTNAME, 65535),
    ("xn--bcher-kva.example", "xn--bcher-kva.example", address.HOSTNAME, None),
])
def test_parse_accepts(value, host, kind, port):
    parsed = address.parse_host(value)
    assert (parsed.host, parsed.kind, parsed.port) == (host, kind, port)


@pytest.mark.parametrize("value, reason", [
    ("", "the host is empty"),
    (":49152", "the host is empty"),
    ("300.1.2.3", "not a valid IPv4 address"),
    ("1.2.3", "not a valid IPv4 address"),
    ("1.2.3.4.5", "not a valid IPv4 address"),
    ("01.2.3.4", "not a valid IPv4 address"),
    ("host/evil?x", "not allowed in a host"),
    ("host?x", "not allowed in a host"),
    ("host#frag", "not allowed in a host"),
    ("user@host", "not allowed in a host"),
    ("host\\x", "not allowed in a host"),
    ("host name", "not allowed in a host"),
    ("host\nname", "not allowed in a host"),
    ("host\x00", "not allowed in a host"),
    ("host\x7f", "not allowed in a host"),
    ("[2001:db8::1", "unbalanced '['"),
    ("[2001:db8::1]x", "unexpected text 'x' after ']'"),
    ("[2001:db8::1]:0", "port '0' is not a number from 1 to 65535"),
    ("[2001:db8::1]:", "port '' is not"),
    ("[host.example]", "At least 3 parts expected"),
    ("[]", "Address cannot be empty"),
    ("2001:db8::g", "Only hex digits permitted"),
    ("fe80::1%", "bad IPv6 zone id ''"),
    ("fe80::1%25", "bad IPv6 zone id ''"),
    ("fe80::1%eth:0", "bad IPv6 zone id 'eth:0'"),
    ("fe80::1%" + "z" * 65, "bad IPv6 zone id"),
    ("192.0.2.1%eth0", "brackets and '%' belong only to IPv6 literals"),
    ("host]", "brackets and '%' belong only to IPv6 literals"),
    ("host:0", "port '0' is not a number from 1 to 65535"),
    ("host:65536", "port '65536' is not"),
    ("host:http", "port 'http' is not"),
    ("host:", "port '' is not"),
    ("host:-1", "port '-1' is not"),
    ("host:\u00b2", "is not a number"),
    ("host:\uff11\uff12", "is not a number"),
    ("-host.example", "is not a valid host name label"),
    ("host-.example", "is not a valid host name label"),
    ("host..example", "'' is not a valid host name label"),
    ("h\u00f4st.example", "is not a valid host name label"),
    ("a" * 64 + ".example", "is not a valid host name label"),
    (".", "not a valid IPv4 address"),
    ("-.", "is not a valid host name label"),
    ("example.123", "the last label of a host name cannot be all digits"),
    (".".join(["a" * 50] * 5) + ".b", "at most 253 characters"),
])
def test_parse_rejects_with_the_value_named(value, reason):
    with pytest.raises(exception.InvalidAddress) as info:
        address.parse_host(value, field="my_field")
    message = str(info.value)
    assert reason in message
    assert repr(value) in message
    assert "my_field" in message
    assert info.value.kwargs["value"] == value


@pytest.mark.parametrize("value", [None, 1921680211, b"192.0.2.1", ["192.0.2.1"]])
def test_parse_rejects_non_strings(value):
    with pytest.raises(exception.InvalidAddress, match="expected a string"):
        address.parse_host(value)


@pytest.mark.parametrize("value", ["192.0.2.1:80", "[2001:db8::1]:80", "host:80"])
def test_port_refused_when_not_allowed(value):
    with pytest.raises(exception.InvalidAddress, match="a port is not allowed here"):
        address.parse_host(value, allow_port=False)


def test_hostname_length_limit_is_on_the_name_without_trailing_dot():
    name = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 characters
    assert len(name) == 253
    assert address.parse_host(name).host == name
    assert address.parse_host(name + ".").host == name + "."


@pytest.mark.parametrize("value, uri_host, netloc, text", [
    ("192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1"),
    ("192.0.2.1:5", "192.0.2.1", "192.0.2.1:5", "192.0.2.1:5"),
    ("2001:db8::1", "[2001:db8::1]", "[2001:db8::1]", "[2001:db8::1]"),
    ("[2001:db8::1]:49152", "[2001:db8::1]", "[2001:db8::1]:49152", "[2001:db8::1]:49152"),
    ("fe80::1%mig0", "[fe80::1%25mig0]", "[fe80::1%25mig0]", "[fe80::1%25mig0]"),
    ("host.example:7", "host.example", "host.example:7", "host.example:7"),
])
def test_formatting_for_uris(value, uri_host, netloc, text):
    parsed = address.parse_host(value)
    assert parsed.uri_host == uri_host
    assert parsed.netloc == netloc
    assert str(parsed) == text


def test_formatted_netloc_parses_back_to_the_same_address():
    for value in ("fe80::1%mig0", "[2001:db8::1]:2", "192.0.2.1:3", "h.example"):
        parsed = address.parse_host(value)
        assert address.parse_host(parsed.netloc) == parsed


def test_is_ip():
    assert address.parse_host("192.0.2.1").is_ip
    assert address.parse_host("2001:db8::1").is_ip
    assert not address.parse_host("host.example").is_ip


@pytest.mark.parametrize("value, expected", [
    ("192.0.2.1", True), ("2001:db8::1", True), ("fe80::1%eth0", True),
    ("[2001:db8::1]", True), ("host.example", False), ("300.1.2.3", False),
    ("host/evil", False), (None, False), ("host:\u00b2", False),
])
def test_is_ip_literal(value, expected):
    assert address.is_ip_literal(value) is expected


def test_host_address_is_frozen():
    parsed = address.parse_host("192.0.2.1")
    with pytest.raises(AttributeError):
        parsed.host = "192.0.2.2"


def test_join_host_port_brackets_ipv6_only():
    assert address.join_host_port("192.0.2.11", 7480) == "192.0.2.11:7480"
    assert address.join_host_port("2001:db8::11", 7480) == "[2001:db8::11]:7480"
    assert address.join_host_port("host-a", 1) == "host-a:1"
