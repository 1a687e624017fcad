"""Configuration options of the migplane core.

Nothing is registered at import time: callers (a host stack, the agent, a
test) pass their own ``ConfigOpts`` to :func:`register_opts`. Options keep
the meanings of Nova's ``[libvirt] live_migration_*`` options and accept those
spellings as deprecated aliases, so an existing Nova configuration file works
unchanged. Our own group is ``[live_migration]`` so that registering into a
``ConfigOpts`` that already holds a host stack's ``[libvirt]`` group never
collides with it.
"""

import copy
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from oslo_config import cfg
from oslo_config import types

from migplane.core import address

GROUP = "live_migration"
#: Smallest step deadline accepted, in seconds.
STEP_DEADLINE_MIN = 0.1


class MigrationAddress(types.ConfigType):
    """A host address usable as a migration target: IPv4, IPv6 (zone ok) or name.

    Stricter than oslo.config's ``HostAddress`` about what could be injected
    into a URI, and it accepts IPv6 link-local addresses with a zone id.
    """

    def __init__(self, type_name: str = "host address") -> None:
        super().__init__(type_name=type_name)

    def __call__(self, value: Any) -> Optional[str]:
        if value is None or value == "":
            return None
        try:
            # as written (brackets dropped), so URIs read as configured
            return address.parse_host(value, field="address", allow_port=False).written
        except Exception as err:  # InvalidAddress: oslo.config expects ValueError
            raise ValueError(str(err))

    def __repr__(self) -> str:
        return "MigrationAddress"

    def __eq__(self, other: object) -> bool:
        return self.__class__ == other.__class__

    def __hash__(self) -> int:
        return hash(self.__class__)

    def _formatter(self, value: Any) -> Any:
        return value


class _NamingValue:
    """Mixin: put the rejected value into the error, next to oslo's reason."""

    def __call__(self, value: Any) -> Any:
        try:
            return super().__call__(value)  # type: ignore[misc]  # the oslo type's
        except ValueError as err:
            raise ValueError("%s (got %r)" % (err, value))


class Integer(_NamingValue, types.Integer):
    pass


class Float(_NamingValue, types.Float):
    pass


#: Largest values of settings a request may also set (by their MigrationSettings
#: names): a number that large is a mistake or an attack, never a plan.
MAXIMA = {"completion_timeout": 1_000_000, "downtime_ms": 600_000}


def _int_opt(name: str, min: Optional[int] = None, max: Optional[int] = None,
             **kwargs: Any) -> cfg.Opt:
    return cfg.Opt(name, type=Integer(min=min, max=max), **kwargs)


def _float_opt(name: str, min: Optional[float] = None, **kwargs: Any) -> cfg.Opt:
    return cfg.Opt(name, type=Float(min=min), **kwargs)


def _libvirt(name: str) -> List[cfg.DeprecatedOpt]:
    return [cfg.DeprecatedOpt(name, group="libvirt")]


host_opts = [
    cfg.Opt(
        "my_live_migration_ip",
        type=MigrationAddress(),
        default=None,
        deprecated_opts=_libvirt("live_migration_inbound_addr"),
        help="The address on this host that other hosts send live migration data "
             "to, on the dedicated migration network: IPv4, IPv6 (a link-local "
             "address needs its zone, e.g. fe80::1%mig0) or a host name. When set on "
             "the destination host, it is put into the pre-migration data and the "
             "source sends the bulk memory and disk stream to it; the control "
             "connection (libvirt, RPC) stays on the management network and keeps "
             "addressing the destination by its host name. When unset, migration "
             "behaves exactly as before. See also [live_migration] inbound_cidr. "
             "Replaces Nova's [libvirt] live_migration_inbound_addr, read as a "
             "deprecated alias."),
]

