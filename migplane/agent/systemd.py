"""Tell systemd how the agent is doing (``Type=notify``), with the standard library.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET``:
a path, or an abstract socket name written with a leading ``@``. Each
notification is one datagram of ``KEY=value`` lines (sd_notify(3)). Outside
systemd the variable is unset and :func:`notify` does nothing, so the agent
runs the same from a terminal, a lab or a unit.
"""

import logging
import os
import socket
import time

LOG = logging.getLogger(__name__)
ENV = "NOTIFY_SOCKET"


def address(value):
    """The ``AF_UNIX`` address of a ``$NOTIFY_SOCKET`` value, or None when it is
    not one (unset, or another family such as ``vsock:``)."""
    if not value:
        return None
    if value.startswith("@"):  # the abstract namespace: a leading NUL byte
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(*lines, environ=None):
    """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) to systemd; True when sent.

    A notification that cannot be sent is logged, never raised: the agent
    serves whether or not its supervisor listens.
    """
    value = (os.environ if environ is None else environ).get(ENV)
    target = address(value)
    if target is None:
        if value:
            LOG.warning("$%s=%r is not a unix socket: systemd is not notified",
                        ENV, value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(target)
            s.sendall("\n".join(lines).encode("utf-8"))
    except OSError as err:
        LOG.warning("Cannot notify systemd at %s: %s", value, err)
        return False
    return True


def ready(status):
    return notify("READY=1", "STATUS=%s" % status)


def reloading(status="Reading the TLS files and peers again"):
    # MONOTONIC_USEC lets systemd match the READY=1 that follows to this reload
    return notify("RELOADING=1", "STATUS=%s" % status,
                  "MONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))


def stopping():
    return notify("STOPPING=1", "STATUS=Stopping")
