"""One outgoing migration: the blocking migrateToURI3 call in its own thread.

The flow wants ``live_migration()`` to return at once and then polls, so the
call runs in a thread and this object keeps what the poller needs: the
call's outcome (libvirt's error kept as is), the last statistics seen, and
the requests (downtime, abort, force-complete) that arrived before libvirt
had a job to apply them to.

A job that switched to post-copy and whose call failed is recovered in the
same thread (``recovery``): the poller sees ``recovering`` until the resumed
call returns, or ``gave_up`` once the deadline passed. :meth:`resume` starts
the recovery again (an operator's ``migplane resume``, a restarted agent).
"""

import logging
import threading
import time
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple
from typing import cast

import libvirt

from migplane.drivers.libvirt import errors
from migplane.drivers.libvirt import recovery as recovery_mod

if TYPE_CHECKING:  # only for annotations: this module imports nothing more
    from migplane.core import driver as driver_mod
    from migplane.drivers.libvirt import flags as flags_mod

LOG = logging.getLogger(__name__)

#: Flags added to the original call to resume a broken post-copy (libvirt
#: refuses POSTCOPY_RESUME without POSTCOPY).
RESUME_FLAGS = libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME


#: Seconds a resume waits for libvirt to return a migration call that broke.
RESUME_WAIT_S = 5.0
#: Seconds the call may stay held after the source saw the break before the
#: destination's half is paused too (its QEMU may not have seen it).
PEER_PAUSE_AFTER_S = 3.0

#: libvirt-python ships no types.
Domain = Any  # libvirt.virDomain


#: A source domain shut off this way lost its QEMU (and the pages it held).
_DIED = {(libvirt.VIR_DOMAIN_SHUTOFF, reason) for reason in (
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED,
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED)}


class CallStillHeld(Exception):
    """libvirt has not returned the broken migration call: nothing to resume yet."""


def domain_phase(dom: Domain) -> str:
    """The source domain as :mod:`recovery` names it."""
    try:
        state, reason = dom.state()
    except libvirt.libvirtError as err:
        if errors.is_not_found(err):
            return recovery_mod.GONE
        raise
    if state == libvirt.VIR_DOMAIN_PAUSED:
        if reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED:
            return recovery_mod.FAILED
        if reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY:
            return recovery_mod.ACTIVE
    if state == libvirt.VIR_DOMAIN_CRASHED or (state, reason) in _DIED:
        return recovery_mod.DIED
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return recovery_mod.GONE
    return recovery_mod.OTHER