migration_opts = [
    cfg.StrOpt(
        "driver",
        default="libvirt",
        help="Name of the migration driver to load from the 'migplane.drivers' "
             "entry point namespace, e.g. 'libvirt' or 'fake'."),
    cfg.StrOpt(
        "hostname",
        sample_default="<the system host name>",
        help="Name by which other hosts reach this host on the management network; "
             "it addresses the control connection. Defaults to the host stack's "
             "[DEFAULT] host when the stack registered that option (as Nova does), "
             "otherwise to the system host name."),
    cfg.StrOpt(
        "inbound_cidr",
        default=None,
        help="When [DEFAULT] my_live_migration_ip is unset, choose this host's "
             "inbound migration address as its only address inside this network, "
             "e.g. 198.51.100.0/24. Ignored when my_live_migration_ip is set."),
    cfg.StrOpt(
        "scheme",
        default=None,
        deprecated_opts=_libvirt("live_migration_scheme"),
        help="URI scheme of the control connection to the destination's hypervisor "
             "daemon, e.g. 'tcp', 'tls' or 'ssh', giving qemu+<scheme>://<host>/system. "
             "Defaults to 'tcp'."),
    cfg.StrOpt(
        "uri",
        default=None,
        deprecated_opts=_libvirt("live_migration_uri"),
        deprecated_for_removal=True,
        deprecated_reason="Use [live_migration] scheme and [DEFAULT] "
                          "my_live_migration_ip instead.",
        help="Template of the control connection URI; '%s' is replaced by the "
             "destination, e.g. 'qemu+ssh://%s/system'. Must contain '%s' exactly once."),
    cfg.BoolOpt(
        "tunnelled",
        default=False,
        deprecated_opts=_libvirt("live_migration_tunnelled"),
        help="Tunnel migration data through the hypervisor daemons' control "
             "connection instead of a direct data connection. With "
             "my_live_migration_ip set, the control connection then targets that "
             "address so the bulk stream still rides the migration network. "
             "Cannot be combined with with_native_tls."),
    cfg.BoolOpt(
        "with_native_tls",
        default=False,
        deprecated_opts=_libvirt("live_migration_with_native_tls"),
        help="Encrypt the migration data stream with the hypervisor's native TLS. "
             "When the data connection dials an IP address, the certificate is "
             "verified against the destination's host name."),
    _int_opt(
        "bandwidth",
        default=0,
        min=0,
        deprecated_opts=_libvirt("live_migration_bandwidth"),
        help="Maximum bandwidth of a migration, in MiB/s; 0 means unlimited."),
    _int_opt(
        "downtime",
        default=500,
        min=100,
        max=MAXIMA["downtime_ms"],
        deprecated_opts=_libvirt("live_migration_downtime"),
        help="Maximum permitted downtime, in milliseconds, reached through "
             "downtime_steps increments."),
    _int_opt(
        "downtime_steps",
        default=10,
        min=3,
        deprecated_opts=_libvirt("live_migration_downtime_steps"),
        help="Number of incremental steps to reach the maximum downtime."),
    _int_opt(
        "downtime_delay",
        default=75,
        min=3,
        deprecated_opts=_libvirt("live_migration_downtime_delay"),
        help="Seconds to wait between downtime steps, per GiB of guest RAM plus "
             "disk to transfer (at least 2 GiB counted)."),
    _int_opt(
        "completion_timeout",
        default=800,
        min=0,
        max=MAXIMA["completion_timeout"],
        mutable=True,
        deprecated_opts=_libvirt("live_migration_completion_timeout"),
        help="Seconds, per GiB of guest RAM plus disk to transfer (at least 2 GiB "
             "counted), to wait for a migration to complete before timeout_action "
             "is taken; 0 disables the timeout."),
    cfg.StrOpt(
        "timeout_action",
        default="abort",
        choices=[
            ("abort", "Cancel the migration; the guest keeps running on the source."),
            ("force_complete", "Switch to post-copy when permitted and supported, "
                               "otherwise pause the guest so that the copy completes."),
        ],
        mutable=True,
        deprecated_opts=_libvirt("live_migration_timeout_action"),
        help="What to do when completion_timeout expires."),
    cfg.BoolOpt(
        "permit_post_copy",
        default=None,
        deprecated_opts=_libvirt("live_migration_permit_post_copy"),
        help="Allow switching a migration to post-copy, where the guest runs on the "
             "destination before all its memory arrived: until the last page does, "
             "it needs both hosts, both QEMUs and the migration link (a broken link "
             "is recovered by the driver when it can, see [driver_libvirt] "
             "postcopy_recovery_timeout; a host or QEMU crash loses the guest). "
             "Unset (default): the adaptive strategy uses post-copy only when "
             "pre-copy with the escalations it may use (downtime within the budget, "
             "auto-converge) is predicted not to converge, or to take at "
             "least post_copy_min_gain times as long (with a driver that cannot "
             "recover a broken post-copy, only when it is predicted not to converge), "
             "and arms it at the start only when a measurement before the move "
             "says it may be needed (it samples the dirty rate for that; with "
             "nothing measured post-copy is not armed, and the switch-over keeps the "
             "paused handover); the static strategy never "
             "uses it (Nova's default). True: permitted to both, the adaptive "
             "strategy uses it whenever it is predicted faster (force-complete and "
             "timeout_action=force_complete use it; with strategy=static it takes "
             "precedence over permit_auto_converge, as in Nova). False: never. A "
             "migration that arms post-copy switches over through it (libvirt refuses "
             "the paused handover with post-copy), so that the source's copy is never "
             "resumed once the destination's ran."),
    _float_opt(
        "post_copy_min_gain",
        default=2.0,
        min=1.0,
        help="With permit_post_copy unset, the adaptive strategy chooses post-copy "
             "over a pre-copy that converges only when pre-copy (with auto-converge "
             "if permitted) is predicted to take at least this many times as long "
             "from now. Higher: post-copy (and its exposure to a host or QEMU crash) "
             "more rarely."),
    cfg.BoolOpt(
        "permit_auto_converge",
        default=None,
        deprecated_opts=_libvirt("live_migration_permit_auto_converge"),
        help="Allow the hypervisor to throttle the guest's CPUs so that a busy guest "
             "converges (QEMU's auto-converge). Unset: the adaptive strategy may use "
             "it, the static strategy does not (Nova's default). True: permitted to "
             "both (with strategy=static, not used when post-copy is permitted, as in "
             "Nova). False: never."),
    cfg.StrOpt(
        "strategy",
        default="adaptive",
        choices=[
            ("adaptive", "Measure the guest's dirty rate before moving it, choose the "
                         "method from it and the link rate, and escalate while it "
                         "moves (raise the downtime within the budget, auto-converge, "
                         "post-copy) as far as permit_auto_converge and "
                         "permit_post_copy allow."),
            ("static", "Nova's algorithm exactly: downtime steps, then the completion "
                       "timeout and timeout_action; nothing measured or escalated."),
        ],
        help="How a migration is planned and steered. The downtime option is the "
             "budget no strategy exceeds."),
    _int_opt(
        "dirty_rate_window",
        default=1,
        min=0,
        max=60,
        help="Seconds during which the adaptive strategy samples a guest's dirty rate "
             "before moving it (libvirt's virDomainStartDirtyRateCalc). 0, or a driver "
             "that cannot sample: the rate is learned from the first pre-copy pass."),
    _int_opt(
        "parallel_connections",
        default=1,
        min=1,
        max=255,
        deprecated_opts=_libvirt("live_migration_parallel_connections"),
        help="Number of parallel data connections of one migration; 1 disables "
             "parallel migration."),
    _int_opt(
        "max_parallel_connections",
        default=1,
        min=1,
        max=255,
        help="Most parallel data connections the adaptive strategy may open by itself "
             "(QEMU's multifd) when the link is faster than one connection can push "
             "(stream_rate) and the guest is predicted to converge without post-copy, "
             "which cannot run with them. 1: never chosen. A parallel_connections "
             "above 1 is the operator's own choice and is used as it is."),
    _int_opt(
        "stream_rate",
        default=128,
        min=1,
        help="MiB/s one migration connection can push, the limit of a single stream "
             "whatever the link (a CPU-bound copy loop; measured about 135 MB/s for "
             "one stream of a TCG guest over a veth pair). The adaptive strategy "
             "predicts with min(link, connections x stream_rate)."),
    cfg.BoolOpt(
        "permit_compression",
        default=False,
        help="Let the adaptive strategy arm XBZRLE compression (pages sent again are "
             "sent as deltas against the copy sent before) when the guest rewrites "
             "its working set at least once per pass and the driver declares it. "
             "It can only be armed at the start and acts from the second pass on; it "
             "costs source CPU and a page cache. False: only [driver_libvirt] "
             "compression, as configured."),
    _int_opt(
        "monitor_interval",
        default=5,
        min=0,
        deprecated_opts=_libvirt("live_migration_monitor_interval"),
        help="Seconds between two progress lines a running migration logs "
             "(0: none); its progress is still read every poll_interval. As Nova's "
             "interval between saves of migration statistics."),
    cfg.StrOpt(
        "control_plane",
        default="management",
        choices=[
            ("management", "The control connection addresses the destination's "
                           "host name, on the management network; only the data "
                           "goes to my_live_migration_ip (the split plane)."),
            ("migration", "The control connection addresses the destination's "
                          "my_live_migration_ip too, as Nova does with "
                          "live_migration_inbound_addr set and not tunnelled: for "
                          "deployments whose libvirtd listens on the migration "
                          "network only."),
        ],
        help="Which network the control connection to the destination's hypervisor "
             "daemon uses when the destination has an inbound migration address. "
             "Without one, it always addresses the host name; tunnelled, it always "
             "addresses the inbound address."),
    _int_opt(
        "max_concurrent",
        default=1,
        min=0,
        deprecated_opts=[cfg.DeprecatedOpt("max_concurrent_live_migrations",
                                           group="DEFAULT")],
        help="Maximum number of live migrations a host runs at once; 0 means "
             "unlimited. See when_busy."),
    cfg.StrOpt(
        "when_busy",
        default="wait",
        choices=[
            ("wait", "Queue the migration until a slot frees up or busy_timeout passes."),
            ("refuse", "Refuse the migration at once with a clear error."),
        ],
        help="What a host does with a migration beyond max_concurrent."),
    _int_opt(
        "busy_timeout",
        default=3600,
        min=0,
        help="Seconds a queued migration waits for a slot when when_busy=wait; "
             "0 waits forever."),
    cfg.ListOpt(
        "migration_networks",
        default=[],
        sample_default="<the networks of this host's migration interfaces>",
        help="Networks (CIDRs, e.g. 198.51.100.0/24,2001:db8:2::/64) a destination's "
             "inbound address and listen address must lie in before this host, as a "
             "migration's source, sends it any memory. The destination chooses that "
             "address, so it is checked like any peer answer: a name, an unspecified, "
             "loopback or multicast address, or one on a management network is always "
             "refused. Unset: the agent allows the networks of this host's own "
             "migration interfaces (those holding my_live_migration_ip or an address in "
             "inbound_cidr, with their prefix), never the management network; a library "
             "caller that sets nothing is restricted only by the fixed rules."),
    _float_opt(
        "step_deadline",
        default=120.0,
        min=STEP_DEADLINE_MIN,
        help="Seconds a migration waits for one step of a driver (a check, the "
             "preparation of the destination, one read of the progress, a rollback) "
             "before it stops waiting and fails with a timeout naming the step and the "
             "host. A step that hangs (a hypervisor daemon that stopped answering) "
             "cannot be cancelled: what it did is unknown, so the other host is then "
             "handled as unreachable. An abort requested while a step runs waits at "
             "most 2 seconds more for it."),
    _float_opt(
        "poll_interval",
        default=0.5,
        min=0.01,
        help="Seconds between two reads of a running migration's progress."),
]


