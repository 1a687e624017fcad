"""The libvirt migration driver.

Peer-to-peer live migration with ``virDomain.migrateToURI3``: the source's
libvirt daemon opens the control connection to the destination's (management
plane, ``uris.control_uri``) and QEMU sends the bulk stream to
``uris.data_uri`` (migration plane when the destination gave an inbound
address). What goes into the call is decided in ``flags``; this module runs
the steps, keeps the per-migration state between them and turns libvirt's
errors into the core's (``errors``).

One driver object drives one libvirt daemon (``[driver_libvirt]
connection_uri``): the flow calls the source-side methods on the source
host's driver and the destination-side ones on the destination's.
"""

import dataclasses
import logging
import threading
import time
import uuid as uuid_mod
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import ContextManager
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple
from typing import cast

import libvirt

from migplane.core import address
from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import units
from migplane.core import versioned
from migplane.drivers.libvirt import addresses
from migplane.drivers.libvirt import dirtyrate
from migplane.drivers.libvirt import disks as disks_mod
from migplane.drivers.libvirt import errors
from migplane.drivers.libvirt import events
from migplane.drivers.libvirt import flags as flags_mod
from migplane.drivers.libvirt import job as job_mod
from migplane.drivers.libvirt import keepalive
from migplane.drivers.libvirt import opts
from migplane.drivers.libvirt import progress
from migplane.drivers.libvirt import recovery as recovery_mod
from migplane.drivers.libvirt import storage

if TYPE_CHECKING:  # only for annotations: this module imports nothing more
    from oslo_config import cfg

    from migplane.core import settings as settings_mod
    from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)

NAME = "libvirt"
VERSION = "1.0"
SCHEMES = ("tcp", "tls", "ssh", "libssh2", "libssh", "unix")

#: Keys of ``MigrateData.driver_data`` this driver writes.
DISKS = "disks"                  # source: local disks to copy (block migration)
CREATED_DISKS = "created_disks"  # destination: images it created for them
DEST_LIBVIRT = "dest_libvirt_version"
GUEST_UUID = "uuid"              # source: the UUID of the guest that moves
INCOMING = "incoming"            # destination: what pre_live_migration found absent
#: Keys only the destination writes: never taken from what it is sent.
DESTINATION_KEYS = (CREATED_DISKS, INCOMING)
#: Image formats a block migration's destination creates.
IMAGE_FORMATS = ("raw", "qcow2")
#: Local disks one guest may have copied.
MAX_DISKS = 64

#: First libvirt version with each feature (major * 1e6 + minor * 1e3 + micro).
MIN_LIBVIRT = {
    "data_uri": 1_002_000,
    "tunnelled": 1_002_000,
    "block_migration": 1_002_017,   # migrate_disks
    "auto_converge": 1_002_003,
    "post_copy": 1_003_003,
    "listen_address": 1_003_004,
    "native_tls": 3_002_000,
    "parallel_connections": 5_002_000,
    "tls_destination": 6_000_000,
    "disks_uri": 6_008_000,
    "dirty_rate_sampling": 7_002_000,   # virDomainStartDirtyRateCalc
    "post_copy_recovery": 8_005_000,    # VIR_MIGRATE_POSTCOPY_RESUME
}
#: Features that are not a Capabilities flag of their own.
MIN_LIBVIRT_OTHER = {"compression": 1_003_004}   # VIR_MIGRATE_PARAM_COMPRESSION
#: First QEMU version with each feature, where QEMU is the limit.
MIN_QEMU = {"post_copy": 2_005_000, "parallel_connections": 4_000_000,
            "native_tls": 2_009_000, "dirty_rate_sampling": 5_002_000,
            # Before 8.2 (commit 0e99bb8f, "Allow RECOVER->PAUSED convertion for
            # dest qemu"), a second stream error while the destination recovers
            # makes its listen thread read a closed file: the destination QEMU
            # crashes and the guest is lost. Seen 12 times of 12 on 7.2.
            "post_copy_recovery": 8_002_000}
#: Features declared only when the QEMU version is known to have them.
QEMU_VERSION_REQUIRED = ("post_copy_recovery",)
#: libvirt releases that break a feature they otherwise have, [first, fixed):
#: 11.2 and 11.3 crash the destination's daemon when a post-copy is resumed
#: (a NULL fd in the resume's Prepare; fixed in 11.4: "qemu: Fix virtqemud
#: crash when resuming failed post-copy migration"). The source cannot see the
#: destination's version, so a fleet on those releases does not recover.
LIBVIRT_BROKEN = {"post_copy_recovery": (11_002_000, 11_004_000)}
#: Compression methods QEMU dropped, with the first version without them:
#: multi-threaded compression ('mt', the 'compress' capability) left in 9.1.
QEMU_REMOVED_COMPRESSION = {"mt": 9_001_000}

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "unknown",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}

