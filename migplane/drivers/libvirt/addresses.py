"""This host's IP addresses and the state of the interfaces that carry them.

Read over netlink with pyroute2, optionally inside a named network namespace
(``[driver_libvirt] netns``): the driver may run in another namespace than
the libvirt daemon it drives, and the daemon's addresses are the ones that
matter. The flag of an interface tells whether an inbound address can take
traffic at all; a down link fails a migration before any memory moves.
"""

import dataclasses
import errno
import ipaddress
from typing import Any
from typing import Iterable
from typing import List
from typing import Optional

from pyroute2 import IPRoute

from migplane.core import exception

_UP_STATES = ("UP", "UNKNOWN")


@dataclasses.dataclass(frozen=True)
class LocalAddress:
    address: str
    ifname: Optional[str]
    #: The interface is administratively up and its link is not down.
    up: bool


def _open(netns: Optional[str]) -> Any:
    if netns is None:
        return IPRoute()
    try:
        # flags=0: never create the namespace (pyroute2's default O_CREAT would).
        return IPRoute(netns=netns, flags=0)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise exception.ConfigError(
                group="driver_libvirt", option="netns", value=netns,
                reason="no such network namespace")
        raise


def _link_up(link: Any) -> bool:
    flags = link.get("flags", 0) or 0
    admin_up = bool(flags & 0x1)  # IFF_UP
    return admin_up and link.get("IFLA_OPERSTATE", "UNKNOWN") in _UP_STATES


def read(netns: Optional[str] = None) -> List[LocalAddress]:
    """Every address of the host (or of ``netns``) as :class:`LocalAddress`."""
    with _open(netns) as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        out = []
        for msg in ipr.get_addr():
            addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if not addr:
                continue
            link = links.get(msg["index"], {})
            out.append(LocalAddress(address=str(ipaddress.ip_address(addr)),
                                    ifname=link.get("IFLA_IFNAME"),
                                    up=bool(link) and _link_up(link)))
    return out


def find(local: Iterable[LocalAddress], addr: str) -> Optional[LocalAddress]:
    """The :class:`LocalAddress` in ``local`` equal to ``addr`` (zone ignored)."""
    wanted = ipaddress.ip_address(addr.split("%", 1)[0])
    for item in local:
        if ipaddress.ip_address(item.address) == wanted:
            return item
    return None


#: Kinds of interface whose reported speed says nothing about the link.
_VIRTUAL = ("veth", "bridge", "tun", "dummy", "vxlan", "macvlan", "ipvlan")


def interface_speed(addr: str, sysfs: str = "/sys/class/net") -> Optional[int]:
    """Bytes per second of the physical interface this host routes ``addr``
    through, from sysfs; None when unknown, virtual or the lookup fails."""
    try:
        with IPRoute() as ipr:
            route = ipr.route("get", dst=addr.split("%", 1)[0])
            oif = route[0].get_attr("RTA_OIF") if route else None
            if oif is None:
                return None
            link = ipr.get_links(oif)[0]
    except Exception:  # no route, a name rather than an address, ...
        return None
    name = link.get_attr("IFLA_IFNAME")
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if not name or kind in _VIRTUAL:
        return None
    try:
        with open("%s/%s/speed" % (sysfs, name)) as f:
            mbit = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return mbit * 1_000_000 // 8 if mbit > 0 else None
