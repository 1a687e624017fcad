"""The driver API: what every migration driver implements.

Modelled on os-vif's ``PluginBase``: small abstract classes whose
``describe()`` says what the driver supports, and one method per step of a
live migration, named as in Nova. A migration has two roles:
:class:`SourceDriver` (the host the guest leaves) and
:class:`DestinationDriver` (the host it goes to). The core's
:class:`~migplane.core.flow.LiveMigration` calls each step on the driver of
the role that owns it; the two may live in different processes, so every
:class:`MigrateData` they exchange crosses as primitives.

A driver loaded from ``migplane.drivers`` is a :class:`MigrationDriver`: both
roles in one class, since any host can be either. A stack that reaches the
destination over its own RPC implements :class:`DestinationDriver` only for
its proxy (as the agent's ``RemoteDriver`` does).

**Order of the calls.** ``check_can_live_migrate_destination`` (destination)
-> ``check_can_live_migrate_source`` (source) -> ``pre_live_migration``
(destination) -> ``describe``, ``get_instance_info`` (source) ->
``live_migration`` (source) -> ``get_job_progress`` every ``poll_interval``
(source; with ``set_max_downtime``, ``abort_job`` and ``force_complete`` as
the monitor decides) -> either ``post_live_migration_at_destination`` +
``post_live_migration_at_source``, or ``rollback_live_migration_at_source`` +
``rollback_live_migration_at_destination``.

**Threads.** The flow calls every step of one migration in a worker thread
of its own (:mod:`migplane.core.deadlines`) and stops waiting for it at
``[live_migration] step_deadline``: a step must not rely on the thread it
runs in, and one that answers after the deadline is ignored (what it did is
left for the rollback and reconciliation to find). Different migrations run
at once, so steps must be safe to call concurrently for different instances.
``describe``, ``get_instance_info`` and ``get_job_progress`` may also be
called from any thread at any time (agents answer status requests with them).
Steps block until done, except ``live_migration``, which returns once the
transfer has started.

**Errors.** Steps raise the core's typed exceptions
(:mod:`migplane.core.exception`), as documented on each; anything else is
treated as a bug of the driver (the flow still rolls back). ``instance`` is
always the guest's name. :mod:`migplane.testing.conformance` checks all of
this against a driver.
"""

import abc
import dataclasses
import time
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple

from oslo_config import cfg

from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import exception as exception_mod
from migplane.core import inbound
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import versioned

if TYPE_CHECKING:  # uri imports this module's neighbours; only the type is needed
    from migplane.core import uri as uri_mod

JOB_NONE = "none"
JOB_RUNNING = "running"
JOB_COMPLETED = "completed"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
#: A post-copy job whose stream broke or stalled: the driver is recovering it
#: (waiting for the peer, resuming). Not finished: the flow keeps polling.
JOB_POSTCOPY_RECOVERING = "postcopy_recovering"
#: Recovery of a broken post-copy gave up at its deadline; both halves are left
#: as they are (paused source, destination paused or running without its
#: missing pages). Finished for the flow, but neither completed nor failed:
#: nothing may destroy, undefine or resume either half; an operator resumes it
#: (``resume_postcopy``) once both hosts and the link answer.
JOB_POSTCOPY_PAUSED = "postcopy_paused"
JOB_STATES = (JOB_NONE, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED,
              JOB_POSTCOPY_RECOVERING, JOB_POSTCOPY_PAUSED)
JOB_FINISHED = (JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED, JOB_POSTCOPY_PAUSED)


