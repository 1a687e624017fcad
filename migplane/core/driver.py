"""The driver API: what every migration driver implements.

Modelled on os-vif's ``PluginBase``: a small abstract class whose
``describe()`` says what the driver supports, and one method per step of a
live migration, named as in Nova. The core's :class:`~migplane.core.flow.LiveMigration`
calls the destination-side methods on the destination host's driver and the
source-side ones on the source host's; the two may live in different
processes, so every :class:`MigrateData` they exchange crosses as primitives.
"""

import abc
import dataclasses
import time
from typing import Optional

from migplane.core import capabilities as caps_mod
from migplane.core import inbound
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import versioned

JOB_NONE = "none"
JOB_RUNNING = "running"
JOB_COMPLETED = "completed"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_STATES = (JOB_NONE, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED)
JOB_FINISHED = (JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED)


@dataclasses.dataclass(frozen=True)
class DriverInfo:
    """The answer of ``describe()``: a driver's name, version and capabilities."""

    name: str
    version: str
    capabilities: caps_mod.Capabilities

    def to_dict(self):
        return {"name": self.name, "version": self.version,
                "capabilities": self.capabilities.to_dict()}

    @classmethod
    def from_dict(cls, data):
        caps = dict(data["capabilities"])
        caps["schemes"] = tuple(caps.get("schemes", ()))
        return cls(name=data["name"], version=data["version"],
                   capabilities=caps_mod.Capabilities(**caps))


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """What the flow needs to know of a guest: its state and its size."""

    name: str
    state: str
    memory_bytes: int
    disk_bytes: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class HostResources:
    """What a host has room for (an evacuation places guests by it)."""

    memory_total_bytes: int
    memory_free_bytes: int

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class JobProgress:
    """A snapshot of a running (or finished) migration job, in bytes."""

    state: str = JOB_NONE
    time_elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    #: Bytes of guest memory dirtied per second.
    dirty_rate: int = 0
    #: Pre-copy pass number (libvirt's memory iteration).
    iteration: int = 0
    #: Downtime of the switch-over, once completed.
    downtime_ms: Optional[int] = None
    #: Whether the job has switched to post-copy.
    postcopy: bool = False
    #: Why the job failed, in the hypervisor's words.
    error: Optional[str] = None

    @property
    def finished(self):
        return self.state in JOB_FINISHED

    @property
    def percent(self):
        if self.state == JOB_COMPLETED:
            return 100.0
        if not self.data_total:
            return 0.0
        return max(0.0, min(100.0, 100.0 * (self.data_total - self.data_remaining)
                            / self.data_total))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class MigrationDriver(metaclass=abc.ABCMeta):
    """Base class of migration drivers, loaded from ``migplane.drivers``.

    A driver is constructed with the caller's ``ConfigOpts``; the base class
    registers and validates the core options on it, and the driver registers
    its own group. ``instance`` is always the guest's name.
    """

    def __init__(self, conf):
        self.conf = conf
        self.settings = settings_mod.load(conf)

    @property
    def hostname(self):
        """This host's name on the management network."""
        return self.settings.host.hostname

    @abc.abstractmethod
    def describe(self):
        """Return a :class:`DriverInfo`; callers negotiate on its capabilities."""

    # -- host facts ---------------------------------------------------------

    @abc.abstractmethod
    def local_addresses(self):
        """This host's IP addresses (strings), or None when unknown."""

    @abc.abstractmethod
    def get_instance_info(self, instance):
        """Return an :class:`InstanceInfo`; raise InstanceNotFound when absent."""

    # -- destination side --------------------------------------------------

    @abc.abstractmethod
    def check_can_live_migrate_destination(self, instance, block_migration=False):
        """Check this host can take ``instance``; return a first :class:`MigrateData`."""

    @abc.abstractmethod
    def pre_live_migration(self, instance, migrate_data):
        """Prepare this host; return MigrateData with ``target_connect_addr`` set.

        Implementations call :meth:`inbound_migrate_data` so that
        ``my_live_migration_ip`` (or ``inbound_cidr``) is applied and checked
        the same way by every driver.
        """

    @abc.abstractmethod
    def post_live_migration_at_destination(self, instance, migrate_data):
        """The guest now runs here: finish (persist its definition...)."""

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance, migrate_data):
        """Remove whatever the migration left on this host; idempotent."""

    # -- source side --------------------------------------------------------

    @abc.abstractmethod
    def check_can_live_migrate_source(self, instance, migrate_data):
        """Check ``instance`` can leave this host; return updated MigrateData."""

    @abc.abstractmethod
    def live_migration(self, instance, migrate_data, uris, settings):
        """Start the transfer with the resolved ``uris``; return at once.

        :param uris: the :class:`~migplane.core.uri.MigrationURIs` from the policy.
        :param settings: the :class:`~migplane.core.settings.MigrationSettings`
            of this migration (bandwidth, post-copy, ...).
        """

    @abc.abstractmethod
    def get_job_progress(self, instance):
        """Return the :class:`JobProgress` of the migration started here."""

    @abc.abstractmethod
    def abort_job(self, instance):
        """Cancel the running migration; the guest keeps running here."""

    @abc.abstractmethod
    def force_complete(self, instance, post_copy):
        """Make the migration converge: switch to post-copy, or pause the guest."""

    @abc.abstractmethod
    def set_max_downtime(self, instance, downtime_ms):
        """Raise the tolerated switch-over downtime of the running migration."""

    @abc.abstractmethod
    def post_live_migration_at_source(self, instance, migrate_data):
        """The guest left: remove what is left of it on this host."""

    def rollback_live_migration_at_source(self, instance, migrate_data):  # noqa: B027
        """The migration failed: make sure the guest runs here again."""

    # -- optional hooks, with defaults ----------------------------------------

    def flow_timing(self):
        """``(clock, sleep)`` for flows driving this driver; simulated drivers
        return their own so that a migration runs in simulated time."""
        return time.monotonic, time.sleep

    def plan_inbound(self, instance, block_migration=False):
        """What ``pre_live_migration()`` would return, preparing nothing (dry runs)."""
        return self.inbound_migrate_data(md.MigrateData(
            dest_hostname=self.hostname, block_migration=block_migration))

    def describe_migration(self, instance, migrate_data, uris, settings):
        """The hypervisor-level call a migration would make (flags, parameters),
        for ``migplane explain``; None when the driver cannot say."""
        return None

    # -- optional hooks for evacuations --------------------------------------------

    def list_instances(self):
        """:class:`InstanceInfo` of every running guest here (an evacuation moves them)."""
        raise NotImplementedError("%s cannot list its guests" % type(self).__name__)

    def host_resources(self):
        """This host's :class:`HostResources`; None when unknown."""
        return None

    # -- shared helpers ------------------------------------------------------

    def inbound_migrate_data(self, migrate_data, driver_data=None, listen_addrs=None):
        """``migrate_data`` completed with this host's inbound address."""
        data = versioned.thaw(migrate_data.driver_data)
        data.update(driver_data or {})
        return inbound.destination_data(
            self.settings.host, self.local_addresses(),
            block_migration=migrate_data.block_migration,
            driver_data=data, listen_addrs=listen_addrs)
