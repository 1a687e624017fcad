"""This host's migration slots, shared by outgoing and incoming migrations.

A host runs at most ``[live_migration] max_concurrent`` migrations, whichever
side it is on. The core :class:`HostLimiter` counts them; it is used here in
'refuse' mode as a try-acquire, and waiting (``when_busy = wait``) is a poll
loop, so one request thread never blocks on another host's slot and a slot
can be taken for a peer: a source agent reserves its destination's slot over
HTTP, with a lease it renews, so a source that dies cannot hold it forever.
"""

import dataclasses
import logging
import threading
import time

from migplane.core import exception
from migplane.core import limiter as limiter_mod
from migplane.core import settings as settings_mod

LOG = logging.getLogger(__name__)
POLL_S = 0.5


@dataclasses.dataclass
class Lease:
    migration_id: str
    source: str
    instance: str
    expires: float
    #: When it was taken: renewals never keep it past ``created + max_lifetime_s``.
    created: float = 0.0


class HostSlots:
    """The slots of the host named ``hostname``; ``try_take`` never blocks."""

    def __init__(self, hostname, concurrency, lease_s=120, clock=time.monotonic,
                 max_lifetime_s=86400):
        self.hostname = hostname
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.max_lifetime_s = max_lifetime_s
        self._clock = clock
        self._limiter = limiter_mod.HostLimiter(
            settings_mod.ConcurrencySettings(max_concurrent=concurrency.max_concurrent,
                                             when_busy="refuse", busy_timeout=0))
        self._leases = {}
        self._lock = threading.RLock()

    @property
    def running(self):
        self.expire()
        return self._limiter.running(self.hostname)

    @property
    def peak(self):
        return self._limiter.peak(self.hostname)

    def try_take(self):
        """Take a slot or raise TooManyMigrations naming host, count and limit."""
        self.expire()
        self._limiter.acquire(self.hostname)

    def give_back(self):
        self._limiter.release(self.hostname)

    # -- leases held by peers (incoming migrations) -------------------------

    def lease(self, migration_id, source, instance):
        """Take a slot for a source agent's migration; idempotent per id."""
        with self._lock:
            if migration_id in self._leases:
                lease = self._leases[migration_id]
                if (lease.source, lease.instance) != (source, instance):
                    raise exception.MigrationError(
                        instance=instance, step="slot",
                        reason="migration id %r is taken by %s for %s" % (
                            migration_id, lease.source, lease.instance))
                return self._extend(lease)
            self.try_take()
            now = self._clock()
            lease = Lease(migration_id, source, instance, now + self.lease_s, now)
            self._leases[migration_id] = lease
            LOG.info("Slot taken for incoming migration %s of %s from %s (%d/%s)",
                     migration_id, instance, source, self._limiter.running(self.hostname),
                     self.concurrency.max_concurrent or "unlimited")
            return lease

    def _extend(self, lease):
        lease.expires = min(self._clock() + self.lease_s,
                            lease.created + self.max_lifetime_s)
        return lease

    def get(self, migration_id):
        self.expire()
        with self._lock:
            return self._leases.get(migration_id)

    def renew(self, migration_id, source=None):
        """Extend a lease (by its own source only), never past its maximum lifetime."""
        self.expire()
        with self._lock:
            lease = self._leases.get(migration_id)
            if lease is None or (source is not None and lease.source != source):
                return None
            return self._extend(lease)

    def unlease(self, migration_id, source=None):
        with self._lock:
            lease = self._leases.get(migration_id)
            if lease is not None and source is not None and lease.source != source:
                return None
            self._leases.pop(migration_id, None)
        if lease is not None:
            self.give_back()
        return lease

    def leases(self):
        with self._lock:
            return list(self._leases.values())

    def expire(self):
        now = self._clock()
        with self._lock:
            gone = [k for k, v in self._leases.items() if v.expires <= now]
            expired = [self._leases.pop(k) for k in gone]
        for lease in expired:
            LOG.warning("Slot of incoming migration %s of %s from %s expired: its source "
                        "stopped renewing it", lease.migration_id, lease.instance,
                        lease.source)
            self._limiter.release(self.hostname)


class MigrationSlots:
    """The limiter a source agent hands to :class:`LiveMigration`.

    ``acquire`` takes a slot here and one on the destination (through
    ``remote``, a client of the destination agent), waiting or refusing as
    configured: refused when either host says ``refuse``.
    """

    def __init__(self, local, remote, migration_id, instance, cancelled=None,
                 sleep=time.sleep, clock=time.monotonic):
        self.local = local
        self.remote = remote
        self.migration_id = migration_id
        self.instance = instance
        self._cancelled = cancelled or (lambda: False)
        self._sleep = sleep
        self._clock = clock
        self._renewer = None
        self._stop = threading.Event()

    def _try(self):
        self.local.try_take()
        try:
            self.remote.take_slot(self.migration_id, self.local.hostname, self.instance)
        except Exception:
            self.local.give_back()
            raise

    def acquire(self, *hosts):
        busy_timeout = self.local.concurrency.busy_timeout
        deadline = self._clock() + busy_timeout if busy_timeout else None
        logged = False
        while True:
            try:
                self._try()
                break
            except exception.TooManyMigrations as err:
                refuse = (self.local.concurrency.when_busy == "refuse"
                          or err.kwargs.get("when_busy") == "refuse")
                if refuse or (deadline is not None and self._clock() >= deadline):
                    raise
                if not logged:
                    LOG.info("Migration %s of %s queued: %s", self.migration_id,
                             self.instance, err)
                    logged = True
            if self._cancelled():
                raise exception.MigrationAborted(instance=self.instance,
                                                 reason="aborted while queued for a slot")
            self._sleep(POLL_S)
        self._start_renewing()

    def _start_renewing(self):
        period = max(1.0, self.remote.slot_lease_s / 4.0)

        def renew():
            while not self._stop.wait(period):
                try:
                    self.remote.renew_slot(self.migration_id)
                except Exception as err:  # the next renewal may succeed
                    LOG.warning("Could not renew the destination slot of migration "
                                "%s: %s", self.migration_id, err)

        self._renewer = threading.Thread(target=renew, daemon=True,
                                         name="slot-renew-%s" % self.migration_id)
        self._renewer.start()

    def release(self, *hosts):
        self._stop.set()
        self.local.give_back()
        try:
            self.remote.release_slot(self.migration_id)
        except Exception as err:
            LOG.warning("Could not release the destination slot of migration %s "
                        "(it expires by itself): %s", self.migration_id, err)