@dataclasses.dataclass(frozen=True)
class DriverInfo(versioned.VersionedData):
    """The answer of ``describe()``: a driver's name, version and capabilities.

    Versioned like :class:`MigrateData`: agents report it to each other.
    """

    # Version 1.0: name, version, capabilities (a nested Capabilities).
    VERSION = "1.0"

    name: str = versioned.field("1.0", versioned.check_str, default=versioned.REQUIRED)
    version: str = versioned.field("1.0", versioned.check_str, default=versioned.REQUIRED)
    capabilities: caps_mod.Capabilities = versioned.field(
        "1.0", versioned.check_nested(caps_mod.Capabilities), default=versioned.REQUIRED)

    def to_dict(self) -> Dict[str, Any]:
        """Plain form, for display and for peers that predate versioning."""
        return {"name": self.name, "version": self.version,
                "capabilities": self.capabilities.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriverInfo":
        """From :meth:`to_primitive` or the plain :meth:`to_dict` form.

        The plain form has no version: capability flags this side does not
        know (a newer peer's) are ignored and missing ones default to
        unsupported, as :meth:`from_primitive` does for a newer minor version.
        """
        if isinstance(data, Mapping) and versioned.NAME_KEY in data:
            return cls.from_primitive(dict(data))
        try:
            caps = dict(data["capabilities"])
            known = {f.name for f in dataclasses.fields(caps_mod.Capabilities)}
            capabilities = caps_mod.Capabilities(
                **{k: v for k, v in caps.items() if k in known})
            return cls(name=data["name"], version=data["version"],
                       capabilities=capabilities)
        except (KeyError, TypeError, ValueError) as err:
            raise cls._invalid("<driver info>", data, "expected name, version and "
                               "capabilities (%s: %s)" % (type(err).__name__, err))


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """What the flow needs to know of a guest: its state and its size."""

    name: str
    state: str
    memory_bytes: int
    disk_bytes: int = 0
    #: Why it is in that state, as :mod:`migplane.core.settle` names the reasons
    #: that matter (``migration``, ``postcopy``, ``postcopy-failed``,
    #: ``migration-canceled``, ``held``); None when none of them.
    reason: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class HostResources:
    """What a host has room for (an evacuation places guests by it)."""

    memory_total_bytes: int
    memory_free_bytes: int

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _optional_int(value: Any) -> Optional[int]:
    return None if value is None else versioned.check_int(value)


def _hypervisor_text(value: Any) -> Optional[str]:
    """A hypervisor's error text, cut to the length a wire string may have."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value[:4096]


@dataclasses.dataclass(frozen=True)
class JobProgress(versioned.VersionedData):
    """A snapshot of a running (or finished) migration job, in bytes.

    Versioned: agents send it to each other and to the CLI. ``state`` is not
    checked against :data:`JOB_STATES` here: a driver's unknown state must
    reach the flow, which refuses it as a contract error naming the driver.
    """

    # Version 1.0: state ... cpu_throttle_pct.
    # Version 1.1: Adds handover (the destination's copy is held paused).
    VERSION = "1.1"

    state: str = versioned.field("1.0", versioned.check_str, default=JOB_NONE)
    time_elapsed_ms: int = versioned.field("1.0", versioned.check_int, default=0)
    data_total: int = versioned.field("1.0", versioned.check_int, default=0)
    data_processed: int = versioned.field("1.0", versioned.check_int, default=0)
    data_remaining: int = versioned.field("1.0", versioned.check_int, default=0)
    memory_total: int = versioned.field("1.0", versioned.check_int, default=0)
    memory_processed: int = versioned.field("1.0", versioned.check_int, default=0)
    memory_remaining: int = versioned.field("1.0", versioned.check_int, default=0)
    disk_total: int = versioned.field("1.0", versioned.check_int, default=0)
    disk_processed: int = versioned.field("1.0", versioned.check_int, default=0)
    disk_remaining: int = versioned.field("1.0", versioned.check_int, default=0)
    #: Bytes of guest memory dirtied per second.
    dirty_rate: int = versioned.field("1.0", versioned.check_int, default=0)
    #: Pre-copy pass number (libvirt's memory iteration).
    iteration: int = versioned.field("1.0", versioned.check_int, default=0)
    #: Downtime of the switch-over, once completed.
    downtime_ms: Optional[int] = versioned.field("1.0", _optional_int)
    #: Whether the job has switched to post-copy.
    postcopy: bool = versioned.field("1.0", versioned.check_bool, default=False)
    #: Why the job failed, in the hypervisor's words.
    error: Optional[str] = versioned.field("1.0", _hypervisor_text)
    #: Percent by which auto-converge throttles the guest's vCPUs now (0: not).
    cpu_throttle_pct: int = versioned.field("1.0", versioned.check_int, default=0)
    #: The destination's copy starts paused after the switch-over (the handover):
    #: it runs only once migplane resumes it.
    handover: bool = versioned.field("1.1", versioned.check_bool, default=False)

    @property
    def finished(self) -> bool:
        return self.state in JOB_FINISHED

    @property
    def percent(self) -> float:
        """Percent of the data sent: the one rule every display uses."""
        if self.state == JOB_COMPLETED:
            return 100.0
        if not self.data_total:
            return 0.0
        remaining = self.data_remaining or 0
        return max(0.0, min(100.0, 100.0 * (self.data_total - remaining)
                            / self.data_total))

    def to_dict(self) -> Dict[str, Any]:
        """The plain form (records, displays); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)


