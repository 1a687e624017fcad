"""Recovering a post-copy migration whose stream broke (libvirt >= 8.5).

Once a job switched to post-copy the guest runs on the destination while part
of its memory is still on the source: neither half can run alone, so the only
way out is forward. When the stream breaks (a connection reset, a link down
until TCP gives up, the destination's daemon restarting) QEMU pauses the
migration, the source domain becomes ``paused`` with reason
``VIR_DOMAIN_PAUSED_POSTCOPY_FAILED`` and the destination ``running`` with
``VIR_DOMAIN_RUNNING_POSTCOPY_FAILED`` (its vCPUs wait for the missing pages).
libvirt then accepts the same ``migrateToURI3`` call again with
``VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_RESUME``; a stream that merely
stalls (a link down that TCP has not given up on) is first paused with
``abortJobFlags(VIR_DOMAIN_ABORT_JOB_POSTCOPY)``. A peer-to-peer resume needs
the source's daemon to reach the destination's (the control connection) and
QEMU to reach the migration address, so the driver waits for both before
each attempt, with a backoff, until ``postcopy_recovery_timeout``; then it
gives up and leaves both halves exactly as they are.

:func:`next_step` is the rule, a pure function of what the source domain and
the probes say; :class:`Recovery` holds the options and does the probing.
Nothing here destroys, undefines or resumes a domain: the only calls are the
pause of a stalled stream and the resume of the migration itself.
"""

import ctypes
import dataclasses
import errno
import logging
import os
import socket
import urllib.parse
from typing import Any
from typing import Callable
from typing import List
from typing import Optional
from typing import Tuple
from typing import cast

LOG = logging.getLogger(__name__)

#: What the source domain's state says of a job in post-copy.
FAILED = "postcopy-failed"     # paused, VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: resumable
ACTIVE = "postcopy-active"     # paused, VIR_DOMAIN_PAUSED_POSTCOPY: still streaming
GONE = "gone"                  # shut off or undefined: QEMU finished sending
DIED = "died"                  # shut off by a crash or a kill: its pages are lost
OTHER = "other"                # anything else: not ours to touch
UNKNOWN = "unknown"            # this host's libvirtd does not answer (restarting)

#: Actions of :func:`next_step`.
WAIT = "wait"
PAUSE = "pause"                # abortJobFlags(VIR_DOMAIN_ABORT_JOB_POSTCOPY)
RESUME = "resume"              # migrateToURI3(..., flags | POSTCOPY | POSTCOPY_RESUME)
GIVE_UP = "give-up"            # leave both halves as they are: postcopy_paused
COMPLETED = "completed"        # the source sent everything after all
ACTIONS = (WAIT, PAUSE, RESUME, GIVE_UP, COMPLETED)

#: First and longest wait between two attempts (doubling in between).
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 15.0
#: Seconds a TCP probe waits for an answer.
PROBE_TIMEOUT_S = 3.0
#: libvirtd's default ports per control URI transport.
LIBVIRTD_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the recovery, and why; ``delay_s`` before looking again."""

    action: str
    reason: str
    delay_s: float = 0.0


def backoff(attempt: int) -> float:
    """Seconds to wait after ``attempt`` failed tries (0, 1, ...)."""
    # int ** int is Any to typeshed (a negative exponent makes a float)
    return cast(float, min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(attempt, 16)))


def next_step(domain: str, peer_up: bool, since_s: float, timeout_s: float,
              stalled_s: float, stall_timeout_s: float, attempt: int,
              peer_half_gone: bool = False) -> Step:
    """What to do now for a post-copy job whose stream broke or stalled.

    :param domain: the source domain as :data:`FAILED`, :data:`ACTIVE`,
        :data:`GONE`, :data:`DIED`, :data:`OTHER` or :data:`UNKNOWN`.
    :param peer_up: the destination's daemon and migration address answer.
    :param since_s: seconds since the recovery began.
    :param timeout_s: ``postcopy_recovery_timeout``.
    :param stalled_s: seconds the job has been :data:`ACTIVE` without progress.
    :param stall_timeout_s: ``postcopy_stall_timeout``.
    :param attempt: failed resume attempts so far (for the backoff).
    :param peer_half_gone: the destination's daemon says its half is gone (shut
        off or undefined: its QEMU died).
    :returns: a :class:`Step`.
    """
    if domain == GONE:
        return Step(COMPLETED, "the source domain shut off: QEMU sent the last page")
    if domain == DIED:
        return Step(GIVE_UP, "the source's QEMU died in post-copy: the pages it still "
                             "held are lost, nothing can resume the migration")
    if peer_half_gone:
        return Step(GIVE_UP, "the destination's half is gone (its QEMU died): nothing "
                             "can resume the migration")
    if domain == OTHER:
        return Step(GIVE_UP, "the source domain is in no post-copy state; leaving both "
                             "halves as they are")
    if since_s >= timeout_s:
        return Step(GIVE_UP, "not recovered within postcopy_recovery_timeout (%.0f s); "
                             "both halves are left paused" % timeout_s)
    delay = min(backoff(attempt), max(0.0, timeout_s - since_s))
    if domain == UNKNOWN:
        # the QEMUs go on without their daemons: ask again once it is back
        return Step(WAIT, "this host's libvirtd does not answer", min(delay, RETRY_FIRST_S))
    if domain == ACTIVE:
        if stalled_s >= stall_timeout_s:
            return Step(PAUSE, "no post-copy progress for %.0f s: pausing the stream so "
                               "that it can be resumed" % stalled_s)
        return Step(WAIT, "the stream may still be flowing", min(delay, RETRY_FIRST_S))
    if not peer_up:
        return Step(WAIT, "the destination's daemon or migration address does not "
                          "answer yet", delay)
    return Step(RESUME, "the destination answers: resuming the migration")


_CLONE_NEWNET = 0x40000000


def socket_in(netns: str, family: socket.AddressFamily) -> socket.socket:
    """A TCP socket of network namespace ``netns`` (as ``ip netns`` names it).

    setns() moves only the calling thread, which moves back at once; the
    socket stays in the namespace it was made in.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as own, \
            open(os.path.join("/run/netns", os.path.basename(netns))) as target:
        if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into %s failed" % netns)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if libc.setns(own.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back from %s failed" % netns)


