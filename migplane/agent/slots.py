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
#: Seconds between tries to release a destination slot a failed call left held
#: (a management plane down as the migration ended).
RELEASE_RETRY_S = 5.0


@dataclasses.dataclass
class Lease:
    migration_id: str
    source: str
    instance: str
    expires: float
    #: When it was taken: renewals never keep it past ``created + max_lifetime_s``.
    created: float = 0.0
    #: pre_live_migration ran here for it, with no guest of that name defined: only
    #: then may its rollback remove what arrived, and only what it recorded.
    prepared: bool = False
    #: What pre_live_migration answered (primitive): this host's own record of what
    #: it prepared, handed to the post and rollback steps instead of the peer's copy.
    migrate_data: dict = None
    #: Wall-clock time it was taken (its lifetime spans an agent restart).
    taken_at: float = 0.0
    #: pre_live_migration runs here now (not stored: a restart ends the call).
    preparing: bool = False
    #: A rollback came while it ran (its source stopped waiting): what it
    #: prepares is rolled back as soon as it returns.
    rollback_pending: bool = False

    def to_stored(self):
        return {"migration_id": self.migration_id, "source": self.source,
                "instance": self.instance, "prepared": self.prepared,
                "migrate_data": self.migrate_data, "taken_at": self.taken_at}


