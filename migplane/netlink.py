"""A host's network over netlink (pyroute2): interfaces, byte counters, routes.

The one reader of interface state and byte counters, for the agent's host
facts and the lab (in a named network namespace). Netlink answers for the
network namespace asked about, whatever /sys shows, and needs no ``ip``
binary or output parsing. Needs pyroute2 (the ``agent``, ``libvirt`` and
``lab`` extras); imported only by what needs it.
"""

import contextlib
import errno
import ipaddress
import socket
from typing import Any
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional
from typing import Tuple

IFF_UP = 0x1
_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
                6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw"}


class NetlinkError(Exception):
    """Netlink could not be read (no such namespace, permission...)."""


@contextlib.contextmanager
def session(netns: Optional[str] = None) -> Iterator[Any]:
    """A pyroute2 ``IPRoute`` for this namespace or the named ``netns``."""
    from pyroute2 import IPRoute

    try:
        # flags=0: never create the namespace (pyroute2's default O_CREAT would).
        ipr = IPRoute() if netns is None else IPRoute(netns=netns, flags=0)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise NetlinkError("no network namespace %r" % netns)
        raise NetlinkError("netlink: %s" % err)
    try:
        yield ipr
    finally:
        ipr.close()


def _link(link) -> Dict[str, Any]:
    stats = link.get("IFLA_STATS64") or link.get("IFLA_STATS") or {}
    operstate = link.get("IFLA_OPERSTATE", "UNKNOWN")
    return {"ifname": link.get("IFLA_IFNAME"), "operstate": operstate,
            "up": bool((link.get("flags", 0) or 0) & IFF_UP) and operstate != "DOWN",
            "addresses": [],
            "tx_bytes": int(stats.get("tx_bytes", 0) or 0),
            "rx_bytes": int(stats.get("rx_bytes", 0) or 0)}


def interfaces(netns: Optional[str] = None, ipr=None) -> List[Dict[str, Any]]:
    """Each interface with its state, addresses and byte counters."""
    if ipr is None:
        with session(netns) as opened:
            return interfaces(ipr=opened)
    links = {link["index"]: _link(link) for link in ipr.get_links()}
    for msg in ipr.get_addr():
        addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if addr and msg["index"] in links:
            links[msg["index"]]["addresses"].append({
                "address": str(ipaddress.ip_address(addr)), "prefixlen": msg["prefixlen"],
                "family": _FAMILIES.get(msg["family"], str(msg["family"])),
                "scope": _SCOPES.get(msg["scope"], str(msg["scope"]))})
    return [links[index] for index in sorted(links)]


def counters_of(found: List[Dict[str, Any]]) -> Dict[str, Tuple[int, int]]:
    """``{ifname: (tx_bytes, rx_bytes)}`` of :func:`interfaces`' answer."""
    return {i["ifname"]: (i["tx_bytes"], i["rx_bytes"]) for i in found}


def counters(netns: Optional[str] = None, ipr=None) -> Dict[str, Tuple[int, int]]:
    """``{ifname: (tx_bytes, rx_bytes)}`` now."""
    return counters_of(interfaces(netns, ipr))


def _route(msg, names) -> Dict[str, Any]:
    dst = msg.get("RTA_DST")
    return {"dst": "%s/%d" % (dst, msg["dst_len"]) if dst else "default",
            "dev": names.get(msg.get("RTA_OIF")), "gateway": msg.get("RTA_GATEWAY"),
            "prefsrc": msg.get("RTA_PREFSRC"),
            "type": _ROUTE_TYPES.get(msg.get("type"), str(msg.get("type")))}


def routes(netns: Optional[str] = None, ipr=None) -> List[Dict[str, Any]]:
    """The main routing table, IPv4 then IPv6."""
    if ipr is None:
        with session(netns) as opened:
            return routes(ipr=opened)
    names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
    found = []
    for family in (socket.AF_INET, socket.AF_INET6):
        found += [_route(m, names) for m in ipr.get_routes(family=family, table=254)]
    return found


def route_to(ip: str, netns: Optional[str] = None, ipr=None) -> Dict[str, Any]:
    """The kernel's route to IP literal ``ip``: ``{dev, src, gateway, type}``.

    :raises NetlinkError: no route (e.g. unreachable network).
    """
    if ipr is None:
        with session(netns) as opened:
            return route_to(ip, ipr=opened)
    try:
        found = ipr.route("get", dst=ip.split("%", 1)[0])
    except Exception as err:  # pyroute2's NetlinkError: ENETUNREACH...
        raise NetlinkError("no route to %s: %s" % (ip, err))
    if not found:
        raise NetlinkError("no route to %s" % ip)
    msg = found[0]
    names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
    return {"dev": names.get(msg.get("RTA_OIF")), "src": msg.get("RTA_PREFSRC"),
            "gateway": msg.get("RTA_GATEWAY"),
            "type": _ROUTE_TYPES.get(msg.get("type"), str(msg.get("type")))}
