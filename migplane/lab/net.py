"""Namespaces, bridges and veths of a lab, created with iproute2.

Everything lives in the lab's own namespaces; the root namespace's
interfaces are never touched (veths are created inside the switch namespace
with their peer moved straight into the host namespace).
"""

import json

from . import plan
from .errors import LabError
from .proc import run


def ip(netns, *args, check=True):
    return run(["ip", "-n", netns, *args], check=check, timeout=30)


def netns_exists(netns):
    cp = run(["ip", "netns", "list"], timeout=30)
    return any(line.split()[0] == netns for line in cp.stdout.splitlines() if line.strip())


def add_netns(netns):
    if netns_exists(netns):
        raise LabError(f"network namespace {netns} already exists")
    run(["ip", "netns", "add", netns], timeout=30)
    ip(netns, "link", "set", "lo", "up")


def del_netns(netns):
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], timeout=30)


def sysctl(netns, *settings):
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings], timeout=30)


def iptables(netns, tool, *args, check=True):
    """``iptables`` (or ``ip6tables``) in ``netns``, waiting for the xtables lock."""
    return run(["ip", "netns", "exec", netns, tool, "-w", *args], check=check, timeout=30)


def make_switch(netns):
    """Two bridges (one per plane); IPv6 off on the switch itself so it only
    forwards."""
    sysctl(netns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    for br in plan.BRIDGES.values():
        ip(netns, "link", "add", br, "type", "bridge", "stp_state", "0",
           "mcast_snooping", "0")
        ip(netns, "link", "set", br, "up")


def attach(switch, port, plane_name, netns, ifname, addrs4, addrs6):
    """veth from a bridge port in the switch to `ifname` inside `netns`."""
    ip(switch, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns)
    ip(switch, "link", "set", port, "master", plan.BRIDGES[plane_name], "up")
    for a in addrs4:
        ip(netns, "addr", "add", f"{a}/{plan.PREFIX4}", "dev", ifname)
    for a in addrs6:
        ip(netns, "-6", "addr", "add", f"{a}/{plan.PREFIX6}", "dev", ifname, "nodad")
    ip(netns, "link", "set", ifname, "up")


def prepare_endpoint(netns):
    """Keep static IPv6 addresses across link down/up, no autoconfiguration."""
    sysctl(netns, "net.ipv6.conf.all.keep_addr_on_down=1",
           "net.ipv6.conf.default.keep_addr_on_down=1",
           "net.ipv6.conf.default.accept_ra=0", "net.ipv6.conf.default.autoconf=0")


def set_link(netns, ifname, up, addrs6=()):
    ip(netns, "link", "set", ifname, "up" if up else "down")
    if up:
        for a in addrs6:   # belt and braces if a kernel drops them anyway
            ip(netns, "-6", "addr", "replace", f"{a}/{plan.PREFIX6}", "dev", ifname, "nodad")


def link_info(netns, ifname):
    cp = ip(netns, "-j", "-s", "link", "show", "dev", ifname)
    data = json.loads(cp.stdout)
    if not data:
        raise LabError(f"no interface {ifname} in {netns}")
    return data[0]


def counters(netns, ifname):
    """Bytes ``ifname`` in ``netns`` sent and received (migplane.netlink's reading)."""
    from migplane import netlink

    found = netlink.counters(netns)
    if ifname not in found:
        raise LabError(f"no interface {ifname} in {netns}")
    tx, rx = found[ifname]
    return {"rx_bytes": rx, "tx_bytes": tx}


def link_up(netns, ifname):
    info = link_info(netns, ifname)
    return "UP" in info.get("flags", []) and info.get("operstate") != "DOWN"
