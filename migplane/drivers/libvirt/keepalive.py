"""How long libvirt keeps a silent daemon-to-daemon connection open.

Between a switch to post-copy and libvirt's Finish, the destination's daemon
holds the incoming guest paused and destroys it when the source's
peer-to-peer connection closes; libvirt closes that connection once its
keepalive goes unanswered. So the keepalive bounds the management-plane
outage a switch to post-copy survives. This host's part of it is read from
its daemon's configuration: ``libvirtd.conf`` for the connections the daemon
serves (its end as a destination), ``qemu.conf`` for the peer-to-peer
connections it opens (as a source).
"""

import dataclasses
import logging
import os
import re
from typing import Optional

LOG = logging.getLogger(__name__)

SERVED = "libvirtd.conf"
OPENED = "qemu.conf"

#: A configuration file is read up to this size (libvirt's own are a few KiB).
MAX_CONF_BYTES = 1024 * 1024

#: Below this, the driver warns where post-copy may be armed: the longest
#: management-plane outage the fault matrix strikes.
WANTED_S = 60

_SETTING = re.compile(r"^\s*(keepalive_interval|keepalive_count)\s*=\s*(-?\d+)\s*(#.*)?$")


@dataclasses.dataclass(frozen=True)
class Keepalive:
    """libvirt's keepalive: a probe after ``interval`` s of silence, then every
    ``interval`` s; the connection is closed after ``count`` unanswered probes.
    An interval of 0 or less turns it off (TCP alone ends the connection)."""

    interval: int = 5
    count: int = 5

    def closes_after_s(self) -> Optional[int]:
        """Seconds of silence before libvirt closes the connection; None when
        the keepalive is off."""
        if self.interval <= 0:
            return None
        return self.interval * (max(self.count, 0) + 1)

    def describe(self) -> str:
        return "keepalive_interval = %d, keepalive_count = %d" % (self.interval, self.count)


def parse(text: str) -> Keepalive:
    """The keepalive a libvirt configuration text sets; libvirt's defaults for
    what it does not set (the last setting of a key wins, as in libvirt)."""
    found = {}
    for line in text.splitlines():
        match = _SETTING.match(line)
        if match:
            found[match.group(1)[len("keepalive_"):]] = int(match.group(2))
    return Keepalive(**found)


def read(path: str) -> Keepalive:
    """:func:`parse` of the file at ``path``, read up to :data:`MAX_CONF_BYTES`;
    libvirt's defaults when it does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONF_BYTES)
    except FileNotFoundError:
        return Keepalive()
    return parse(data.decode("utf-8", "replace"))


def tolerated_outage_s(served: Keepalive, opened: Keepalive) -> Optional[int]:
    """The outage this host's daemon survives on a peer-to-peer connection,
    either end: the shorter of its two keepalives; None when both are off."""
    times = [t for t in (served.closes_after_s(), opened.closes_after_s()) if t is not None]
    return min(times) if times else None


def warning(config_dir: str) -> Optional[str]:
    """What to tell an operator whose daemon closes a silent connection before
    :data:`WANTED_S`; None when it keeps it that long."""
    served = read(os.path.join(config_dir, SERVED))
    opened = read(os.path.join(config_dir, OPENED))
    outage = tolerated_outage_s(served, opened)
    if outage is None or outage >= WANTED_S:
        return None
    return ("libvirt on this host closes a silent peer-to-peer connection after about "
            "%d s (%s: %s; %s: %s): a management-plane outage that long between a "
            "switch to post-copy and libvirt's Finish makes the destination destroy "
            "the incoming guest, which is then lost. Raise keepalive_count in both "
            "files to cover %d s or more, or set [live_migration] permit_post_copy = "
            "false" % (outage, os.path.join(config_dir, SERVED), served.describe(),
                       os.path.join(config_dir, OPENED), opened.describe(), WANTED_S))