class Recovery:
    """The recovery options of one job, and the probes of its destination.

    :param dconnuri: the control URI (``qemu+tcp://host/system``).
    :param data_uri: the migration address (``tcp://198.51.100.12:49152``), or None.
    """

    def __init__(self, stall_timeout_s: float, timeout_s: float, dconnuri: str,
                 data_uri: Optional[str] = None, netns: Optional[str] = None,
                 connect: Optional[Callable[..., Any]] = None) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.timeout_s = timeout_s
        self.dconnuri = dconnuri
        self.data_uri = data_uri
        #: The network namespace libvirtd runs in ([driver_libvirt] netns): the
        #: probes must see the destination as libvirtd and QEMU do.
        self.netns = netns
        #: ``connect((host, port), timeout=seconds)``: an object with ``close()``.
        self._connect: Callable[..., Any] = connect or self._tcp_connect

    def _tcp_connect(self, address: Tuple[str, int], timeout: float) -> socket.socket:
        if self.netns is None:
            return socket.create_connection(address, timeout=timeout)
        sock = socket_in(self.netns, socket.AF_INET6 if ":" in address[0]
                         else socket.AF_INET)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def targets(self) -> List[Tuple[str, str, int, bool]]:
        """``[(what, host, port, refused_is_an_answer)]`` to probe before a resume.

        The daemon must accept the connection; the migration address only has
        to answer (its QEMU listens again only once the resume prepared it: a
        refusal proves the host and the link are back).
        """
        found = []
        control = urllib.parse.urlsplit(self.dconnuri)
        transport = control.scheme.partition("+")[2] or "tls"
        if control.hostname and transport in LIBVIRTD_PORTS:
            found.append(("the destination's libvirtd", control.hostname,
                          control.port or LIBVIRTD_PORTS[transport], False))
        if self.data_uri:
            data = urllib.parse.urlsplit(self.data_uri)
            if data.hostname:
                found.append(("the migration address", data.hostname,
                              data.port or 49152, True))
        return found

    def pause_destination(self, instance: str) -> bool:
        """Pause the destination's half when its QEMU has not seen the break.

        A stream reset by the network may reach only the source: the
        destination's QEMU then waits for pages in post-copy-active, its
        libvirtd waits for it, and the source's libvirtd waits for that (the
        peer-to-peer call does not return, so nothing can be resumed).
        libvirt's remedy is the same abort on that side; the control URI is
        the one this job already uses. Returns True when it paused it.
        """
        import libvirt

        conn = libvirt.open(self.dconnuri)
        try:
            dom = conn.lookupByName(instance)
            state, reason = dom.state()
            if (state, reason) != (libvirt.VIR_DOMAIN_RUNNING,
                                   libvirt.VIR_DOMAIN_RUNNING_POSTCOPY):
                return False
            dom.abortJobFlags(libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
            LOG.warning("Paused the destination's half of the broken post-copy of %s",
                        instance)
            return True
        finally:
            conn.close()

    def destination_half_gone(self, instance: str) -> bool:
        """Does the destination's daemon say its half of ``instance`` is gone
        (undefined, shut off or crashed)? False when it cannot be asked."""
        import libvirt

        try:
            conn = libvirt.open(self.dconnuri)
        except libvirt.libvirtError:
            return False
        try:
            state = conn.lookupByName(instance).state()[0]
        except libvirt.libvirtError as err:
            return bool(err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)
        finally:
            conn.close()
        return state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)

    def peer_answers(self) -> Tuple[bool, str]:
        """Do the destination's daemon and migration address answer? ``(bool, why)``."""
        for what, host, port, refused_ok in self.targets():
            try:
                self._connect((host, port), timeout=PROBE_TIMEOUT_S).close()
            except socket.gaierror as err:
                # A name only libvirtd's host resolves (another mount namespace,
                # its own /etc/hosts): the resume attempt itself is the probe.
                LOG.debug("Cannot resolve %s (%s): not probing %s", host, err, what)
            except ConnectionRefusedError:
                if not refused_ok:
                    return False, "%s (%s port %d) refuses connections" % (what, host, port)
            except OSError as err:
                if refused_ok and err.errno == errno.ECONNREFUSED:
                    continue
                return False, "%s (%s port %d) does not answer: %s" % (what, host, port,
                                                                        err)
        return True, "the destination answers"
