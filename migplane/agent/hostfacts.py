"""What this host looks like on the network: addresses, routes, byte counters.

Read through ``ip -j`` (netlink), so the answers are those of the network
namespace the agent runs in, whatever /sys happens to show. These facts back
``migplane check`` (is the inbound address here, which interface carries
what) and the per-plane byte counts of a migration's summary.
"""

import json
import logging
import socket
import subprocess

from migplane.agent import errors
from migplane.core import address

LOG = logging.getLogger(__name__)
IP = "ip"


def _ip_json(*args, runner=subprocess.run):
    argv = [IP, "-j", *args]
    try:
        done = runner(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise errors.AgentError(reason="%s failed: %s" % (" ".join(argv), err))
    if done.returncode != 0:
        raise errors.AgentError(reason="%s failed: %s" % (
            " ".join(argv), (done.stderr or "").strip() or "exit %d" % done.returncode))
    try:
        return json.loads(done.stdout or "[]")
    except ValueError as err:
        raise errors.AgentError(reason="%s printed no JSON: %s" % (" ".join(argv), err))


def interfaces(runner=subprocess.run):
    """Each interface with its state, addresses and byte counters."""
    result = []
    for link in _ip_json("-s", "addr", "show", runner=runner):
        stats = link.get("stats64") or link.get("stats") or {}
        result.append({
            "ifname": link.get("ifname"),
            "operstate": link.get("operstate"),
            "up": "UP" in (link.get("flags") or []),
            "addresses": [{"address": a.get("local"), "prefixlen": a.get("prefixlen"),
                           "family": a.get("family"), "scope": a.get("scope")}
                          for a in link.get("addr_info") or [] if a.get("local")],
            "tx_bytes": (stats.get("tx") or {}).get("bytes", 0),
            "rx_bytes": (stats.get("rx") or {}).get("bytes", 0),
        })
    return result


def counters(runner=subprocess.run):
    """``{ifname: (tx_bytes, rx_bytes)}`` now."""
    return {i["ifname"]: (i["tx_bytes"], i["rx_bytes"]) for i in interfaces(runner)}


def routes(runner=subprocess.run):
    """The main routing table, IPv4 then IPv6."""
    return (_ip_json("-4", "route", "show", runner=runner)
            + _ip_json("-6", "route", "show", runner=runner))


def route_to(target, runner=subprocess.run):
    """The kernel's route to ``target``: ``{to, dev, src, gateway}``.

    :raises InvalidAddress: ``target`` is not an IP literal or host name.
    """
    host = address.parse_host(target, field="to", allow_port=False)
    if not host.is_ip:
        host = address.parse_host(resolve(host.host), field="to", allow_port=False)
    try:
        found = _ip_json("route", "get", host.host, runner=runner)
    except errors.AgentError as err:
        return {"to": host.host, "dev": None, "src": None, "gateway": None,
                "error": str(err)}
    entry = found[0] if found else {}
    return {"to": host.host, "dev": entry.get("dev"), "src": entry.get("prefsrc"),
            "gateway": entry.get("gateway"), "type": entry.get("type", "unicast"),
            "error": None}


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
