"""The fake driver: one simulated host of a :class:`FakeWorld`.

It checks what it is given as strictly as libvirt and QEMU would: the
control URI must reach the destination's daemon, the data URI must be an
address of the destination on a plane whose link is up, the listen address
must be the destination's own, a TLS certificate must match the name it is
verified against, post-copy needs the post-copy flag. It JSON-round-trips
every :class:`MigrateData` it receives or returns, as a real RPC would, and
records which address and plane carried the data.
"""

import dataclasses
import functools
import ipaddress
import json
import urllib.parse
from typing import TYPE_CHECKING
from typing import Callable
from typing import Concatenate
from typing import List
from typing import NoReturn
from typing import Optional
from typing import ParamSpec
from typing import Tuple
from typing import TypeVar
from typing import cast

from oslo_config import cfg

from migplane.core import address
from migplane.core import capabilities
from migplane.core import convergence
from migplane.core import driver
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.drivers.fake import opts
from migplane.drivers.fake import world as world_mod

if TYPE_CHECKING:  # only the types; the driver is given them by the flow
    from migplane.core import settings as settings_mod
    from migplane.core import uri as uri_mod

D = TypeVar("D", bound="FakeDriver")
P = ParamSpec("P")
R = TypeVar("R")

CAPABILITIES = capabilities.Capabilities(
    schemes=("tcp", "tls", "ssh"), data_uri=True, listen_address=True, disks_uri=True,
    tls_destination=True, tunnelled=True, native_tls=True, post_copy=True,
    auto_converge=True, parallel_connections=True, block_migration=True,
    dirty_rate_sampling=True, post_copy_recovery=True)

_STATES = {"running": driver.JOB_RUNNING, "completed": driver.JOB_COMPLETED,
           "failed": driver.JOB_FAILED, "cancelled": driver.JOB_CANCELLED,
           world_mod.RECOVERING: driver.JOB_POSTCOPY_RECOVERING,
           world_mod.PAUSED: driver.JOB_POSTCOPY_PAUSED}


def wire(data: md.MigrateData) -> md.MigrateData:
    """What arrives after ``data`` crossed a JSON RPC."""
    return md.MigrateData.from_primitive(json.loads(json.dumps(data.to_primitive())))