_UNDEFINE = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
#: Running-state reasons of a guest whose incoming migration went through.
_ARRIVED = (libvirt.VIR_DOMAIN_RUNNING_MIGRATED, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY)
_RUNNING_POSTCOPY_FAILED = getattr(libvirt, "VIR_DOMAIN_RUNNING_POSTCOPY_FAILED", 11)
_PAUSED_POSTCOPY_FAILED = getattr(libvirt, "VIR_DOMAIN_PAUSED_POSTCOPY_FAILED", 13)
#: Either half of a post-copy migration: never destroyed, undefined or resumed.
_POSTCOPY_HALVES = {
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY),
    (libvirt.VIR_DOMAIN_RUNNING, _RUNNING_POSTCOPY_FAILED),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY),
    (libvirt.VIR_DOMAIN_PAUSED, _PAUSED_POSTCOPY_FAILED),
}
#: State reasons as migplane.core.settle names them.
_REASONS = {
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED):
        "migration-canceled",
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY): "postcopy",
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED): "migrated",
    (libvirt.VIR_DOMAIN_RUNNING, _RUNNING_POSTCOPY_FAILED): "postcopy-failed",
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION): "migration",
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY): "postcopy",
    (libvirt.VIR_DOMAIN_PAUSED, _PAUSED_POSTCOPY_FAILED): "postcopy-failed",
    # what a finished incoming migration with VIR_MIGRATE_PAUSED leaves (the handover)
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER): "held",
}
_PERSISTENT_XML = (libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
                   | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
#: Seconds to wait for the JOB_COMPLETED event once the call returned.
COMPLETED_EVENT_WAIT = 2.0

#: libvirt-python ships no types.
Connection = Any  # libvirt.virConnect
Domain = Any  # libvirt.virDomain


def _waits_for_transfer(job: job_mod.MigrationJob, name: str, arg: Any) -> bool:
    """A switch to post-copy asked before QEMU's transfer began: QEMU arms its
    post-copy capability only when told to migrate, so a switch sent earlier
    is dropped (libvirt's job exists before that); it waits in ``job.pending``."""
    return name == "force" and arg and not progress.transferring(job.last_stats)


def _plain(migrate_data: md.MigrateData) -> Dict[str, Any]:
    """``migrate_data.driver_data`` as plain, mutable JSON data."""
    return cast(Dict[str, Any], versioned.thaw(migrate_data.driver_data))


def _explain(job: job_mod.MigrationJob, text: str) -> str:
    """libvirt's error text, with what the operator needs to read it.

    A TLS failure reported by the destination's QEMU ("Cannot read from TLS
    channel") does not say which name the certificate was checked against;
    QEMU 10's destination only says "Not a migration stream" when the source
    dropped the connection after a failed handshake.
    """
    tls_name = job.call.params.get(libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION)
    if job.call.flags & libvirt.VIR_MIGRATE_TLS and any(
            word in text for word in ("TLS", "ertificate", "Not a migration stream")):
        checked = repr(tls_name) if tls_name else "the host name of the data URI"
        return (f"{text} [native TLS: the destination's certificate is verified "
                f"against {checked}; a failed handshake ends the stream before it "
                f"starts]")
    return text


def version_text(number: Optional[int]) -> str:
    if not number:
        return "unknown"
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def capabilities(libvirt_version: int, qemu_version: Optional[int] = None
                 ) -> caps_mod.Capabilities:
    """What a libvirt daemon of ``libvirt_version`` (and its QEMU) supports."""
    def has(feature: str) -> bool:
        if libvirt_version < {**MIN_LIBVIRT, **MIN_LIBVIRT_OTHER}[feature]:
            return False
        broken = LIBVIRT_BROKEN.get(feature)
        if broken and broken[0] <= libvirt_version < broken[1]:
            return False
        if not qemu_version:
            return feature not in QEMU_VERSION_REQUIRED
        return qemu_version >= MIN_QEMU.get(feature, 0)

    def removed(method: str) -> bool:
        gone = QEMU_REMOVED_COMPRESSION.get(method)
        return bool(qemu_version and gone and qemu_version >= gone)

    return caps_mod.Capabilities(
        schemes=SCHEMES, default_scheme="tcp",
        control_uri_format="qemu+{scheme}://{host}/system",
        # What a plan may arm per migration (VIR_MIGRATE_PARAM_COMPRESSION).
        compression=tuple(m for m in opts.COMPRESSION_METHODS if not removed(m))
        if has("compression") else (),
        **{feature: has(feature) for feature in MIN_LIBVIRT})


class LibvirtDriver(driver_mod.MigrationDriver):
    """Live migration of QEMU guests through one libvirt daemon."""

    def __init__(self, conf: "cfg.ConfigOpts") -> None:
        super().__init__(conf)
        opts.register_opts(conf)
        group = conf[opts.GROUP]
        self.uri: str = group.connection_uri
        self.netns: Optional[str] = group.netns
        self.compression: Tuple[str, ...] = tuple(group.compression)
        self.cleanup_source_disks: bool = group.cleanup_source_disks
        self.storage_root: str = group.storage_root
        self.job_end_timeout: int = group.job_end_timeout
        self.postcopy_stall_timeout: int = group.postcopy_stall_timeout
        self.postcopy_recovery_timeout: int = group.postcopy_recovery_timeout
        self.use_events: bool = group.event_loop
        # Refuse impossible option combinations when loaded, not mid-migration.
        flags_mod.check_settings(self.settings.migration, self.compression)
        if self.settings.migration.permit_post_copy is not False:
            short = keepalive.warning(group.daemon_config_dir)
            if short:
                LOG.warning("%s", short)
        if self.use_events:
            events.ensure_event_loop()
        self._completed = events.CompletedJobs()
        self._lock = threading.RLock()
        self._connection: Optional[Connection] = None
        self._info: Optional[driver_mod.DriverInfo] = None
        #: instance -> MigrationJob of the outgoing migration started here.
        self._jobs: Dict[str, job_mod.MigrationJob] = {}
        #: instance -> paths of the images pre-created here for an incoming one.
        self._created: Dict[str, List[str]] = {}
        #: Notified when any job's call ends (``_nap``), with a count of the ends.
        self._ends = threading.Condition()
        self._ended = 0

    # -- flows' time ----------------------------------------------------------

    def flow_timing(self) -> Tuple[Callable[[], float], Callable[[float], None]]:
        """A flow's sleep here ends early when a job's call ends: the paused
        handover waits for the flow to see the job end, and the guest feels
        every moment of that wait."""
        return time.monotonic, self._nap

    def _nap(self, seconds: float) -> None:
        with self._ends:
            seen = self._ended
            self._ends.wait_for(lambda: self._ended != seen, seconds)

    def _job_ended(self) -> None:
        with self._ends:
            self._ended += 1
            self._ends.notify_all()

    # -- the connection -------------------------------------------------------

    def _conn(self) -> Connection:
        """The daemon connection, reopened when it died (daemon restarts)."""
        with self._lock:
            conn = self._connection
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                self._connection = None
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass
                LOG.info("Connection to %s was lost; reconnecting", self.uri)
                self._info = None   # the daemon may have been upgraded meanwhile
            conn = libvirt.open(self.uri)
            if self.use_events:
                try:
                    self._completed.register(conn)
                except libvirt.libvirtError as err:
                    LOG.warning("No job-completed events from %s: %s", self.uri, err)
            self._connection = conn
            return conn

    def _alive(self) -> bool:
        conn = self._connection
        try:
            return conn is not None and bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _translated(self, instance: str, step: str) -> ContextManager[None]:
        return errors.translated(instance, step, self.hostname, alive=self._alive)

    def _lookup(self, instance: str) -> Optional[Domain]:
        """The domain named ``instance``, or None."""
        try:
            return self._conn().lookupByName(instance)
        except libvirt.libvirtError as err:
            if errors.is_not_found(err):
                return None
            raise

    def _by_uuid(self, uuid: str) -> Domain:
        """The domain of ``uuid`` through a live connection (reopened if it died)."""
        return self._conn().lookupByUUIDString(uuid)

    def _domain(self, instance: str) -> Domain:
        dom = self._lookup(instance)
        if dom is None:
            raise exception.InstanceNotFound(instance=instance, host=self.hostname)
        return dom

    def close(self) -> None:
        """Close the daemon connection (a new call reopens it)."""
        with self._lock:
            conn, self._connection = self._connection, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    # -- describe and host facts ----------------------------------------------

    def describe(self) -> driver_mod.DriverInfo:
        with self._lock:
            if self._info is not None:
                return self._info
            try:
                conn = self._conn()
                lib, qemu = conn.getLibVersion(), conn.getVersion()
            except libvirt.libvirtError as err:
                LOG.warning("Cannot ask %s for its versions (%s); describing the "
                            "client library's", self.uri, err)
                return driver_mod.DriverInfo(
                    name=NAME, version=VERSION,
                    capabilities=capabilities(libvirt.getVersion()))
            caps = capabilities(lib, qemu)
            if "mt" in self.compression:
                # QEMU cannot switch a compressed migration to post-copy: never
                # let a plan arm it (flags.check_settings refuses it explicitly).
                caps = dataclasses.replace(caps, post_copy=False, post_copy_recovery=False)
            self._info = driver_mod.DriverInfo(
                name=NAME,
                version=f"{VERSION} (libvirt {version_text(lib)}, QEMU {version_text(qemu)})",
                capabilities=caps)
            return self._info

    def local_addresses(self) -> Optional[List[str]]:
        found = self._read_addresses()
        return None if found is None else [a.address for a in found]

    def _read_addresses(self) -> Optional[List[addresses.LocalAddress]]:
        """This host's addresses, None when unknown (an explicit address is trusted)."""
        try:
            return addresses.read(self.netns)
        except exception.MigplaneError:
            raise   # e.g. [driver_libvirt] netns names no namespace
        except Exception as err:
            LOG.warning("Cannot read the addresses of %s%s: %s", self.hostname,
                        f" in network namespace {self.netns!r}" if self.netns else "", err)
            return None

    def get_instance_info(self, instance: str) -> driver_mod.InstanceInfo:
        with self._translated(instance, "get_instance_info"):
            dom = self._domain(instance)
            state, max_kib = dom.info()[:2]
            try:
                reason = _REASONS.get(tuple(dom.state()[:2]))
            except libvirt.libvirtError as err:
                if not errors.is_not_found(err):
                    raise
                reason = None
            disk_bytes = 0
            for disk in disks_mod.local_disks(dom.XMLDesc(0)):
                try:
                    disk_bytes += dom.blockInfo(disk.path)[0]
                except libvirt.libvirtError as err:
                    LOG.debug("No size for %s of %s: %s", disk.path, instance, err)
        return driver_mod.InstanceInfo(name=instance,
                                       state=_STATE_NAMES.get(state, "unknown"),
                                       memory_bytes=max_kib * 1024, disk_bytes=disk_bytes,
                                       reason=reason)

    def list_instances(self) -> List[driver_mod.InstanceInfo]:
        with self._translated("*", "list_instances"):
            domains = self._conn().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)
            found = [(d.name(), d.info()[1]) for d in domains]
        return [driver_mod.InstanceInfo(name=name, state="running", memory_bytes=kib * 1024)
                for name, kib in sorted(found)]

    def host_resources(self) -> driver_mod.HostResources:
        with self._translated("*", "host_resources"):
            conn = self._conn()
            total_mib = conn.getInfo()[1]
            free = conn.getFreeMemory()
        return driver_mod.HostResources(memory_total_bytes=total_mib * units.MiB,
                                        memory_free_bytes=int(free))

    # -- destination side -------------------------------------------------------

    def check_can_live_migrate_destination(self, instance: str, block_migration: bool = False
                                           ) -> md.MigrateData:
        with self._translated(instance, "check_can_live_migrate_destination"):
            dom = self._lookup(instance)
            if dom is not None:
                state = _STATE_NAMES.get(dom.state()[0], "unknown")
                raise exception.DestinationCheckFailed(
                    host=self.hostname, instance=instance,
                    reason=f"a domain of that name is already defined here ({state})")
            lib = self._conn().getLibVersion()
        return md.MigrateData(dest_hostname=self.hostname, block_migration=block_migration,
                              driver_data={DEST_LIBVIRT: lib})

    def pre_live_migration(self, instance: str, migrate_data: md.MigrateData
                           ) -> md.MigrateData:
        data = self.inbound_migrate_data(migrate_data)
        mine = {k: v for k, v in _plain(data).items() if k not in DESTINATION_KEYS}
        guest_uuid = self._absent(instance, mine.get(GUEST_UUID))
        data = data.replace(driver_data=dict(mine, **{INCOMING: {"uuid": guest_uuid}}))
        if data.target_connect_addr is not None:
            self._check_inbound_link(data.target_connect_addr)
        if data.block_migration:
            created = self._precreate_disks(instance, data)
            data = data.replace(driver_data=dict(_plain(data), **{CREATED_DISKS: created}))
        return data

    def _absent(self, instance: str, guest_uuid: Optional[str]) -> Optional[str]:
        """The guest's UUID (or None), after checking that no domain here has its
        name or UUID: what arrives then is this migration's, and only that may a
        rollback remove."""
        if guest_uuid is not None:
            try:
                guest_uuid = str(uuid_mod.UUID(str(guest_uuid)))
            except ValueError:
                raise exception.MigrationError(
                    instance=instance, step="pre_live_migration",
                    reason=f"the guest's UUID {str(guest_uuid)[:40]!r} is not a UUID")
        with self._translated(instance, "pre_live_migration"):
            found = self._lookup(instance)
            if found is None and guest_uuid is not None:
                try:
                    found = self._conn().lookupByUUIDString(guest_uuid)
                except libvirt.libvirtError as err:
                    if not errors.is_not_found(err):
                        raise
        if found is not None:
            raise exception.DestinationCheckFailed(
                host=self.hostname, instance=instance,
                reason=f"a domain named {found.name()!r} with the guest's name or UUID is "
                       "already defined here")
        return guest_uuid

    def _in_storage_root(self, instance: str, path: str) -> str:
        """``path`` when it is a normalised absolute path under ``storage_root``."""
        if not disks_mod.under_root(self.storage_root, path):
            raise exception.DestinationCheckFailed(
                host=self.hostname, instance=instance,
                reason=f"disk {str(path)[:200]!r} is not under [driver_libvirt] "
                       f"storage_root {self.storage_root}")
        return path

    def _check_inbound_link(self, target: str) -> None:
        """Fail now, not as a connect error on the source, if the link is down."""
        host = address.parse_host(target, field="target_connect_addr")
        if not host.is_ip:
            return
        found = addresses.find(self._read_addresses() or (), host.host)
        if found is not None and not found.up:
            raise exception.InboundAddressError(
                address=target, host=self.hostname,
                reason=f"its interface {found.ifname} is down, so migration traffic "
                       "cannot reach it")

    def _precreate_disks(self, instance: str, data: md.MigrateData) -> List[str]:
        """Create empty images for the disks the source will copy here.

        Done through the daemon's storage API (see ``storage``), in the format
        and virtual size the source reported; an image that already exists is
        refused, as copying onto it would destroy it (or, on shared storage,
        the guest's own disk).
        """
        try:
            wanted = [disks_mod.LocalDisk.from_dict(d)
                      for d in data.driver_data.get(DISKS, ())]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise exception.MigrationError(instance=instance, step="pre_live_migration",
                                           reason=f"the list of disks is malformed: {err}")
        if len(wanted) > MAX_DISKS:
            raise exception.MigrationError(
                instance=instance, step="pre_live_migration",
                reason=f"{len(wanted)} disks to copy, more than {MAX_DISKS}")
        created = self._created.setdefault(instance, [])
        with self._translated(instance, "pre_live_migration"):
            conn = self._conn()
            for disk in wanted:
                if disk.kind != "file":
                    LOG.info("Not pre-creating %s disk %r of %s", disk.kind,
                             str(disk.path)[:200], instance)
                    continue
                self._in_storage_root(instance, disk.path)
                if disk.format not in IMAGE_FORMATS:
                    raise exception.MigrationError(
                        instance=instance, step="pre_live_migration",
                        reason=f"disk {disk.target!r} has format {disk.format!r}; "
                               f"images are created as {', '.join(IMAGE_FORMATS)}")
                if not disk.capacity or disk.capacity < 0:
                    raise exception.MigrationError(
                        instance=instance, step="pre_live_migration",
                        reason=f"the source did not report the size of disk {disk.target} "
                               f"({disk.path})")
                try:
                    fresh = storage.create_volume(conn, disk.path, disk.capacity,
                                                  disk.format)
                except storage.TooLarge as err:
                    raise exception.DestinationCheckFailed(
                        host=self.hostname, instance=instance, reason=str(err))
                if not fresh:
                    raise exception.DestinationCheckFailed(
                        host=self.hostname, instance=instance,
                        reason=f"disk image {disk.path} already exists here: the storage "
                               "is shared or it is a leftover, and a block migration would "
                               "overwrite it")
                created.append(disk.path)
        return list(created)

    def post_live_migration_at_destination(self, instance: str,
                                           migrate_data: md.MigrateData) -> None:
        """Persist the guest here, and end the handover: resume the copy libvirt
        left paused (VIR_MIGRATE_PAUSED). The flow calls this only once the
        settle function saw the source's copy stopped."""
        self._created.pop(instance, None)  # the guest's disks now
        with self._translated(instance, "post_live_migration_at_destination"):
            dom = self._domain(instance)
            if not dom.isActive():
                raise exception.MigrationError(
                    instance=instance, step="post_live_migration_at_destination",
                    reason="the guest is not running here after the migration")
            if not dom.isPersistent():
                self._conn().defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE
                                                   | libvirt.VIR_DOMAIN_XML_SECURE))
            if tuple(dom.state()[:2]) == (libvirt.VIR_DOMAIN_PAUSED,
                                          libvirt.VIR_DOMAIN_PAUSED_USER):
                LOG.info("Handover of %s: the source's copy stopped; resuming it here",
                         instance)
                dom.resume()

    def rollback_live_migration_at_destination(self, instance: str,
                                               migrate_data: md.MigrateData) -> None:
        """Remove what this migration's pre_live_migration prepared, and only that:
        the domain it found absent (by UUID) and the images it created, as its own
        answer (``migrate_data`` is it) and this process recorded them."""
        created = list(dict.fromkeys(
            [*self._created.get(instance, ()),
             *migrate_data.driver_data.get(CREATED_DISKS, ())]))
        incoming = migrate_data.driver_data.get(INCOMING)
        with self._translated(instance, "rollback_live_migration_at_destination"):
            if incoming is not None:
                self._remove_domain(instance, incoming.get("uuid"))
            else:
                LOG.info("Rollback of %s: its pre_live_migration did not run here; no "
                         "domain to remove", instance)
            conn = self._conn()
            for path in created:
                try:
                    self._in_storage_root(instance, path)
                except exception.MigplaneError as err:
                    LOG.error("Not deleting %r: %s", path, err)
                    continue
                storage.delete_volume(conn, path)
        self._created.pop(instance, None)

    def _arrived_domain(self, instance: str, guest_uuid: Optional[str]) -> Optional[Domain]:
        """The domain that arrived for this migration: named ``instance`` and, when
        the guest's UUID is known, with that UUID; None when there is none."""
        if guest_uuid is None:
            return self._lookup(instance)
        try:
            dom = self._conn().lookupByUUIDString(guest_uuid)
        except libvirt.libvirtError as err:
            if errors.is_not_found(err):
                return None
            raise
        if dom.name() != instance:
            LOG.error("Not removing domain %s (UUID %s): it is not %s", dom.name(),
                      guest_uuid, instance)
            return None
        return dom

    def _remove_domain(self, instance: str, guest_uuid: Optional[str] = None,
                       attempts: int = 10) -> None:
        """Destroy and undefine ``instance`` here, tolerating that it vanishes."""
        for attempt in range(attempts):
            dom = self._arrived_domain(instance, guest_uuid)
            if dom is None:
                return
            try:
                state, reason = dom.state()[:2]
                if (state == libvirt.VIR_DOMAIN_RUNNING and reason in _ARRIVED) or (
                        (state, reason) in _POSTCOPY_HALVES):
                    # The flow lost track of a migration that went through (e.g. the
                    # source's daemon connection died), or this half holds pages of
                    # a post-copy: the guest's newest state is here.
                    raise exception.MigrationError(
                        instance=instance, step="rollback_live_migration_at_destination",
                        reason="the guest runs here after its migration went through; "
                               "not destroying it")
                if dom.isActive():
                    LOG.info("Destroying %s left by a failed migration", instance)
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(_UNDEFINE)
                return
            except libvirt.libvirtError as err:
                if errors.is_not_found(err):
                    return
                # e.g. the incoming job still holds the domain: try again
                if attempt == attempts - 1:
                    raise
                LOG.debug("Removing %s failed (%s); retrying", instance, err)
                threading.Event().wait(0.5)

    # -- source side ------------------------------------------------------------

    def check_can_live_migrate_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> md.MigrateData:
        step = "check_can_live_migrate_source"
        with self._translated(instance, step):
            dom = self._domain(instance)
            if not dom.isActive():
                raise exception.SourceCheckFailed(
                    host=self.hostname, instance=instance, reason="it is not running")
            job = self._jobs.get(instance)
            if (job is not None and not job.done) or progress.is_active(dom.jobStats()):
                raise exception.SourceCheckFailed(
                    host=self.hostname, instance=instance,
                    reason="a job (migration, save, dump...) already runs on it")
            flags_mod.check_settings(self.settings.migration, self.compression)
            data = _plain(migrate_data)
            data[GUEST_UUID] = dom.UUIDString()
            if migrate_data.block_migration:
                flags_mod.check_block_migration(self.settings.migration)
                local = disks_mod.local_disks(dom.XMLDesc(0))
                data[DISKS] = [
                    dataclasses.replace(d, capacity=dom.blockInfo(d.path)[0]).to_dict()
                    for d in local]
        return migrate_data.replace(driver_data=data)

    def live_migration(self, instance: str, migrate_data: md.MigrateData,
                       uris: "uri_mod.MigrationURIs",
                       settings: "settings_mod.MigrationSettings") -> None:
        with self._lock:
            running = self._jobs.get(instance)
            if running is not None and not running.done:
                raise exception.MigrationError(instance=instance, step="live_migration",
                                               reason="a migration of it already runs")
        with self._translated(instance, "live_migration"):
            dom = self._domain(instance)
            local = []
            if migrate_data.block_migration:
                # this host's own definition of the guest says what to copy (and
                # later what to delete), never the data that went to the peer
                local = disks_mod.local_disks(dom.XMLDesc(0))
                if not local:
                    LOG.info("Block migration of %s: it has no local disk to copy",
                             instance)
            persistent_xml = dom.XMLDesc(_PERSISTENT_XML) if dom.isPersistent() else None
            call = self._call(instance, settings, uris, local, persistent_xml)
            job = job_mod.MigrationJob(dom, call, instance, self._recovery(call),
                                       lookup=self._by_uuid, on_end=self._job_ended)
            job.copied_disks = [d.path for d in local if d.kind == "file"]
        self._completed.forget(job.uuid)
        with self._lock:
            self._jobs[instance] = job
        job.start()

    def plan_inbound(self, instance: str, block_migration: bool = False) -> md.MigrateData:
        data = super().plan_inbound(instance, block_migration)
        if data.target_connect_addr is not None:
            self._check_inbound_link(data.target_connect_addr)
        return data

    def describe_migration(self, instance: str, migrate_data: md.MigrateData,
                           uris: "uri_mod.MigrationURIs",
                           settings: "settings_mod.MigrationSettings") -> Dict[str, Any]:
        """The migrateToURI3 call :meth:`live_migration` would make (dry run)."""
        with self._translated(instance, "describe_migration"):
            dom = self._domain(instance)
            local = []
            if migrate_data.block_migration:
                local = disks_mod.local_disks(dom.XMLDesc(0))
            persistent_xml = dom.XMLDesc(_PERSISTENT_XML) if dom.isPersistent() else None
            call = self._call(instance, settings, uris, local, persistent_xml)
        return call.to_dict()

    def _call(self, instance: str, settings: "settings_mod.MigrationSettings",
              uris: "uri_mod.MigrationURIs", local: Sequence[disks_mod.LocalDisk],
              persistent_xml: Optional[str]) -> flags_mod.MigrateCall:
        return flags_mod.build(
            settings, uris, self.describe().capabilities,
            migrate_disks=[d.target for d in local], persistent_xml=persistent_xml,
            compression=self.compression, instance=instance, driver=NAME)

    def _recovery(self, call: flags_mod.MigrateCall) -> Optional[recovery_mod.Recovery]:
        """How a broken post-copy of ``call``'s job is recovered (None: never armed)."""
        if not call.flags & libvirt.VIR_MIGRATE_POSTCOPY:
            return None
        return recovery_mod.Recovery(
            self.postcopy_stall_timeout, self.postcopy_recovery_timeout, call.dconnuri,
            call.params.get(libvirt.VIR_MIGRATE_PARAM_URI), netns=self.netns)

    def resume_postcopy(self, instance: str, migrate_data: Optional[md.MigrateData] = None,
                        uris: Optional["uri_mod.MigrationURIs"] = None,
                        settings: Optional["settings_mod.MigrationSettings"] = None
                        ) -> None:
        """Recover a broken post-copy of ``instance`` again (see the contract).

        With the job still held here, its recovery starts over with a new
        deadline; without (this process restarted), the job is rebuilt from
        the original ``uris`` and ``settings`` and recovered, provided the
        domain here is paused in post-copy.
        """
        with self._lock:
            job = self._jobs.get(instance)
            if job is not None:
                try:
                    resumed = job.resume()
                except job_mod.CallStillHeld:
                    raise exception.MigrationError(
                        instance=instance, step="resume_postcopy",
                        reason="libvirt has not returned the broken migration call yet; "
                               "try again later") from None
                if not resumed:
                    raise exception.NoActiveMigration(instance=instance,
                                                      host=self.hostname)
                job.final = None
                return
        if uris is None or settings is None:
            raise exception.NoActiveMigration(instance=instance, host=self.hostname)
        with self._translated(instance, "resume_postcopy"):
            dom = self._domain(instance)
            if job_mod.domain_phase(dom) not in (recovery_mod.FAILED, recovery_mod.ACTIVE):
                raise exception.NoActiveMigration(instance=instance, host=self.hostname)
            local = []
            if migrate_data is not None and migrate_data.block_migration:
                local = [disks_mod.LocalDisk.from_dict(d)
                         for d in migrate_data.driver_data.get(DISKS, ())]
            persistent_xml = dom.XMLDesc(_PERSISTENT_XML) if dom.isPersistent() else None
            call = self._call(instance, settings, uris, local, persistent_xml)
            if not call.flags & libvirt.VIR_MIGRATE_POSTCOPY:
                raise exception.MigrationError(
                    instance=instance, step="resume_postcopy",
                    reason="the settings given do not arm post-copy, so they are not "
                           "those of the migration that switched to it")
            job = job_mod.MigrationJob(dom, call, instance, self._recovery(call),
                                       lookup=self._by_uuid, on_end=self._job_ended)
        with self._lock:
            if instance in self._jobs:   # another call won the race: join it
                return
            self._jobs[instance] = job
        job.start(resume=True)

    def _broken_in_call(self, job: job_mod.MigrationJob
                        ) -> Optional[driver_mod.JobProgress]:
        """The progress of a post-copy that broke while libvirt still holds its
        call (seen when the stream broke during the switch itself): recovering
        until the deadline, then paused; None when it did not break."""
        try:
            since = job.blocked_since_break()
        except libvirt.libvirtError as err:
            LOG.warning("Cannot read the state of %s: %s", job.instance, err)
            return None
        if since is None:
            return None
        note = "the source is paused, post-copy failed; libvirt has not returned the " \
               "migration call, so it cannot be resumed yet"
        job.recovery_note = note
        # a job with no recovery never reports a break (since is None)
        if since >= cast(recovery_mod.Recovery, job.recovery).timeout_s:
            job.gave_up = True
            return self._paused_progress(job)
        return progress.to_progress(job.last_stats,
                                    state=driver_mod.JOB_POSTCOPY_RECOVERING,
                                    postcopy=True, error=note)

    def _recovering_progress(self, job: job_mod.MigrationJob) -> driver_mod.JobProgress:
        return progress.to_progress(
            job.last_stats, state=driver_mod.JOB_POSTCOPY_RECOVERING, postcopy=True,
            error="%s; %s" % (errors.message(job.break_error) if job.break_error
                              else "the stream stalled", job.recovery_note or "recovering"))

    def _job(self, instance: str) -> job_mod.MigrationJob:
        job = self._jobs.get(instance)
        if job is None:
            raise exception.NoActiveMigration(instance=instance, host=self.hostname)
        return job

    def get_job_progress(self, instance: str) -> driver_mod.JobProgress:
        if instance not in self._jobs:
            return self._adopted_progress(instance)
        progress_ = self._job_progress(instance)
        handover = bool(self._job(instance).call.flags & libvirt.VIR_MIGRATE_PAUSED)
        if progress_.handover != handover:
            progress_ = dataclasses.replace(progress_, handover=handover)
        return progress_

    def _adopted_progress(self, instance: str) -> driver_mod.JobProgress:
        """The progress of an outgoing migration this process did not start: the
        agent restarted while libvirtd went on with the job. Running while libvirt
        reports it; once it ended, how is unknown (NoActiveMigration), and the
        hosts' states tell where the guest is."""
        with self._translated(instance, "get_job_progress"):
            dom: Domain = self._lookup(instance)   # None: no stats, so not active
            stats = dom.jobStats() if dom is not None else {}
            if progress.is_active(stats) and stats.get("operation") == \
                    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
                postcopy = tuple(dom.state()) in _POSTCOPY_HALVES
                return progress.to_progress(stats, state=driver_mod.JOB_RUNNING,
                                            postcopy=postcopy)
        raise exception.NoActiveMigration(instance=instance, host=self.hostname)

    def _job_progress(self, instance: str) -> driver_mod.JobProgress:
        job = self._job(instance)
        if job.recovering and not job.done:
            return self._recovering_progress(job)
        if job.gave_up:
            return self._paused_progress(job)
        if not job.done:
            try:
                stats = job.dom.jobStats()
            except libvirt.libvirtError as err:
                stats = self._progress_error(job, err)
                if stats is not None:
                    return stats
            else:
                if progress.is_active(stats):
                    job.last_stats = stats
                    self._apply_pending(job)
                    broken = self._broken_in_call(job)
                    if broken is not None:
                        return broken
                    if job.stalled(stats.get("memory_processed")):
                        job.pause_stalled()
                if job.recovering and not job.done:
                    return self._recovering_progress(job)
                if not job.done:
                    return progress.to_progress(stats, state=driver_mod.JOB_RUNNING,
                                                postcopy=job.postcopy)
        if job.final is None:
            job.final = self._final_progress(job)
        return job.final

    def _progress_error(self, job: job_mod.MigrationJob, err: Exception
                        ) -> Optional[driver_mod.JobProgress]:
        """A JobProgress to report despite ``err``, or None once the call ended."""
        if job.recovering and not job.done:
            return self._recovering_progress(job)
        if not self._alive():
            raise errors.translate(err, job.instance, "get_job_progress", self.hostname,
                                   connected=False)
        # The domain stops, then vanishes, as a migration completes: wait for
        # the call's outcome. Anything else is one failed read: keep polling.
        vanished = errors.is_not_found(err) or errors.is_invalid_operation(err)
        if job.wait(self.job_end_timeout if vanished else 0):
            return None
        if vanished:
            raise errors.translate(err, job.instance, "get_job_progress", self.hostname)
        LOG.warning("Could not read the progress of %s: %s", job.instance, err)
        return progress.to_progress(job.last_stats, state=driver_mod.JOB_RUNNING,
                                    postcopy=job.postcopy)

    def _completed_stats(self, job: job_mod.MigrationJob) -> Optional[Dict[str, Any]]:
        """libvirt's record of the finished job, when it kept one."""
        try:
            stats: Dict[str, Any] = job.dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
                                                     | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
        except libvirt.libvirtError:
            return None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return stats

    def _paused_progress(self, job: job_mod.MigrationJob) -> driver_mod.JobProgress:
        return progress.to_progress(
            job.last_stats, state=driver_mod.JOB_POSTCOPY_PAUSED, postcopy=True,
            error="%s; %s" % (errors.message(job.break_error) if job.break_error
                              else "the stream broke", job.recovery_note))

    def _final_progress(self, job: job_mod.MigrationJob) -> driver_mod.JobProgress:
        if job.gave_up:
            return self._paused_progress(job)
        if job.error is None:
            stats: Optional[Dict[str, Any]] = None
            if self.use_events:
                stats = self._completed.get(job.uuid, timeout=COMPLETED_EVENT_WAIT)
            stats = stats or self._completed_stats(job) or job.last_stats
            return progress.to_progress(stats, state=driver_mod.JOB_COMPLETED,
                                        postcopy=job.postcopy)
        stats = self._completed_stats(job) or job.last_stats
        cancelled = (errors.code(job.error) == libvirt.VIR_ERR_OPERATION_ABORTED
                     or (job.abort_requested
                         and stats.get("type") == libvirt.VIR_DOMAIN_JOB_CANCELLED))
        return progress.to_progress(
            stats, state=driver_mod.JOB_CANCELLED if cancelled else driver_mod.JOB_FAILED,
            postcopy=job.postcopy, error=_explain(job, errors.message(job.error)))

    def _apply_pending(self, job: job_mod.MigrationJob) -> None:
        """Requests that came before libvirt had a job to apply them to."""
        for name, arg in list(job.pending.items()):
            if _waits_for_transfer(job, name, arg):
                continue
            try:
                if name == "abort":
                    job.dom.abortJob()
                elif name == "downtime":
                    job.dom.migrateSetMaxDowntime(arg, 0)
                elif name == "force":
                    self._force(job, arg)
            except libvirt.libvirtError as err:
                if errors.is_invalid_operation(err) and not job.done:
                    continue  # not possible yet: next poll
                LOG.warning("Could not apply %s to the migration of %s: %s", name,
                            job.instance, err)
            job.pending.pop(name, None)

    def _request(self, instance: str, name: str, arg: Any,
                 call: Callable[[job_mod.MigrationJob], object]) -> job_mod.MigrationJob:
        """Run ``call`` on the running job, or keep it for when the job exists."""
        job = self._job(instance)
        if job.done:
            LOG.info("Not applying %s: the migration of %s already ended", name, instance)
            return job
        if _waits_for_transfer(job, name, arg):
            LOG.info("Deferring force of %s until its transfer has begun", instance)
            job.pending[name] = arg
            return job
        try:
            call(job)
        except libvirt.libvirtError as err:
            if job.done:
                return job
            if errors.is_invalid_operation(err):
                # e.g. libvirt's job, or QEMU's migration, has not started yet
                LOG.info("Deferring %s of %s: %s", name, instance, err)
                job.pending[name] = arg
                return job
            raise errors.translate(err, instance, name, self.hostname, self._alive())
        return job

    def abort_job(self, instance: str) -> None:
        def abort(job: job_mod.MigrationJob) -> None:
            job.abort_requested = True
            job.dom.abortJob()
        self._request(instance, "abort", True, abort)

    def force_complete(self, instance: str, post_copy: bool) -> None:
        self._request(instance, "force", post_copy, lambda job: self._force(job, post_copy))

    def _force(self, job: job_mod.MigrationJob, post_copy: bool) -> None:
        if post_copy and job.call.flags & libvirt.VIR_MIGRATE_POSTCOPY:
            job.dom.migrateStartPostCopy(0)
            job.postcopy = True
            LOG.info("Migration of %s switched to post-copy", job.instance)
            return
        if post_copy:
            LOG.warning("Migration of %s was started without post-copy; pausing the "
                        "guest instead", job.instance)
        job.dom.suspend()
        job.paused_by_us = True
        LOG.info("Paused %s so that its migration completes", job.instance)

    def set_max_downtime(self, instance: str, downtime_ms: int) -> None:
        self._request(instance, "downtime", downtime_ms,
                      lambda job: job.dom.migrateSetMaxDowntime(downtime_ms, 0))

    def post_live_migration_at_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> None:
        with self._lock:
            job = self._jobs.pop(instance, None)
        with self._translated(instance, "post_live_migration_at_source"):
            dom = self._lookup(instance)
            if dom is not None:
                if (dom.isActive() and (job is None or job.done)
                        and tuple(dom.state()[:2]) == (libvirt.VIR_DOMAIN_PAUSED,
                                                       libvirt.VIR_DOMAIN_PAUSED_MIGRATION)):
                    # Stopped at the switch-over and its job ended without a confirm:
                    # the flow calls this once the guest runs on the destination.
                    LOG.warning("Destroying the stopped copy of %s left on %s",
                                instance, self.hostname)
                    dom.destroy()
                if dom.isActive():
                    raise exception.MigrationError(
                        instance=instance, step="post_live_migration_at_source",
                        reason="the guest still runs here after its migration completed; "
                               "leaving it alone")
                if dom.isPersistent():
                    dom.undefineFlags(_UNDEFINE)
            if self.cleanup_source_disks:
                self._delete_copied_disks(instance, job, migrate_data)

    def _delete_copied_disks(self, instance: str, job: Optional[job_mod.MigrationJob],
                             migrate_data: md.MigrateData) -> None:
        """Delete the images this host's own block migration copied (its own
        definition listed them when it started) that the destination said it
        created; nothing else, whatever the destination answered."""
        copied = getattr(job, "copied_disks", None) or ()
        claimed = migrate_data.driver_data.get(CREATED_DISKS) or ()
        if not copied:
            if claimed:
                LOG.warning("Not deleting disks of %s the destination named: this host "
                            "did not block-migrate it (or no longer knows it did)",
                            instance)
            return
        doomed = disks_mod.to_delete(copied, claimed)
        for path in sorted(set(copied) - set(doomed)):
            LOG.info("Keeping %s: the destination did not create it (shared storage?)",
                     path)
        conn = self._conn()
        for path in doomed:
            storage.delete_volume(conn, path)

    def rollback_live_migration_at_source(self, instance: str, migrate_data: md.MigrateData
                                          ) -> None:
        with self._lock:
            job = self._jobs.get(instance)
            if job is not None and job.postcopy and not job.succeeded:
                # Neither half can run alone: keep the job (and its recovery).
                LOG.error("Not rolling back %s on %s: its migration switched to "
                          "post-copy, so its memory here is stale", instance,
                          self.hostname)
                return
            self._jobs.pop(instance, None)
        with self._translated(instance, "rollback_live_migration_at_source"):
            if job is not None and not job.done:
                try:
                    job.dom.abortJob()
                except libvirt.libvirtError as err:
                    LOG.info("Abort during rollback of %s: %s", instance, err)
                if not job.wait(self.job_end_timeout):
                    LOG.warning("The migration call of %s did not return within %d s",
                                instance, self.job_end_timeout)
            dom = self._lookup(instance)
            if dom is None:
                LOG.error("Rollback: %s is no longer defined on %s", instance,
                          self.hostname)
                return
            state, reason = dom.state()[:2]
            if state != libvirt.VIR_DOMAIN_PAUSED:
                return
            if (job is not None and job.postcopy) or (state, reason) in _POSTCOPY_HALVES:
                LOG.error("Not resuming %s on %s: it switched to post-copy, so its "
                          "memory here is stale", instance, self.hostname)
                return
            ours = job is not None and job.paused_by_us
            if ours or reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
                LOG.info("Resuming %s on %s", instance, self.hostname)
                dom.resume()

    def pause_instance(self, instance: str, migrate_data: md.MigrateData) -> None:
        """The settle function's fence: pause a copy that must not run on."""
        with self._translated(instance, "pause_instance"):
            dom = self._lookup(instance)
            if dom is not None and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                LOG.critical("Pausing %s on %s: it must not run here and elsewhere at "
                             "once", instance, self.hostname)
                dom.suspend()

    # -- convergence ----------------------------------------------------------------

    def measure_dirty_rate(self, instance: str, window_s: int
                           ) -> convergence.DirtyRateMeasurement:
        """QEMU's page-sampling dirty rate of ``instance`` (see ``dirtyrate``)."""
        with self._translated(instance, "measure_dirty_rate"):
            dom = self._domain(instance)
            try:
                return dirtyrate.measure(self._conn(), dom, window_s)
            except libvirt.libvirtError as err:
                if not self._alive():
                    raise
                LOG.warning("Cannot sample the dirty rate of %s: %s", instance, err)
                return convergence.DirtyRateMeasurement(
                    reason="libvirt refused the dirty-rate calculation: %s"
                           % errors.message(err))

    def link_speed(self, address: str) -> Optional[int]:
        """The speed sysfs reports for the interface routing to ``address``.

        Only when the daemon shares this process's network namespace (sysfs
        shows ours); virtual interfaces (veth, bridges) report none or a
        nominal figure, which a shaped link would contradict, so they count
        as unknown.
        """
        if self.netns is not None:
            return None
        return addresses.interface_speed(address)