def nova_aliases() -> Dict[Tuple[str, str], Tuple[str, str]]:
    """``{(our group, our name): (Nova's group, Nova's name)}`` for every option
    that accepts a Nova spelling ([libvirt] live_migration_*, ...)."""
    aliases: Dict[Tuple[str, str], Tuple[str, str]] = {}
    for group, group_opts in list_opts():
        for opt in group_opts:
            for old in opt.deprecated_opts:
                aliases[(group, opt.dest)] = (old.group or "DEFAULT", old.name or opt.dest)
    return aliases


def registered(conf: cfg.ConfigOpts, group: Optional[str], name: str) -> bool:
    """Whether someone (e.g. the host stack) registered option ``name`` in ``group``."""
    try:
        section = conf if group in (None, "DEFAULT") else conf[group]
        return name in section
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
        return False


def _without_registered_aliases(conf: cfg.ConfigOpts, opt: cfg.Opt) -> cfg.Opt:
    """``opt``, or a copy without the aliases the host stack registered itself.

    When the stack (Nova) registered ``[libvirt] live_migration_bandwidth``,
    that option is the stack's own, not a deprecated spelling of ours:
    aliasing it would make oslo.config warn operators to stop using an option
    their stack reads. :func:`migplane.core.settings.load` reads it instead.
    """
    keep = [old for old in opt.deprecated_opts
            if not registered(conf, old.group or "DEFAULT", old.name or opt.dest)]
    if len(keep) == len(opt.deprecated_opts):
        return opt
    variant = copy.copy(opt)
    variant.deprecated_opts = keep
    return variant


def _register(conf: cfg.ConfigOpts, group_opts: List[cfg.Opt],
              group: Optional[str] = None) -> None:
    for opt in group_opts:
        variant = _without_registered_aliases(conf, opt)
        try:
            conf.register_opt(variant, group=group)
        except cfg.DuplicateOptError:
            if variant is opt:
                raise  # someone else's option under our name: a real conflict
            # ours was registered before the stack's Nova options: keep it (an
            # unrelated option under our name still raises here)
            conf.register_opt(opt, group=group)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the core options on ``conf`` (idempotent).

    Register them after the host stack's own options (Nova registers its
    ``[libvirt]`` options first): then a Nova spelling the stack registered
    itself is read as the stack's option, without deprecation warnings.
    """
    _register(conf, host_opts)
    _register(conf, migration_opts, group=GROUP)


def list_opts() -> List[Tuple[str, List[cfg.Opt]]]:
    """The core's options for oslo-config-generator, as original objects."""
    return [
        ("DEFAULT", host_opts),
        (GROUP, migration_opts),
    ]