def step(method: Callable[Concatenate[D, P], R]) -> Callable[Concatenate[D, P], R]:
    """Apply injected faults and the daemon's liveness to a driver step."""
    @functools.wraps(method)
    def wrapper(self: D, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.world.lock:
            fault = self.world.take_fault(self.host.name, method.__name__)
            if fault is not None:
                raise fault
            if not self.host.answers:
                raise exception.HypervisorUnavailable(
                    host=self.host.name, reason="the host does not answer (cut off)")
            if not self.host.daemon_alive:
                raise exception.HypervisorUnavailable(
                    host=self.host.name, reason="the hypervisor daemon is not running")
            return method(self, *args, **kwargs)
    return wrapper


class FakeDriver(driver.MigrationDriver):
    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        opts.register_opts(conf)
        self.world = world_mod.get_world(conf.driver_fake.world)
        name = conf.driver_fake.host or self.hostname
        if name not in self.world.hosts:
            raise exception.ConfigError(
                group=opts.GROUP, option="host", value=name,
                reason="no such host in fake world %r (hosts: %s)"
                       % (self.world.name, ", ".join(sorted(self.world.hosts)) or "none"))
        self.host = self.world.hosts[name]

    def describe(self) -> driver.DriverInfo:
        caps = CAPABILITIES
        host = getattr(self, "host", None)
        if host is not None:
            caps = dataclasses.replace(caps, dirty_rate_sampling=host.dirty_rate_sampling,
                                       post_copy_recovery=host.post_copy_recovery)
        return driver.DriverInfo(name="fake", version="1.0", capabilities=caps)

    def local_addresses(self) -> List[str]:
        return sorted(self.host.addresses)

    def flow_timing(self) -> Tuple[Callable[[], float], Callable[[float], None]]:
        return self.world.clock.now, self.world.clock.sleep

    def _guest(self, instance: str, states: Tuple[str, ...] = ("running", "paused")
               ) -> world_mod.FakeGuest:
        guest = self.host.guests.get(instance)
        if guest is None or guest.state not in states:
            raise exception.InstanceNotFound(instance=instance, host=self.host.name)
        return guest

    def _transfer(self, instance: str) -> world_mod.Transfer:
        transfer = self.world.transfers.get(instance)
        if transfer is None or transfer.source is not self.host:
            raise exception.NoActiveMigration(instance=instance, host=self.host.name)
        return transfer

    @step
    def get_instance_info(self, instance: str) -> driver.InstanceInfo:
        guest = self._guest(instance, states=("running", "paused", "shutoff", "incoming"))
        return driver.InstanceInfo(name=instance, state=guest.state,
                                   memory_bytes=guest.memory_bytes,
                                   disk_bytes=guest.disk_bytes, reason=guest.reason)

    @step
    def list_instances(self) -> List[driver.InstanceInfo]:
        return [driver.InstanceInfo(name=g.name, state=g.state, memory_bytes=g.memory_bytes,
                                    disk_bytes=g.disk_bytes)
                for g in sorted(self.host.guests.values(), key=lambda g: g.name)
                if g.state == "running"]

    @step
    def host_resources(self) -> driver.HostResources:
        used = sum(g.memory_bytes for g in self.host.guests.values())
        return driver.HostResources(memory_total_bytes=self.host.memory_bytes,
                                    memory_free_bytes=max(0, self.host.memory_bytes - used))

    # -- destination side --------------------------------------------------

    @step
    def check_can_live_migrate_destination(self, instance: str, block_migration: bool = False
                                           ) -> md.MigrateData:
        if self.host.running(instance):
            raise exception.DestinationCheckFailed(
                host=self.host.name, instance=instance, reason="it already runs here")
        if instance in self.host.guests:
            # As libvirt: a domain of that name (e.g. being received) is defined.
            raise exception.DestinationCheckFailed(
                host=self.host.name, instance=instance,
                reason="a domain of that name is already defined here (%s)"
                       % self.host.guests[instance].state)
        return wire(md.MigrateData(dest_hostname=self.hostname,
                                   block_migration=block_migration))

    @step
    def pre_live_migration(self, instance: str, migrate_data: md.MigrateData
                           ) -> md.MigrateData:
        migrate_data = wire(migrate_data)
        need = migrate_data.driver_data.get("memory_bytes", 0)
        used = sum(g.memory_bytes for g in self.host.guests.values())
        if used + need > self.host.memory_bytes:
            raise exception.DestinationCheckFailed(
                host=self.host.name, instance=instance,
                reason="needs %d bytes of memory, %d free"
                       % (need, self.host.memory_bytes - used))
        self.host.prepared[instance] = dict(migrate_data.driver_data)
        if migrate_data.block_migration:
            self.host.disks[instance] = 0  # pre-created, empty, like Nova does
        return wire(self.inbound_migrate_data(migrate_data))

    @step
    def post_live_migration_at_destination(self, instance: str,
                                           migrate_data: md.MigrateData) -> None:
        wire(migrate_data)
        guest = self._guest(instance)
        guest.persistent = True
        if guest.state == "paused" and guest.reason == "held":
            # the handover: the flow calls this once the source's copy stopped
            guest.state, guest.reason = "running", None
        self.host.prepared.pop(instance, None)

    @step
    def rollback_live_migration_at_destination(self, instance: str,
                                               migrate_data: md.MigrateData) -> None:
        wire(migrate_data)
        guest = self.host.guests.get(instance)
        if guest is not None and guest.state in ("incoming", "paused", "shutoff"):
            if guest.reason in ("postcopy", "postcopy-failed"):
                raise exception.MigrationError(
                    instance=instance, step="rollback_live_migration_at_destination",
                    reason="it holds the guest's newest state (post-copy); not destroying it")
            del self.host.guests[instance]
        if self.host.prepared.pop(instance, None) is not None:
            self.host.disks.pop(instance, None)

    # -- source side --------------------------------------------------------

    @step
    def check_can_live_migrate_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> md.MigrateData:
        migrate_data = wire(migrate_data)
        guest = self._guest(instance, states=("running",))
        if guest.disk_bytes and not migrate_data.block_migration \
                and not self.host.shared_storage:
            raise exception.SourceCheckFailed(
                host=self.host.name, instance=instance,
                reason="its %d-byte local disk is not on shared storage; use block "
                       "migration" % guest.disk_bytes)
        data = dict(migrate_data.driver_data, memory_bytes=guest.memory_bytes,
                    disk_bytes=guest.disk_bytes)
        return wire(migrate_data.replace(driver_data=data))

    def _fail_connect(self, instance: str, target: str, reason: str) -> NoReturn:
        raise exception.MigrationError(
            instance=instance, step="live_migration",
            reason="unable to connect to %s: %s" % (target, reason))

    def _target(self, instance: str, host_text: str, dest: world_mod.FakeHost) -> str:
        parsed = address.parse_host(host_text)
        if parsed.kind == address.IPV6 and "%" not in parsed.host \
                and ipaddress.IPv6Address(parsed.host).is_link_local:
            self._fail_connect(instance, host_text, "Invalid argument (a link-local "
                               "address needs a zone id)")
        host, plane = self.world.resolve(parsed.host)
        if host is not dest:
            self._fail_connect(instance, host_text, "it is not the destination %s"
                               % dest.name)
        plane = cast(str, plane)  # resolve found dest, so a plane too
        if not (self.host.link_up[plane] and dest.link_up[plane]):
            self._fail_connect(instance, host_text, "No route to host (%s plane down)"
                               % plane)
        return plane

    def _check_uris(self, instance: str, uris: "uri_mod.MigrationURIs",
                    settings: "settings_mod.MigrationSettings", dest: world_mod.FakeHost
                    ) -> Tuple[str, str, str]:
        control = urllib.parse.urlsplit(uris.control_uri)
        scheme = control.scheme.partition("+")[2]
        if not control.scheme.startswith("qemu+") or scheme not in CAPABILITIES.schemes:
            raise exception.UnsupportedFeature(driver="fake",
                                               feature="control URI %r" % uris.control_uri)
        control_plane = self._target(instance, control.netloc, dest)
        if uris.data_uri:
            data = urllib.parse.urlsplit(uris.data_uri)
            if data.scheme != "tcp":
                raise exception.UnsupportedFeature(driver="fake",
                                                   feature="data URI %r" % uris.data_uri)
            data_host, plane = data.netloc, self._target(instance, data.netloc, dest)
        elif settings.tunnelled:
            data_host, plane = control.netloc, control_plane
        else:
            data_host, plane = dest.name, self._target(instance, dest.name, dest)
        if uris.listen_address and dest.plane_of(uris.listen_address) is None:
            self._fail_connect(instance, uris.listen_address,
                               "the destination cannot bind it: Cannot assign requested "
                               "address")
        if settings.native_tls and dest.tls_names:
            name = uris.tls_destination or address.parse_host(data_host).host
            if name not in dest.tls_names:
                raise exception.MigrationError(
                    instance=instance, step="live_migration",
                    reason="Certificate does not match the hostname %s (it is for %s)"
                           % (name, ", ".join(dest.tls_names)))
        return data_host, plane, control.netloc

    @step
    def live_migration(self, instance: str, migrate_data: md.MigrateData,
                       uris: "uri_mod.MigrationURIs",
                       settings: "settings_mod.MigrationSettings") -> None:
        migrate_data = wire(migrate_data)
        guest = self._guest(instance, states=("running",))
        # check_can_live_migrate_destination always sets dest_hostname
        dest, _ = self.world.resolve(cast(str, migrate_data.dest_hostname))
        if dest is None or not dest.daemon_alive:
            self._fail_connect(instance, uris.control_uri, "Connection refused")
        if instance in self.world.transfers and \
                self.world.transfers[instance].state == "running":
            raise exception.MigrationError(instance=instance, step="live_migration",
                                           reason="a migration job is already running")
        block = migrate_data.block_migration
        if block and instance not in dest.disks:
            raise exception.MigrationError(
                instance=instance, step="live_migration",
                reason="the destination has no pre-created disk for block migration")
        data_host, plane, control_host = self._check_uris(instance, uris, settings, dest)
        dest.guests[instance] = world_mod.FakeGuest(
            name=instance, memory_bytes=guest.memory_bytes, dirty_rate=guest.dirty_rate,
            disk_bytes=guest.disk_bytes, state="incoming", persistent=False)
        transfer = world_mod.Transfer(
            instance=instance, source=self.host, dest=dest, plane=plane,
            data_host=data_host, control_host=control_host, settings=settings,
            block=block, handover=not settings.post_copy,
            memory_remaining=float(guest.memory_bytes),
            pass_remaining=float(guest.memory_bytes), pass_size=float(guest.memory_bytes),
            disk_remaining=float(guest.disk_bytes if block else 0),
            stall_timeout=self.conf.driver_fake.postcopy_stall_timeout,
            recovery_timeout=self.conf.driver_fake.postcopy_recovery_timeout)
        self.world.transfers[instance] = transfer
        self.world.history.append(transfer)

    @step
    def get_job_progress(self, instance: str) -> driver.JobProgress:
        t = self._transfer(instance)
        memory_total = t.source.guests[instance].memory_bytes
        disk_total = t.disk_processed + t.disk_remaining
        return driver.JobProgress(
            state=_STATES[t.state], time_elapsed_ms=int(t.elapsed * 1000),
            data_total=int(memory_total + disk_total),
            data_processed=int(t.memory_processed + t.disk_processed),
            data_remaining=int(t.memory_remaining + t.disk_remaining),
            memory_total=memory_total, memory_processed=int(t.memory_processed),
            memory_remaining=int(t.memory_remaining), disk_total=int(disk_total),
            disk_processed=int(t.disk_processed), disk_remaining=int(t.disk_remaining),
            dirty_rate=int(self.world.dirty_rate(t, t.source.guests[instance])),
            iteration=t.iteration, downtime_ms=t.downtime_ms, postcopy=t.postcopy,
            error=t.error, cpu_throttle_pct=t.throttle_pct, handover=t.handover)

    @step
    def abort_job(self, instance: str) -> None:
        t = self._transfer(instance)
        if t.state not in ("running", world_mod.RECOVERING, world_mod.PAUSED):
            raise exception.NoActiveMigration(instance=instance, host=self.host.name)
        if t.postcopy:
            raise exception.MigrationError(
                instance=instance, step="abort", reason="a migration in post-copy mode "
                "cannot be aborted: the guest already runs on the destination")
        t.state = "cancelled"
        t.error = "operation aborted: migration out job: canceled by client"
        t.dest.guests.pop(instance, None)

    @step
    def force_complete(self, instance: str, post_copy: bool) -> None:
        t = self._transfer(instance)
        if post_copy:
            if not t.settings.permit_post_copy:
                raise exception.MigrationError(
                    instance=instance, step="force_complete",
                    reason="post-copy was not enabled when the migration started")
            self.world.switch_to_postcopy(t)
        else:
            t.source.guests[instance].state = "paused"
            t.source.guests[instance].reason = "held"

    @step
    def resume_postcopy(self, instance: str, migrate_data: Optional[md.MigrateData] = None,
                        uris: Optional["uri_mod.MigrationURIs"] = None,
                        settings: Optional["settings_mod.MigrationSettings"] = None) -> None:
        t = self._transfer(instance)
        if t.state == world_mod.RECOVERING:
            return  # already recovering: a second call (e.g. a restarted agent) joins it
        if t.state != world_mod.PAUSED:
            raise exception.NoActiveMigration(instance=instance, host=self.host.name)
        self.world.resume_postcopy(t)

    @step
    def set_max_downtime(self, instance: str, downtime_ms: int) -> None:
        self._transfer(instance).max_downtime_ms = downtime_ms

    @step
    def post_live_migration_at_source(self, instance: str, migrate_data: md.MigrateData
                                      ) -> None:
        wire(migrate_data)
        guest = self.host.guests.get(instance)
        if guest is not None and guest.state == "paused" and guest.reason == "migration":
            # stopped at the switch-over, its confirm lost: the copy the flow was
            # told (by the settle function) it may destroy
            guest.state = "shutoff"
        if guest is not None and guest.state == "shutoff":
            del self.host.guests[instance]
            if migrate_data.block_migration:
                self.host.disks.pop(instance, None)
        self.world.transfers.pop(instance, None)

    @step
    def rollback_live_migration_at_source(self, instance: str, migrate_data: md.MigrateData
                                          ) -> None:
        wire(migrate_data)
        transfer = self.world.transfers.get(instance)
        if transfer is not None and transfer.source is self.host and transfer.postcopy \
                and transfer.state != "completed":
            return  # as libvirt's driver: its memory here is stale, never resume it
        guest = self.host.guests.get(instance)
        if guest is not None and guest.state == "paused" and guest.reason not in (
                "postcopy", "postcopy-failed"):
            guest.state, guest.reason = "running", None
        self.world.transfers.pop(instance, None)

    @step
    def pause_instance(self, instance: str, migrate_data: md.MigrateData) -> None:
        wire(migrate_data)
        guest = self.host.guests.get(instance)
        if guest is not None and guest.state == "running":
            guest.state, guest.reason = "paused", "held"

    # -- convergence ------------------------------------------------------------

    @step
    def measure_dirty_rate(self, instance: str, window_s: int
                           ) -> convergence.DirtyRateMeasurement:
        """Like QEMU's page sampling: distinct pages dirtied over the window
        (so never more than the working set per window), in simulated time."""
        guest = self._guest(instance, states=("running",))
        if not self.host.dirty_rate_sampling:
            raise exception.UnsupportedFeature(driver="fake",
                                               feature="dirty-rate sampling on %s"
                                               % self.host.name)
        self.world.clock.sleep(window_s)
        rate = min(guest.dirty_rate, guest.working_set / window_s) if window_s else 0
        return convergence.DirtyRateMeasurement(
            int(rate), convergence.SAMPLING, float(window_s),
            "simulated page sampling of %s over %s s" % (instance, window_s))

    def link_speed(self, address: str) -> Optional[int]:
        """The simulated link's rate, when the host reports its interfaces' speed."""
        if not self.host.reports_link_speed:
            return None
        _, plane = self.world.resolve(address)
        return int(self.host.bandwidth[plane]) if plane else None