class HostSlots:
    """The slots of the host named ``hostname``; ``try_take`` never blocks.

    With a ``store`` (a :class:`~migplane.agent.store.RecordStore`) the leases of
    peers are written down as they change and found again after a restart; a
    released id stays known, so it can never be taken again.
    """

    def __init__(self, hostname, concurrency, lease_s=120, clock=time.monotonic,
                 max_lifetime_s=86400, store=None, max_per_peer=None, wall=time.time):
        self.hostname = hostname
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.max_lifetime_s = max_lifetime_s
        #: Slots one peer may hold at once (None: max_concurrent).
        self.max_per_peer = max_per_peer or concurrency.max_concurrent or None
        self._clock = clock
        self._wall = wall
        self._store = store
        self._limiter = limiter_mod.HostLimiter(
            settings_mod.ConcurrencySettings(max_concurrent=concurrency.max_concurrent,
                                             when_busy="refuse", busy_timeout=0))
        self._leases = {}
        #: Leases that lapsed: their source may take them again (after a restart).
        self._expired = {}
        self._released = set()
        self._lock = threading.RLock()
        if store is not None:
            self._restore()

    def _restore(self):
        now, wall = self._clock(), self._wall()
        for status, data in self._store.load_slots():
            try:
                lease = Lease(str(data["migration_id"]), str(data["source"]),
                              str(data["instance"]), now + self.lease_s,
                              now - max(0.0, wall - float(data.get("taken_at") or wall)),
                              bool(data.get("prepared")), data.get("migrate_data"),
                              float(data.get("taken_at") or wall))
            except (KeyError, TypeError, ValueError) as err:
                LOG.error("Slot %r cannot be restored: %s", data.get("migration_id"), err)
                continue
            if status == "released" or lease.created + self.max_lifetime_s <= now:
                self._released.add(lease.migration_id)
            elif status == "held":
                try:
                    self._limiter.acquire(self.hostname)
                except exception.TooManyMigrations:  # max_concurrent was lowered
                    LOG.warning("Slot of migration %s not restored: max_concurrent is "
                                "reached; its source may take it again",
                                lease.migration_id)
                    self._expired[lease.migration_id] = lease
                    continue
                self._leases[lease.migration_id] = lease
                LOG.info("Slot of incoming migration %s of %s from %s restored",
                         lease.migration_id, lease.instance, lease.source)
            else:
                self._expired[lease.migration_id] = lease

    def _save(self, lease, status):
        if self._store is None:
            return
        try:
            self._store.save_slot(lease.to_stored(), status)
        except Exception as err:  # a full disk: the lease still holds in memory
            LOG.error("Cannot write the slot of migration %s: %s", lease.migration_id, err)

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

    def lease(self, migration_id, source, instance, defined=None):
        """Take a slot for a source agent's migration; idempotent per id.

        A released id is refused; a lapsed one is given back to its own source
        for the same guest (a source agent that restarted). A new slot is refused
        when another one is held for ``instance``, when ``source`` holds
        ``max_per_peer`` already, or when ``defined(instance)`` says a guest of
        that name is defined here: a migration never arrives onto a guest.
        """
        self.expire()
        with self._lock:
            if migration_id in self._released:
                raise exception.MigrationError(
                    instance=instance, step="slot",
                    reason="migration id %r was used here before; take a new one"
                           % migration_id)
            lease = self._leases.get(migration_id) or self._expired.get(migration_id)
            if lease is not None and (lease.source, lease.instance) != (source, instance):
                raise exception.MigrationError(
                    instance=instance, step="slot",
                    reason="migration id %r is taken by %s for %s" % (
                        migration_id, lease.source, lease.instance))
            if migration_id in self._leases:
                return self._extend(lease)
            other = next((held for held in self._leases.values()
                          if held.instance == instance), None)
            if other is not None:
                raise exception.MigrationError(
                    instance=instance, step="slot",
                    reason="migration %s from %s already holds a slot here for it"
                           % (other.migration_id, other.source))
            mine = sum(1 for held in self._leases.values() if held.source == source)
            if self.max_per_peer and mine >= self.max_per_peer:
                raise exception.TooManyMigrations(host=self.hostname, running=mine,
                                                  limit=self.max_per_peer)
            if lease is None and defined is not None and defined(instance):
                raise exception.DestinationCheckFailed(
                    host=self.hostname, instance=instance,
                    reason="a guest of that name is already defined here")
            self.try_take()
            now = self._clock()
            if lease is not None:  # lapsed: its source takes it again, facts kept
                del self._expired[migration_id]
                lease.expires = min(now + self.lease_s, lease.created + self.max_lifetime_s)
            else:
                lease = Lease(migration_id, source, instance, now + self.lease_s, now,
                              taken_at=self._wall())
            self._leases[migration_id] = lease
            self._save(lease, "held")
            LOG.info("Slot taken for incoming migration %s of %s from %s (%d/%s)",
                     migration_id, instance, source, self._limiter.running(self.hostname),
                     self.concurrency.max_concurrent or "unlimited")
            return lease

    def _extend(self, lease):
        lease.expires = min(self._clock() + self.lease_s,
                            lease.created + self.max_lifetime_s)
        return lease

    def record(self, migration_id, **fields):
        """Note (durably) what a step did for the lease of ``migration_id``."""
        with self._lock:
            lease = self._leases.get(migration_id)
            if lease is None:
                return None
            for name, value in fields.items():
                setattr(lease, name, value)
            self._save(lease, "held")
            return lease

    def prepared(self, migration_id, migrate_data):
        """pre_live_migration returned ``migrate_data`` (primitive) for this
        lease: record it. True when the migration was rolled back or its slot
        given up meanwhile: the caller then undoes what it prepared, as nobody
        else will."""
        with self._lock:
            lease = self._leases.get(migration_id)
            if lease is None:
                return True
            lease.preparing = False
            lease.migrate_data = migrate_data
            self._save(lease, "held")
            return lease.rollback_pending

    def defer_rollback(self, migration_id):
        """A rollback while pre_live_migration still runs for this lease: it is
        carried out when that returns (undoing half a preparation could race
        it). True when deferred."""
        with self._lock:
            lease = self._leases.get(migration_id)
            if lease is None or not lease.preparing:
                return False
            lease.rollback_pending = True
            return True

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
            if lease is None:
                lease = self._expired.get(migration_id)
                if lease is None or (source is not None and lease.source != source):
                    return None
                del self._expired[migration_id]
                counted = False
            else:
                counted = True
            self._released.add(migration_id)
            self._save(lease, "released")
        if counted:
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
                if lease.created + self.max_lifetime_s <= now:
                    self._released.add(lease.migration_id)
                    self._save(lease, "released")
                else:
                    self._expired[lease.migration_id] = lease
                    self._save(lease, "expired")
            old = [k for k, v in self._expired.items()
                   if v.created + self.max_lifetime_s <= now]
            for key in old:
                self._released.add(key)
                self._save(self._expired.pop(key), "released")
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
                 sleep=time.sleep, clock=time.monotonic, unsettled=None):
        self.local = local
        #: True when the migration ended unsettled (unresolved, post-copy paused):
        #: the destination's slot then stays held (its record of what it prepared
        #: is what settling acts on), and reconciliation releases it once settled.
        self._unsettled = unsettled or (lambda: False)
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
        if self._unsettled():
            LOG.info("Migration %s ended unsettled: the destination keeps its slot until "
                     "reconciliation settles it", self.migration_id)
            return
        try:
            self.remote.release_slot(self.migration_id)
        except Exception as err:
            LOG.warning("Could not release the destination slot of migration %s "
                        "(trying again until its lease would expire): %s",
                        self.migration_id, err)
            threading.Thread(target=self._release_later, daemon=True,
                             name="slot-release-%s" % self.migration_id).start()

    def _release_later(self):
        """The destination is clean as soon as it answers again, not only once
        the lease it no longer needs has expired."""
        for _ in range(max(1, int(self.remote.slot_lease_s // RELEASE_RETRY_S))):
            self._sleep(RELEASE_RETRY_S)
            try:
                self.remote.release_slot(self.migration_id)
            except Exception as err:  # still unreachable: the next try, or the lease expires
                LOG.debug("Destination slot of migration %s still held: %s",
                          self.migration_id, err)
                continue
            LOG.info("Released the destination slot of migration %s", self.migration_id)
            return
