"""Names and addresses of a lab: pure functions, no side effects.

Only documentation ranges are ever used (RFC 5737 / RFC 3849).
"""

import re
import string

PLANES = ("management", "migration")
IFNAMES = {"management": "mgmt0", "migration": "mig0"}
BRIDGES = {"management": "br-mgmt", "migration": "br-mig"}
NETS4 = {"management": "192.0.2", "migration": "198.51.100"}
NETS6 = {"management": "2001:db8:1", "migration": "2001:db8:2"}
PREFIX4 = 24
PREFIX6 = 64
CONTROLLER_HOSTNAME = "controller"
CONTROLLER_IP = "192.0.2.1"
CONTROLLER_IP6 = "2001:db8:1::1"
MAX_HOSTS = 26
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def check_name(name):
    if not NAME_RE.match(name or ""):
        raise ValueError(f"bad lab name {name!r}: want [a-z][a-z0-9-]{{0,19}}")
    return name


def plane(p):
    """Accept 'management'/'mgmt' and 'migration'/'mig'."""
    aliases = {"mgmt": "management", "mig": "migration"}
    p = aliases.get(p, p)
    if p not in PLANES:
        raise ValueError(f"unknown plane {p!r}: want one of {PLANES}")
    return p


def letter(i):
    return string.ascii_lowercase[i]


def hostname(i):
    return f"host-{letter(i)}"


def host_addrs(i):
    """Addresses of host i (0-based): .11+i on every plane."""
    n = 11 + i
    return {
        "mgmt_ip": f"{NETS4['management']}.{n}",
        "mig_ip": f"{NETS4['migration']}.{n}",
        "mgmt_ip6": f"{NETS6['management']}::{n}",
        "mig_ip6": f"{NETS6['migration']}::{n}",
    }


def switch_netns(lab):
    return f"{lab}-sw"


def controller_netns(lab):
    return f"{lab}-ctl"


def host_netns(lab, i):
    return f"{lab}-{hostname(i)}"


def switch_port(plane_name, i):
    """Switch-side veth name for host i on a plane (controller: i=None)."""
    tag = "mg" if plane_name == "management" else "mi"
    return f"{tag}-{'ctl' if i is None else letter(i)}"


def hosts_file(n):
    """/etc/hosts shared by the controller and every host: hostnames resolve
    to management addresses; '-mig' names to migration addresses."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{CONTROLLER_IP}\t{CONTROLLER_HOSTNAME}",
             f"{CONTROLLER_IP6}\t{CONTROLLER_HOSTNAME}-v6"]
    for i in range(n):
        a, h = host_addrs(i), hostname(i)
        lines += [f"{a['mgmt_ip']}\t{h}", f"{a['mig_ip']}\t{h}-mig",
                  f"{a['mgmt_ip6']}\t{h}-v6", f"{a['mig_ip6']}\t{h}-mig-v6"]
    return "\n".join(lines) + "\n"
