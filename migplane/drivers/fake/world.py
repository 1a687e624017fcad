"""A simulated data centre for the fake driver: hosts, planes, guests, time.

Deterministic: time only moves when the flow sleeps on :class:`SimClock`, and
transfers advance in fixed quanta, so the same test always sees the same
bytes, iterations and downtime. Transfers model pre-copy (dirtying adds to
what remains), pausing, post-copy, bandwidth limits, links that go down and
daemons that die, and they count the bytes each plane carried.
"""

import dataclasses
import itertools
import threading
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Tuple
from typing import Union
from typing import cast

from migplane.core import address
from migplane.core import units

if TYPE_CHECKING:  # only the type; the world needs no configuration at run time
    from migplane.core import settings as settings_mod

MANAGEMENT = "management"
MIGRATION = "migration"
PLANES = (MANAGEMENT, MIGRATION)
QUANTUM = 0.01  # seconds of simulated time per transfer step
CONTROL_BYTES_PER_S = 20_000  # libvirt keep-alives and job RPCs on the control plane
#: Transfer states of a broken post-copy (driver.JOB_POSTCOPY_*).
RECOVERING = "postcopy_recovering"
PAUSED = "postcopy_paused"

_worlds: Dict[str, "FakeWorld"] = {}
_worlds_lock = threading.Lock()


class SimClock:
    """Simulated monotonic time; ``sleep`` advances the world instead of waiting."""

    def __init__(self, world: "FakeWorld") -> None:
        self._world = world
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        end = self._now + max(0.0, seconds)
        while self._now < end - 1e-12:
            dt = min(QUANTUM, end - self._now)
            self._now += dt
            self._world.step(dt)


@dataclasses.dataclass
class FakeGuest:
    name: str
    memory_bytes: int
    dirty_rate: int = 0
    disk_bytes: int = 0
    state: str = "running"  # running | paused | incoming | shutoff
    #: Why, as libvirt's state reasons (migplane.core.settle names them); None: none.
    reason: Optional[str] = None
    persistent: bool = True
    boot_id: str = ""
    ticks: int = 0
    #: Stands for the guest's memory contents: bumps whenever the guest writes.
    generation: int = 0
    #: Bytes the guest keeps rewriting; None: all of its memory.
    working_set_bytes: Optional[int] = None

    @property
    def working_set(self) -> int:
        if self.working_set_bytes is None:
            return self.memory_bytes
        return min(self.working_set_bytes, self.memory_bytes)

    def snapshot(self) -> Tuple[str, int, int]:
        return (self.boot_id, self.ticks, self.generation)


@dataclasses.dataclass
class FakeHost:
    name: str
    addresses: Dict[str, str]  # address -> plane
    bandwidth: Dict[str, float]  # plane -> bytes/s
    memory_bytes: int = 64 * 1024 * units.MiB
    shared_storage: bool = False
    tls_names: Tuple[str, ...] = ()
    link_up: Dict[str, bool] = dataclasses.field(
        default_factory=lambda: {p: True for p in PLANES})
    daemon_alive: bool = True
    #: The flow can ask this host's driver (False: its agent or link is cut off).
    answers: bool = True
    guests: Dict[str, FakeGuest] = dataclasses.field(default_factory=dict)
    prepared: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    disks: Dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_sent: Dict[str, float] = dataclasses.field(
        default_factory=lambda: {p: 0.0 for p in PLANES})
    #: The hypervisor can sample a guest's dirty rate (QEMU's calc-dirty-rate).
    dirty_rate_sampling: bool = True
    #: The host reports its interfaces' speed (physical NICs do, veths often not).
    reports_link_speed: bool = False
    #: The driver declares post-copy recovery (as libvirt does on QEMU >= 8.2).
    post_copy_recovery: bool = True

    def plane_of(self, addr: str) -> Optional[str]:
        """The plane of address ``addr``; IPv6 zone ids are ignored on both sides."""
        bare = addr.split("%", 1)[0]
        for known, plane in self.addresses.items():
            if known.split("%", 1)[0] == bare:
                return plane
        return None

    def running(self, name: str) -> bool:
        guest = self.guests.get(name)
        return guest is not None and guest.state in ("running", "paused")