def progress_problem(progress: Any) -> Optional[str]:
    """How ``progress`` breaks the contract of ``get_job_progress``; None when it keeps it."""
    if not isinstance(progress, JobProgress):
        return "returned %s, not a JobProgress" % type(progress).__name__
    if progress.state not in JOB_STATES:
        return "unknown job state %r (known: %s)" % (progress.state, ", ".join(JOB_STATES))
    return None


class _Role(metaclass=abc.ABCMeta):
    """What both roles answer: who they are and what they support."""

    @property
    @abc.abstractmethod
    def hostname(self) -> str:
        """The host's name on the management network (control connections go there)."""

    @abc.abstractmethod
    def describe(self) -> DriverInfo:
        """Return a :class:`DriverInfo`; callers negotiate on its capabilities.

        Called by the loader once, and by the flow before each migration (the
        source's capabilities decide the URIs), from any thread; cheap and
        side-effect free. A capability not declared is never asked for by the
        core, which refuses such a migration with ``UnsupportedFeature``
        before any host is touched; asked directly, the driver refuses it too.
        """

    @abc.abstractmethod
    def get_instance_info(self, instance: str) -> InstanceInfo:
        """Return the :class:`InstanceInfo` of ``instance`` on this host.

        Called by the flow on the source before the transfer (its sizes set the
        timeouts), on both hosts after a failure mid-transfer (where does the
        guest run?), and from any thread for status. Raises
        ``InstanceNotFound`` when the guest is not on this host,
        ``HypervisorUnavailable`` when the host cannot be asked. Changes nothing.
        """

    def pause_instance(self, instance: str, migrate_data: md.MigrateData) -> None:
        """Pause this host's running copy of ``instance``: the fence the settle
        function orders when two copies run (:mod:`migplane.core.settle`).

        Either role. Idempotent: a copy that does not run is left as it is.
        Drivers that cannot pause raise ``UnsupportedFeature``.
        """
        raise exception_mod.UnsupportedFeature(driver=type(self).__name__,
                                               feature="pausing a guest (fencing)")


class DestinationDriver(_Role):
    """The steps a migration runs on the host the guest goes to.

    Implement this alone for a proxy of a remote destination; the flow calls
    nothing else on the destination.
    """

    @abc.abstractmethod
    def check_can_live_migrate_destination(self, instance: str, block_migration: bool = False
                                           ) -> md.MigrateData:
        """Check this host can take ``instance``; return a first :class:`MigrateData`.

        Called by the flow first, on the destination. Returns MigrateData with
        ``dest_hostname`` and ``block_migration`` set. Raises
        ``DestinationCheckFailed`` naming the reason (a guest of that name is
        already defined here, too little memory...). Prepares nothing, so a
        failure leaves nothing behind.
        """

    @abc.abstractmethod
    def pre_live_migration(self, instance: str, migrate_data: md.MigrateData
                           ) -> md.MigrateData:
        """Prepare this host; return MigrateData with ``target_connect_addr`` set.

        Called by the flow on the destination, after both checks, with the
        source's MigrateData. ``target_connect_addr`` is ``my_live_migration_ip``
        (or the address in ``inbound_cidr``), or None (legacy) when unset;
        :meth:`MigrationDriver.inbound_migrate_data` applies and checks it the
        same way for every driver. Raises ``DestinationCheckFailed`` or
        ``InboundAddressError``. Whatever it prepared, even when it fails
        halfway, :meth:`rollback_live_migration_at_destination` removes.
        """

    @abc.abstractmethod
    def post_live_migration_at_destination(self, instance: str,
                                           migrate_data: md.MigrateData) -> None:
        """The guest now runs here: finish (persist its definition...).

        Called by the flow on the destination once the job completed, and only
        once the settle function (:mod:`migplane.core.settle`) saw the source's
        copy stopped. A driver that holds the arrived copy paused after the
        switch-over (the handover: ``JobProgress.handover``) resumes it here.
        Returns None. A failure (``MigrationError``) is reported with the result but
        undoes nothing: the guest runs here.
        """

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance: str,
                                               migrate_data: md.MigrateData) -> None:
        """Remove whatever the migration left on this host; idempotent.

        Called by the flow on the destination after a failure at any point,
        even before :meth:`pre_live_migration` ran or a second time: it must
        not fail because there is nothing to remove, and must never touch a
        guest that runs here for another reason. Returns None; raises
        ``HypervisorUnavailable`` when the host cannot be asked (the flow logs
        it and reconciliation finishes the job).
        """