class MigrationJob:
    #: Paths of the local file disks its block migration copies (set by the driver).
    copied_disks: List[str]

    def __init__(self, dom: Domain, call: "flags_mod.MigrateCall", instance: str,
                 recovery: Optional[recovery_mod.Recovery] = None,
                 clock: Callable[[], float] = time.monotonic,
                 lookup: Optional[Callable[[str], Domain]] = None,
                 on_end: Optional[Callable[[], None]] = None) -> None:
        self._dom = dom
        #: Told when the call (or its recovery) ended, so a flow waits no longer.
        self._on_end = on_end
        #: Finds the domain again by UUID through a new connection (None: never).
        self._lookup = lookup
        self.call = call
        self.instance = instance
        self.uuid = dom.UUIDString()
        self.started_at: Optional[float] = None
        #: The libvirtError (or other exception) the call ended with; None on success.
        self.error: Optional[Exception] = None
        self.abort_requested = False
        #: The guest was paused by force-complete, so rollback must resume it.
        self.paused_by_us = False
        self.postcopy = False
        self.last_stats: Dict[str, Any] = {}
        #: The JobProgress once the call ended (computed once, then kept).
        self.final: Optional[driver_mod.JobProgress] = None
        #: Requests to apply once the libvirt job exists: name -> argument.
        self.pending: Dict[str, Any] = {}
        #: A :class:`~migplane.drivers.libvirt.recovery.Recovery`, or None.
        self.recovery = recovery
        #: The stream broke and the thread recovers it; it gave up at the deadline.
        self.recovering = False
        self.gave_up = False
        #: Why the stream broke (libvirt's words), and the last recovery step.
        self.break_error: Optional[Exception] = None
        self.recovery_note: Optional[str] = None
        self.breaks = 0
        self.resumes = 0
        self._clock = clock
        #: Stall detection: (memory_processed, when it last changed).
        self._seen: Optional[Tuple[Any, float]] = None
        #: When the source was first seen post-copy-failed with the call not back,
        #: and when the destination's half was last asked to pause.
        self._broken_at: Optional[float] = None
        self._peer_paused_at: Optional[float] = None
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"migrate-{instance}")

    @property
    def dom(self) -> Domain:
        """The domain, through a connection that is alive: this host's libvirtd
        may have restarted since the job began, and a post-copy job outlives
        it (its QEMUs go on). While the daemon is down the old handle is
        returned, and its calls fail as they would."""
        try:
            if self._dom.connect().isAlive():
                return self._dom
        except libvirt.libvirtError:
            pass
        if self._lookup is not None:
            try:
                self._dom = self._lookup(self.uuid)
            except libvirt.libvirtError as err:
                LOG.debug("Cannot find %s again yet: %s", self.instance, err)
        return self._dom

    def start(self, resume: bool = False) -> None:
        """Run the call (or, with ``resume``, only the recovery) in the thread."""
        self.started_at = time.monotonic()
        if resume:
            self._thread = threading.Thread(target=self._recover_and_finish, daemon=True,
                                            name=f"recover-{self.instance}")
            self.postcopy = True
            self.recovering = True
        self._thread.start()

    def _run(self) -> None:
        LOG.info("Migrating %s: %s", self.instance, self.call.describe())
        try:
            self.dom.migrateToURI3(self.call.dconnuri, self.call.call_params(),
                                   self.call.flags)
        except libvirt.libvirtError as err:
            LOG.warning("Migration of %s failed: %s", self.instance, err)
            self.error = err
        except Exception as err:  # the thread must always record an outcome
            LOG.exception("Migration of %s failed", self.instance)
            self.error = err
        else:
            LOG.info("Migration of %s completed", self.instance)
        if (self.error is None or not self.postcopy or self.recovery is None
                or self.gave_up):
            self._end()
            return
        # In post-copy the guest runs on the destination without all of its
        # memory: the only way out is forward.
        self.recovering = True
        self._recover_and_finish()

    # -- post-copy recovery ---------------------------------------------------------

    def resume(self) -> bool:
        """Recover again a job that gave up (a new deadline); False when the job
        is not a broken post-copy. A job still recovering is left to go on."""
        if self.recovering and not self.done:
            return True
        if self.gave_up and not self._done.wait(RESUME_WAIT_S):
            raise CallStillHeld()
        if not (self.done and self.gave_up):
            return False
        self.gave_up = False
        self.recovering = True
        self._done.clear()
        self._thread = threading.Thread(target=self._recover_and_finish, daemon=True,
                                        name=f"recover-{self.instance}")
        self._thread.start()
        return True

    def _recover_and_finish(self) -> None:
        try:
            self._recover()
        except Exception as err:  # the thread must always record an outcome
            LOG.exception("Recovery of the post-copy migration of %s failed", self.instance)
            self.gave_up = True
            self.recovery_note = "the recovery failed: %s" % err
        finally:
            self.recovering = False
            self._end()

    def _end(self) -> None:
        self._done.set()
        if self._on_end is not None:
            self._on_end()

    def _recover(self) -> None:
        # only a job with a recovery (post-copy armed) recovers
        rec = cast(recovery_mod.Recovery, self.recovery)
        self.breaks += 1
        self.break_error = self.error
        start = self._clock()
        attempt = 0
        stalled_since: Optional[float] = None
        LOG.warning("Post-copy migration of %s broke (%s); recovering it for up to %d s",
                    self.instance, errors.message(self.error) if self.error else "paused",
                    rec.timeout_s)
        while True:
            try:
                phase, unknown_why = domain_phase(self.dom), ""
            except libvirt.libvirtError as err:   # this host's libvirtd is down
                phase, unknown_why = recovery_mod.UNKNOWN, errors.message(err)
            now = self._clock()
            if phase == recovery_mod.ACTIVE:
                stalled_since = now if stalled_since is None else stalled_since
            else:
                stalled_since = None
            peer_up, why = (rec.peer_answers() if phase == recovery_mod.FAILED
                            else (False, ""))
            step = recovery_mod.next_step(
                phase, peer_up, now - start, rec.timeout_s,
                0.0 if stalled_since is None else now - stalled_since,
                rec.stall_timeout_s, attempt,
                peer_half_gone=peer_up and rec.destination_half_gone(self.instance))
            why = unknown_why or why
            self.recovery_note = "%s%s" % (step.reason, "" if peer_up or not why
                                           else " (%s)" % why)
            if step.action == recovery_mod.COMPLETED:
                LOG.info("Post-copy migration of %s completed: %s", self.instance,
                         step.reason)
                self.error = None
                return
            if step.action == recovery_mod.GIVE_UP:
                LOG.error("Post-copy migration of %s is left paused: %s", self.instance,
                          step.reason)
                self.gave_up = True
                return
            if step.action == recovery_mod.PAUSE:
                self.pause_stalled()
            elif step.action == recovery_mod.RESUME:
                if self._resume_call():
                    return
                self._pause_destination()
                attempt += 1
                step = recovery_mod.Step(recovery_mod.WAIT, step.reason,
                                         recovery_mod.backoff(attempt - 1))
            self._wake.wait(step.delay_s)
            self._wake.clear()

    def _resume_call(self) -> bool:
        """One resume attempt; True once the migration completed."""
        LOG.info("Resuming the post-copy migration of %s", self.instance)
        try:
            self.dom.migrateToURI3(self.call.dconnuri, self.call.call_params(),
                                   self.call.flags | RESUME_FLAGS)
        except libvirt.libvirtError as err:
            LOG.warning("Resuming the post-copy migration of %s failed: %s",
                        self.instance, err)
            self.error = err
            return False
        self.resumes += 1
        self.error = None
        LOG.info("Post-copy migration of %s resumed and completed", self.instance)
        return True

    def pause_stalled(self) -> None:
        """Pause a stalled post-copy stream so that it can be resumed."""
        try:
            self.dom.abortJobFlags(libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
            LOG.warning("Paused the stalled post-copy migration of %s", self.instance)
        except libvirt.libvirtError as err:
            LOG.warning("Could not pause the stalled post-copy migration of %s: %s",
                        self.instance, err)

    def blocked_since_break(self) -> Optional[float]:
        """Seconds since the source domain was first seen post-copy-failed while
        libvirt still holds the migration call, or None (it is not)."""
        if not self.postcopy or self.recovery is None or self.recovering:
            return None
        try:
            if domain_phase(self.dom) != recovery_mod.FAILED:
                return None
        except libvirt.libvirtError:   # this host's libvirtd is down: ask again later
            return None
        now = self._clock()
        if self._broken_at is None:
            self._broken_at = now
            LOG.warning("Post-copy migration of %s broke; libvirt has not returned the "
                        "migration call yet", self.instance)
        if now - self._broken_at >= PEER_PAUSE_AFTER_S and (
                self._peer_paused_at is None
                or now - self._peer_paused_at >= recovery_mod.RETRY_MAX_S):
            self._peer_paused_at = now
            threading.Thread(target=self._pause_destination, daemon=True,
                             name=f"pause-{self.instance}").start()
        return now - self._broken_at

    def _pause_destination(self) -> None:
        try:
            # only a job with a recovery pauses its peer
            cast(recovery_mod.Recovery, self.recovery).pause_destination(self.instance)
        except Exception as err:  # the destination may be unreachable: next time
            LOG.warning("Could not pause the destination's half of %s: %s",
                        self.instance, err)

    def stalled(self, memory_processed: Any) -> bool:
        """Has a running post-copy job sent nothing for the stall timeout?"""
        if not self.postcopy or self.recovery is None or self.recovering:
            return False
        now = self._clock()
        if self._seen is None or memory_processed != self._seen[0]:
            self._seen = (memory_processed, now)
            return False
        return now - self._seen[1] >= self.recovery.stall_timeout_s

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the call to return; True when it has."""
        return self._done.wait(timeout)