@dataclasses.dataclass
class Transfer:
    instance: str
    source: FakeHost
    dest: FakeHost
    plane: str
    data_host: str
    control_host: str
    settings: "settings_mod.MigrationSettings"
    block: bool
    #: The destination's copy is started paused after the switch-over (migplane's
    #: handover, libvirt's VIR_MIGRATE_PAUSED); libvirt refuses it with post-copy.
    handover: bool = False
    state: str = "running"
    elapsed: float = 0.0
    max_downtime_ms: int = 30
    memory_remaining: float = 0.0
    pass_remaining: float = 0.0
    memory_processed: float = 0.0
    disk_remaining: float = 0.0
    disk_processed: float = 0.0
    iteration: int = 1
    postcopy: bool = False
    downtime_ms: Optional[int] = None
    error: Optional[str] = None
    #: Auto-converge, as QEMU does it: vCPU throttle in percent, and how many
    #: passes in a row dirtied more than half of what they sent.
    throttle_pct: int = 0
    dirty_high: int = 0
    pass_size: float = 0.0
    pass_dirtied: float = 0.0
    #: Post-copy recovery (libvirt >= 8.5): seconds without progress before the
    #: stream counts as stalled, and seconds of retries before giving up.
    stall_timeout: float = 10.0
    recovery_timeout: float = 300.0
    stalled_s: float = 0.0
    recovering_since: Optional[float] = None
    #: How many times the stream broke, and was resumed.
    breaks: int = 0
    resumes: int = 0