class SourceDriver(_Role):
    """The steps a migration runs on the host the guest leaves."""

    @abc.abstractmethod
    def check_can_live_migrate_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> md.MigrateData:
        """Check ``instance`` can leave this host; return updated MigrateData.

        Called by the flow on the source with the destination's first
        MigrateData. Raises ``SourceCheckFailed`` or ``InstanceNotFound``.
        Prepares nothing.
        """

    @abc.abstractmethod
    def live_migration(self, instance: str, migrate_data: md.MigrateData,
                       uris: "uri_mod.MigrationURIs",
                       settings: settings_mod.MigrationSettings) -> None:
        """Start the transfer with the resolved ``uris``; return None at once.

        Called by the flow on the source after ``pre_live_migration``. The
        driver uses the URIs as given and decides no policy: the control
        connection goes to ``uris.control_uri``, the data to ``uris.data_uri``
        (None: the hypervisor's default), the destination listens on
        ``uris.listen_address``. Progress is then read with
        :meth:`get_job_progress`. Raises ``MigrationError`` when the transfer
        cannot start, ``UnsupportedFeature`` when asked for a capability it
        did not declare; then no job of this migration runs and the guest
        runs here as before.

        :param uris: the :class:`~migplane.core.uri.MigrationURIs` from the policy.
        :param settings: the :class:`~migplane.core.settings.MigrationSettings`
            of this migration (bandwidth, post-copy, ...).
        """

    @abc.abstractmethod
    def get_job_progress(self, instance: str) -> JobProgress:
        """Return the :class:`JobProgress` of the migration started here.

        Polled by the flow on the source, and from any thread. ``state`` is
        one of :data:`JOB_STATES`: ``none``/``running`` while it runs, then
        exactly one finished state (``completed``, ``failed`` or
        ``cancelled``) that it keeps reporting until a post or rollback step
        runs. Raises ``NoActiveMigration`` when no migration of ``instance``
        was started here, ``HypervisorUnavailable`` when the host cannot be
        asked. Changes nothing.

        A driver that declares ``post_copy`` never reports a job whose
        post-copy stream broke as ``failed`` or ``completed``: it reports
        ``postcopy_recovering`` while it recovers the stream (by itself, e.g.
        in the job's thread) and ``postcopy_paused`` when it gave up, leaving
        both halves as they are.
        """

    @abc.abstractmethod
    def abort_job(self, instance: str) -> None:
        """Cancel the running migration; the guest keeps running here.

        Called by the flow on the source, possibly several times (it resends
        an abort the job has not obeyed). The job then ends ``cancelled`` (or
        ``completed``/``failed`` if it ended first). Raises
        ``NoActiveMigration`` when no migration of ``instance`` was started
        here (after the job finished: nothing, or ``NoActiveMigration``),
        ``MigrationError`` when it can no longer be cancelled (post-copy).
        """

    @abc.abstractmethod
    def force_complete(self, instance: str, post_copy: bool) -> None:
        """Make the migration converge: switch to post-copy, or pause the guest.

        Called by the flow on the source when the monitor or an operator
        decides. ``post_copy`` is true only when permitted and declared in
        the capabilities; otherwise pause the guest so the copy completes.
        Raises ``NoActiveMigration`` when no job runs.
        """

    @abc.abstractmethod
    def set_max_downtime(self, instance: str, downtime_ms: int) -> None:
        """Raise the tolerated switch-over downtime of the running migration.

        Called by the flow's monitor on the source, following Nova's downtime
        steps. Raises ``NoActiveMigration`` when no job runs.
        """

    @abc.abstractmethod
    def post_live_migration_at_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> None:
        """The guest left: remove what is left of it on this host.

        Called by the flow on the source, last step of a success. Returns
        None. A failure is reported with the result; the guest runs on the
        destination whatever this step does.
        """

    def rollback_live_migration_at_source(  # noqa: B027
            self, instance: str, migrate_data: md.MigrateData) -> None:
        """The migration failed: make sure the guest runs here again.

        Called by the flow on the source after a failure at any point, once a
        transfer was started, and only when the settle function saw the
        destination's copy gone (or this copy still running), so resuming a
        copy paused for the migration is safe; a half of a post-copy migration
        is never resumed; idempotent (a second call, or a call when
        nothing was started, is harmless). Returns None.
        """

    def resume_postcopy(self, instance: str, migrate_data: Optional[md.MigrateData] = None,
                        uris: Optional["uri_mod.MigrationURIs"] = None,
                        settings: Optional[settings_mod.MigrationSettings] = None) -> None:
        """Resume a post-copy migration of ``instance`` whose stream broke.

        Source side: an operator's ``migplane resume`` after the job reported
        ``postcopy_paused``, or an agent that restarted mid-recovery. Returns
        once the recovery runs again; :meth:`get_job_progress` then reports
        ``postcopy_recovering``, ``running`` and ``completed`` (or
        ``postcopy_paused`` once more). ``migrate_data``, ``uris`` and
        ``settings`` are those of the original migration, for a driver that
        no longer holds the job (a restarted agent). Raises
        ``NoActiveMigration`` when no broken post-copy of ``instance`` is here.
        """
        raise exception_mod.UnsupportedFeature(driver=type(self).__name__,
                                               feature="resuming a broken post-copy")

    # -- optional hooks, with defaults ----------------------------------------

    def flow_timing(self) -> Tuple[Callable[[], float], Callable[[float], None]]:
        """``(clock, sleep)`` for flows driving this driver; simulated drivers
        return their own so that a migration runs in simulated time."""
        return time.monotonic, time.sleep

    def describe_migration(self, instance: str, migrate_data: md.MigrateData,
                           uris: "uri_mod.MigrationURIs",
                           settings: settings_mod.MigrationSettings) -> Optional[Dict[str, Any]]:
        """The hypervisor-level call a migration would make (flags, parameters),
        for ``migplane explain``; None when the driver cannot say."""
        return None

    def measure_dirty_rate(self, instance: str, window_s: int
                           ) -> convergence.DirtyRateMeasurement:
        """Measure how fast ``instance`` dirties its memory, before it moves.

        Called by the flow on the source (adaptive strategy); blocks for about
        ``window_s`` seconds. Drivers that can sample set
        ``Capabilities.dirty_rate_sampling``; the others return an unavailable
        measurement, and the flow learns the rate from the first pre-copy pass.
        """
        return convergence.DirtyRateMeasurement(
            reason="driver %s cannot sample a guest's dirty rate" % type(self).__name__)

    def link_speed(self, address: str) -> Optional[int]:
        """Bytes per second of this host's interface towards ``address``, or None
        when the host does not report one (virtual interfaces often do not)."""
        return None

    # -- optional hooks for evacuations --------------------------------------------

    def list_instances(self) -> List[InstanceInfo]:
        """:class:`InstanceInfo` of every running guest here (an evacuation moves them)."""
        raise NotImplementedError("%s cannot list its guests" % type(self).__name__)

    def host_resources(self) -> Optional[HostResources]:
        """This host's :class:`HostResources`; None when unknown."""
        return None


