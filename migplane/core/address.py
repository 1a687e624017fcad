"""Parse and format the host part of migration URIs.

Addresses reach us from configuration files and from peers over the network,
so they are parsed strictly: anything that could smuggle a path, query,
fragment or user-info into a URI (``/ ? # @``, whitespace, control
characters) is rejected with an error naming the value, never escaped into
something the operator did not write.
"""

import dataclasses
import ipaddress
import re
from typing import Iterable
from typing import List
from typing import NoReturn
from typing import Optional
from typing import Tuple
from typing import Union

from migplane.core import exception

IPV4 = "ipv4"
IPV6 = "ipv6"
HOSTNAME = "hostname"

# Underscores too: Nova's host names are free-form (``compute_1``), libvirt
# and QEMU resolve them, and RFC 3986 allows them in a URI's host.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_ZONE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_FORBIDDEN = re.compile(r"[/?#@\\\s\x00-\x1f\x7f]")

#: What ``ipaddress.ip_network`` returns.
_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclasses.dataclass(frozen=True)
class HostAddress:
    """One host: an IPv4 or IPv6 literal or a DNS name, with an optional port.

    ``host`` never has brackets and is normalised (``2001:db8::1``), for
    comparisons; ``written`` is the host as the operator or peer wrote it
    (``2001:DB8:0:0:0:0:0:1``), which is what goes into URIs, so that they
    read exactly as configured, as Nova's do. An IPv6 zone id is kept
    unescaped (``fe80::1%eth0``) and only escaped (``%25``) in a URI.
    """

    host: str
    kind: str
    port: Optional[int] = None
    written: Optional[str] = dataclasses.field(default=None, compare=False)

    @property
    def is_ip(self) -> bool:
        return self.kind in (IPV4, IPV6)

    @property
    def uri_host(self) -> str:
        """The host as written, as it must appear in a URI authority (RFC 3986/6874)."""
        host = self.written or self.host
        if self.kind == IPV6:
            return "[%s]" % host.replace("%", "%25", 1)
        return host

    @property
    def netloc(self) -> str:
        """``uri_host`` plus ``:port`` when a port was given."""
        if self.port is None:
            return self.uri_host
        return "%s:%d" % (self.uri_host, self.port)

    def __str__(self) -> str:
        return self.netloc


def _fail(value: object, field: str, reason: str) -> NoReturn:
    raise exception.InvalidAddress(value=value, field=field, reason=reason)


def _unescape_zone(text: str) -> str:
    return text.replace("%25", "%", 1) if "%25" in text else text


def _parse_ipv6(text: str, value: str, field: str) -> str:
    text = _unescape_zone(text)
    zone = None
    if "%" in text:
        text, zone = text.split("%", 1)
        if not _ZONE.match(zone):
            _fail(value, field, "bad IPv6 zone id %r" % zone)
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError as err:
        _fail(value, field, str(err))
    host = str(addr)
    if zone:
        host = "%s%%%s" % (host, zone)
    return host


def _parse_port(text: str, value: str, field: str) -> int:
    # str.isdigit() also accepts digits int() refuses ('\u00b2') or other scripts' digits
    if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) < 65536:
        _fail(value, field, "port %r is not a number from 1 to 65535" % text)
    return int(text)


def _parse_name_or_ipv4(text: str, value: str, field: str) -> Tuple[str, str]:
    if not text:
        _fail(value, field, "the host is empty")
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text)), IPV4
        except ValueError as err:
            _fail(value, field, "not a valid IPv4 address (%s)" % err)
    name = text[:-1] if text.endswith(".") else text
    if len(name) > 253:
        _fail(value, field, "a host name is at most 253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            _fail(value, field, "%r is not a valid host name label" % label)
    if labels[-1].isdigit():
        _fail(value, field, "the last label of a host name cannot be all digits")
    return text, HOSTNAME


def parse_host(value: object, field: str = "address", allow_port: bool = True
               ) -> "HostAddress":
    """Parse ``value`` into a :class:`HostAddress` or raise InvalidAddress.

    Accepted: ``192.0.2.1``, ``192.0.2.1:49152``, ``2001:db8::1``,
    ``[2001:db8::1]``, ``[2001:db8::1]:49152``, ``fe80::1%eth0``,
    ``[fe80::1%25eth0]``, ``host.example``, ``host.example:49152``.
    """
    if not isinstance(value, str):
        _fail(value, field, "expected a string, got %s" % type(value).__name__)
    if _FORBIDDEN.search(value):
        _fail(value, field, "it contains a character that is not allowed in a host "
                            "(one of '/ ? # @ \\', whitespace or a control character)")
    port: Optional[int] = None
    if value.startswith("["):
        inner, sep, rest = value[1:].partition("]")
        if not sep:
            _fail(value, field, "unbalanced '['")
        if rest:
            if not rest.startswith(":"):
                _fail(value, field, "unexpected text %r after ']'" % rest)
            port = _parse_port(rest[1:], value, field)
        host, kind = _parse_ipv6(inner, value, field), IPV6
        written = _unescape_zone(inner)
    elif value.count(":") > 1:
        host, kind = _parse_ipv6(value, value, field), IPV6
        written = _unescape_zone(value)
    else:
        if "[" in value or "]" in value or "%" in value:
            _fail(value, field, "brackets and '%' belong only to IPv6 literals")
        text, _, port_text = value.partition(":")
        if ":" in value:
            port = _parse_port(port_text, value, field)
        host, kind = _parse_name_or_ipv4(text, value, field)
        written = text
    if port is not None and not allow_port:
        _fail(value, field, "a port is not allowed here")
    return HostAddress(host=host, kind=kind, port=port, written=written)


def is_ip_literal(value: object) -> bool:
    """True when ``value`` is an IPv4 or IPv6 literal (zone id allowed)."""
    try:
        return parse_host(value).is_ip
    except exception.InvalidAddress:
        return False


def join_host_port(host: str, port: int) -> str:
    """``host:port`` for a URL, the IPv6 literal bracketed (``[2001:db8::1]:7480``)."""
    return "%s:%d" % (parse_host(host, allow_port=False).uri_host, port)


def parse_networks(values: Optional[Iterable[Union[str, _Network]]],
                   option: str = "migration_networks"
                   ) -> Optional[Tuple[_Network, ...]]:
    """Parse CIDR strings (or networks) into a tuple of networks; ConfigError names the bad one.

    None stays None (no list given).
    """
    if values is None:
        return None
    parsed: List[_Network] = []
    for value in values or ():
        try:
            parsed.append(ipaddress.ip_network(value, strict=False))
        except (TypeError, ValueError) as err:
            raise exception.ConfigError(group="live_migration", option=option,
                                        value=value, reason=str(err))
    return tuple(parsed)