class FakeWorld:
    """Hosts joined by a management and a migration plane, with a shared clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.clock = SimClock(self)
        self.hosts: Dict[str, FakeHost] = {}
        self.transfers: Dict[str, Transfer] = {}
        self.history: List[Transfer] = []
        self.faults: Dict[Tuple[str, str], Exception] = {}
        self.timers: List[Tuple[float, Callable[[], object]]] = []
        self._boot_ids = itertools.count(1)
        self.lock = threading.RLock()

    # -- building the world ------------------------------------------------

    def add_host(self, name: str, mgmt: Union[str, Iterable[str]],
                 mig: Union[str, Iterable[str]] = (), mgmt_bw_mib: float = 100,
                 mig_bw_mib: float = 100, **kwargs: Any) -> FakeHost:
        """Add a host; ``mgmt``/``mig`` are an address or a list of addresses."""
        addrs: Dict[str, str] = {}
        for plane, values in ((MANAGEMENT, mgmt), (MIGRATION, mig)):
            for value in ([values] if isinstance(values, str) else values):
                addrs[address.parse_host(value, allow_port=False).host] = plane
        host = FakeHost(name=name, addresses=addrs,
                        bandwidth={MANAGEMENT: mgmt_bw_mib * units.MiB,
                                   MIGRATION: mig_bw_mib * units.MiB},
                        **kwargs)
        self.hosts[name] = host
        return host

    def add_guest(self, host: str, name: str, memory_mib: int = 256, dirty_mib_s: float = 0,
                  disk_mib: int = 0, working_set_mib: Optional[float] = None) -> FakeGuest:
        guest = FakeGuest(name=name, memory_bytes=memory_mib * units.MiB,
                          dirty_rate=int(dirty_mib_s * units.MiB), disk_bytes=disk_mib * units.MiB,
                          boot_id="boot-%04d" % next(self._boot_ids),
                          working_set_bytes=(None if working_set_mib is None
                                             else int(working_set_mib * units.MiB)))
        self.hosts[host].guests[name] = guest
        if disk_mib:
            self.hosts[host].disks[name] = disk_mib * units.MiB
        return guest

    # -- faults --------------------------------------------------------------

    def fail(self, host: str, step: str, error: Optional[Exception] = None) -> None:
        """Make ``step`` (a driver method name) raise on ``host``, once."""
        self.faults[(host, step)] = error or RuntimeError(
            "injected fault in %s on %s" % (step, host))

    def take_fault(self, host: str, step: str) -> Optional[Exception]:
        return self.faults.pop((host, step), None)

    def at(self, seconds: float, action: Callable[[], object]) -> None:
        """Run ``action()`` once simulated time reaches ``seconds``."""
        self.timers.append((seconds, action))

    def set_link(self, host: str, plane: str, up: bool) -> None:
        self.hosts[host].link_up[plane] = up

    def cut_off(self, host: str, answers: bool = False) -> None:
        """The flow cannot ask ``host`` (its agent or management link is down)."""
        self.hosts[host].answers = answers

    def kill_daemon(self, host: str) -> None:
        """The host's hypervisor daemon dies: its in-flight transfers fail, or,
        in post-copy, lose their control connection and wait to be recovered."""
        self.hosts[host].daemon_alive = False
        for transfer in self.transfers.values():
            if transfer.state == "running" and host in (transfer.source.name,
                                                        transfer.dest.name):
                if transfer.postcopy:
                    self.break_postcopy(transfer, "the control connection to %s's "
                                        "daemon was lost" % host)
                    continue
                transfer.state = "failed"
                transfer.error = "Unable to read from monitor: Connection reset by peer"
                if host == transfer.source.name:  # the destination cleans up alone
                    transfer.dest.guests.pop(transfer.instance, None)

    def restart_daemon(self, host: str) -> None:
        """Like libvirtd on restart: incoming guests of unfinished migrations go."""
        h = self.hosts[host]
        h.daemon_alive = True
        for name in [n for n, g in h.guests.items() if g.state == "incoming"]:
            del h.guests[name]

    # -- queries -------------------------------------------------------------

    def resolve(self, name: str) -> Tuple[Optional[FakeHost], Optional[str]]:
        """The host a name or address designates, and the plane it is on."""
        for host in self.hosts.values():
            if name == host.name:
                return host, MANAGEMENT
            plane = host.plane_of(name)
            if plane:
                return host, plane
        return None, None

    def where(self, instance: str) -> List[str]:
        """Names of the hosts on which ``instance`` runs (or is paused)."""
        return sorted(h.name for h in self.hosts.values() if h.running(instance))

    def defined_on(self, instance: str) -> List[str]:
        return sorted(h.name for h in self.hosts.values() if instance in h.guests)

    def plane_bytes(self) -> Dict[str, int]:
        """Bytes each plane carried, over all hosts."""
        total = {p: 0 for p in PLANES}
        for host in self.hosts.values():
            for plane, sent in host.bytes_sent.items():
                total[plane] += int(sent)
        return total

    # -- time ------------------------------------------------------------------

    def step(self, dt: float) -> None:
        with self.lock:
            now = self.clock.now()
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
        # Outside the lock: an action may run a flow, whose driver calls run in
        # worker threads (core.deadlines) and take the lock there.
        for _, action in due:
            action()
        with self.lock:
            for host in self.hosts.values():
                for guest in host.guests.values():
                    if guest.state == "running":
                        guest.ticks += 1 if dt > 0 else 0
                        if guest.dirty_rate:
                            guest.generation += 1
            for transfer in list(self.transfers.values()):
                if transfer.state == "running":
                    self._advance(transfer, dt)
                elif transfer.state == RECOVERING:
                    self._recover(transfer, dt)

    def _rate(self, t: Transfer) -> float:
        rate = min(t.source.bandwidth[t.plane], t.dest.bandwidth[t.plane])
        if t.settings.bandwidth_mib:
            rate = min(rate, t.settings.bandwidth_mib * units.MiB)
        up = t.source.link_up[t.plane] and t.dest.link_up[t.plane]
        return rate if up else 0.0

    def _advance(self, t: Transfer, dt: float) -> None:
        t.elapsed += dt
        t.source.bytes_sent[MANAGEMENT] += CONTROL_BYTES_PER_S * dt
        rate = self._rate(t)
        budget = rate * dt
        guest = t.source.guests[t.instance]
        if t.disk_remaining > 0:
            sent = min(budget, t.disk_remaining)
            t.disk_remaining -= sent
            t.disk_processed += sent
            budget -= sent
            t.source.bytes_sent[t.plane] += sent
        if t.postcopy and budget <= 0:
            t.stalled_s += dt
            if t.stalled_s >= t.stall_timeout:
                self.break_postcopy(t, "no post-copy progress for %.0f s" % t.stalled_s)
            return
        t.stalled_s = 0.0
        if t.disk_remaining > 0 or budget <= 0:
            return
        sent = min(budget, t.memory_remaining)
        t.memory_remaining -= sent
        t.pass_remaining -= sent
        t.memory_processed += sent
        t.source.bytes_sent[t.plane] += sent
        if guest.state == "running" and not t.postcopy:
            before = t.memory_remaining
            cap = min(guest.memory_bytes, max(t.pass_remaining, 0.0) + guest.working_set)
            t.memory_remaining = max(before, min(
                cap, t.memory_remaining + self.dirty_rate(t, guest) * dt))
            t.pass_dirtied += t.memory_remaining - before
        if t.pass_remaining <= 0:
            self._end_pass(t)
        if t.postcopy:
            if t.memory_remaining <= 0:
                self._complete(t, downtime_ms=t.downtime_ms or 0)
            return
        downtime = 1000.0 * t.memory_remaining / rate
        if downtime <= t.max_downtime_ms or t.memory_remaining <= 0:
            t.source.bytes_sent[t.plane] += t.memory_remaining
            t.memory_processed += t.memory_remaining
            t.memory_remaining = 0
            self._complete(t, downtime_ms=int(downtime) + 1)

    @staticmethod
    def dirty_rate(t: Transfer, guest: FakeGuest) -> float:
        """The guest's dirty rate, slowed by auto-converge's throttle."""
        return guest.dirty_rate * (1.0 - t.throttle_pct / 100.0)

    def _end_pass(self, t: Transfer) -> None:
        """A pre-copy pass ends; auto-converge reacts as QEMU's does."""
        if t.settings.auto_converge and t.pass_dirtied > 0.5 * t.pass_size:
            t.dirty_high += 1
            if t.dirty_high >= 2:
                t.dirty_high = 0
                initial = t.settings.auto_converge_initial or 20
                increment = t.settings.auto_converge_increment or 10
                t.throttle_pct = initial if not t.throttle_pct else min(
                    99, t.throttle_pct + increment)
        t.iteration += 1
        t.pass_remaining = t.pass_size = t.memory_remaining
        t.pass_dirtied = 0.0

    def switch_to_postcopy(self, t: Transfer) -> None:
        """Post-copy: the guest runs on the destination from now on."""
        t.postcopy = True
        t.downtime_ms = 1 + int(1000.0 * min(t.memory_remaining, 4 * units.MiB)
                                / max(self._rate(t), 1.0))
        incoming = t.dest.guests[t.instance]
        incoming.state, incoming.reason = "running", "postcopy"
        t.source.guests[t.instance].state = "paused"
        t.source.guests[t.instance].reason = "postcopy"

    # -- post-copy recovery, as libvirt >= 8.5 and QEMU do it ----------------------------

    def break_postcopy(self, t: Transfer,
                       reason: str = "the migration stream broke (connection reset)") -> None:
        """The post-copy stream breaks: source paused (postcopy-failed), the
        destination keeps running without its missing pages; the driver
        recovers it (paused stalled streams first)."""
        if not t.postcopy or t.state != "running":
            return
        t.state = RECOVERING
        t.error = reason
        t.breaks += 1
        t.stalled_s = 0.0
        t.recovering_since = t.elapsed

    def _recover(self, t: Transfer, dt: float) -> None:
        """Retry the resume while the recovery deadline lasts: it succeeds once the
        destination's daemon (the control connection) and the link answer."""
        t.elapsed += dt
        up = (t.source.link_up[t.plane] and t.dest.link_up[t.plane]
              and t.source.link_up[MANAGEMENT] and t.dest.link_up[MANAGEMENT]
              and t.dest.daemon_alive and t.source.daemon_alive)
        if up:
            t.state = "running"
            t.resumes += 1
            t.recovering_since = None
            return
        # break_postcopy and resume_postcopy set recovering_since with RECOVERING
        if t.elapsed - cast(float, t.recovering_since) >= t.recovery_timeout:
            t.state = PAUSED
            t.error = "%s; not recovered within %.0f s" % (t.error, t.recovery_timeout)

    def resume_postcopy(self, t: Transfer) -> None:
        """An operator resumes a paused post-copy: recovery starts over."""
        t.state = RECOVERING
        t.recovering_since = t.elapsed

    def _complete(self, t: Transfer, downtime_ms: int) -> None:
        source_guest = t.source.guests[t.instance]
        incoming = t.dest.guests[t.instance]
        incoming.boot_id, incoming.ticks, incoming.generation = source_guest.snapshot()
        if t.handover and not t.postcopy:
            incoming.state, incoming.reason = "paused", "held"
        else:
            incoming.state, incoming.reason = "running", None
        incoming.persistent = False
        if t.block:
            t.dest.disks[t.instance] = t.source.disks.get(t.instance, 0)
        t.downtime_ms = downtime_ms
        control = MANAGEMENT if t.plane == MIGRATION else t.plane
        if not t.postcopy and not (t.source.link_up[control] and t.dest.link_up[control]):
            # The destination finished, but the source never heard of it: its
            # libvirt cancels the confirm phase and resumes its own copy.
            source_guest.state, source_guest.reason = "running", "migration-canceled"
            t.state = "failed"
            t.error = "internal error: client socket is closed"
            return
        source_guest.state, source_guest.reason = "shutoff", None
        t.state = "completed"


def get_world(name: str) -> FakeWorld:
    """The world called ``name`` (created on first use), shared by this process.

    Like oslo.messaging's fake exchanges, worlds are per process so that two
    fake drivers, built by stevedore from two configurations, see each other.
    """
    with _worlds_lock:
        if name not in _worlds:
            _worlds[name] = FakeWorld(name)
        return _worlds[name]


def reset_world(name: str) -> None:
    """Forget the world called ``name`` (tests call this in their fixtures)."""
    with _worlds_lock:
        _worlds.pop(name, None)