class MigrationDriver(SourceDriver, DestinationDriver):
    """Base class of migration drivers, loaded from ``migplane.drivers``: both roles.

    **Loading.** :func:`migplane.core.loader.load_driver` imports the entry
    point, checks it is a subclass of this class, constructs it with the
    caller's ``ConfigOpts`` and calls :meth:`describe` once; any failure is a
    ``DriverLoadError`` naming the driver (a ``MigplaneError`` such as
    ``ConfigError`` is raised as it is).

    **Options.** ``__init__`` here registers and validates the core options
    (``self.settings``). A driver registers its own options in its own group
    (``[driver_<name>]``) on the ``conf`` it is given, in its ``__init__``,
    never at import time, and lists them for ``oslo-config-generator`` with a
    ``list_opts()`` in an ``oslo.config.opts`` entry point; it rejects bad
    values in ``__init__`` with ``ConfigError``.

    The steps are documented on their roles, :class:`SourceDriver` and
    :class:`DestinationDriver`.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.settings = settings_mod.load(conf)

    @property
    def hostname(self) -> str:
        """This host's name on the management network."""
        return self.settings.host.hostname

    @abc.abstractmethod
    def local_addresses(self) -> Optional[List[str]]:
        """This host's IP addresses (strings), or None when unknown.

        Used by :meth:`inbound_migrate_data` on the destination to check
        ``my_live_migration_ip`` is its own, and by agents for their host facts.
        """

    def plan_inbound(self, instance: str, block_migration: bool = False) -> md.MigrateData:
        """What ``pre_live_migration()`` would return, preparing nothing (dry runs)."""
        return self.inbound_migrate_data(md.MigrateData(
            dest_hostname=self.hostname, block_migration=block_migration))

    # -- shared helpers ------------------------------------------------------

    def inbound_migrate_data(self, migrate_data: md.MigrateData,
                             driver_data: Optional[Mapping[str, Any]] = None,
                             listen_addrs: Optional[Mapping[str, str]] = None
                             ) -> md.MigrateData:
        """``migrate_data`` completed with this host's inbound address."""
        data = versioned.thaw(migrate_data.driver_data)
        data.update(driver_data or {})
        return inbound.destination_data(
            self.settings.host, self.local_addresses(),
            block_migration=migrate_data.block_migration,
            driver_data=data, listen_addrs=listen_addrs)
