"""What this host looks like on the network: addresses, routes, byte counters.

Read over netlink (:mod:`migplane.netlink`, pyroute2), so the answers are
those of the network namespace the agent runs in, whatever /sys happens to
show. These facts back ``migplane check`` (is the inbound address here, which
interface carries what) and the per-plane byte counts of a migration's
summary. ``ipr`` (a pyroute2 ``IPRoute``-like object) is for tests.
"""

import functools
import logging
import socket

from migplane import netlink
from migplane.agent import errors
from migplane.core import address

LOG = logging.getLogger(__name__)


def _agent_errors(read):
    @functools.wraps(read)
    def wrapper(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        except netlink.NetlinkError as err:
            raise errors.AgentError(reason="reading the network over netlink failed: %s"
                                    % err)
    return wrapper


@_agent_errors
def interfaces(ipr=None):
    """Each interface with its state, addresses and byte counters."""
    return netlink.interfaces(ipr=ipr)


@_agent_errors
def counters(ipr=None):
    """``{ifname: (tx_bytes, rx_bytes)}`` now."""
    return netlink.counters(ipr=ipr)


@_agent_errors
def routes(ipr=None):
    """The main routing table, IPv4 then IPv6."""
    return netlink.routes(ipr=ipr)


def route_to(target, ipr=None):
    """The kernel's route to ``target``: ``{to, dev, src, gateway, type, error}``.

    :raises InvalidAddress: ``target`` is not an IP literal or host name.
    """
    host = address.parse_host(target, field="to", allow_port=False)
    if not host.is_ip:
        host = address.parse_host(resolve(host.host), field="to", allow_port=False)
    try:
        found = netlink.route_to(host.host, ipr=ipr)
    except netlink.NetlinkError as err:
        return {"to": host.host, "dev": None, "src": None, "gateway": None,
                "error": str(err)}
    return dict(found, to=host.host, error=None)


def resolve(name):
    """The first address ``name`` resolves to here, as the hypervisor would dial it."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as err:
        raise errors.BadRequest(field="to", reason="%r does not resolve here: %s"
                                % (name, err))
    return infos[0][4][0]


def traffic(before, after, planes):
    """Bytes each interface sent and received between two :func:`counters`.

    :param planes: ``{ifname: plane}`` for the interfaces whose plane is known.
    """
    per_if, per_plane = {}, {}
    for name, (tx1, rx1) in after.items():
        tx0, rx0 = before.get(name, (tx1, rx1))
        sent, received = max(0, tx1 - tx0), max(0, rx1 - rx0)
        if not (sent or received):
            continue
        plane = planes.get(name)
        per_if[name] = {"tx_bytes": sent, "rx_bytes": received, "plane": plane}
        if plane:
            total = per_plane.setdefault(plane, {"tx_bytes": 0, "rx_bytes": 0})
            total["tx_bytes"] += sent
            total["rx_bytes"] += received
    return {"interfaces": per_if, "planes": per_plane}
