"""Frozen settings read from configuration, validated as a whole.

oslo.config checks each option alone; the rules that span options (tunnelled
with native TLS, a URI template without ``%s``) live here, and :func:`load`
reads every option eagerly so that a bad configuration fails when it is
loaded, with an error naming the option and the value, not halfway through a
migration.
"""

import dataclasses
import ipaddress
import logging
import re
import socket
from typing import Any
from typing import ClassVar
from typing import Dict
from typing import Mapping
from typing import Optional
from typing import Tuple
from typing import Union

from oslo_config import cfg

from migplane.core import address
from migplane.core import exception
from migplane.core import opts
from migplane.core import versioned

LOG = logging.getLogger(__name__)

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*\Z")
TIMEOUT_ACTIONS = ("abort", "force_complete")
STRATEGIES = ("adaptive", "static")
CONTROL_MANAGEMENT = "management"
CONTROL_MIGRATION = "migration"
CONTROL_PLANES = (CONTROL_MANAGEMENT, CONTROL_MIGRATION)
STEP_DEADLINE_MIN = opts.STEP_DEADLINE_MIN


_f = versioned.field
_bool = versioned.check_bool
_int = versioned.check_int
_str = versioned.check_optional_str


def _str_tuple(value: Any) -> Optional[Tuple[str, ...]]:
    return None if value is None else versioned.check_str_tuple(value)


def _opt_bool(value: Any) -> Optional[bool]:
    return None if value is None else versioned.check_bool(value)


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else versioned.check_int(value)


@dataclasses.dataclass(frozen=True)
class MigrationSettings(versioned.VersionedData):
    """How the source host migrates: the inputs of the URI policy and the monitor.

    Versioned like :class:`~migplane.core.migrate_data.MigrateData`, because
    agents send it (and per-migration overrides of it) to each other.
    """

    # Version 1.0: scheme ... poll_interval.
    # Version 1.1: Adds control_plane and monitor_interval (Nova parity).
    # Version 1.2: Adds migration_networks and management_networks (core.trust).
    # Version 1.3: Adds strategy, dirty_rate_window, auto_converge_initial and
    #              auto_converge_increment (convergence); permit_post_copy and
    #              permit_auto_converge may be None (unset: the strategy decides).
    # Version 1.4: Adds max_parallel_connections, stream_rate_mib, permit_compression
    #              and compression (the strategy's choices of connections and
    #              compression).
    # Version 1.5: Adds step_deadline (core.deadlines).
    # Version 1.6: Adds source_addresses (core.trust: never migrate to oneself).
    # Version 1.7: Adds post_copy_min_gain (post-copy only when it pays).
    VERSION = "1.7"

    scheme: Optional[str] = _f("1.0", _str)
    uri_template: Optional[str] = _f("1.0", _str)
    tunnelled: bool = _f("1.0", _bool, default=False)
    native_tls: bool = _f("1.0", _bool, default=False)
    bandwidth_mib: int = _f("1.0", _int, default=0)
    downtime_ms: int = _f("1.0", _int, default=500)
    downtime_steps: int = _f("1.0", _int, default=10)
    downtime_delay: int = _f("1.0", _int, default=75)
    completion_timeout: int = _f("1.0", _int, default=800)
    timeout_action: str = _f("1.0", versioned.check_str, default="abort")
    #: None (unset): the adaptive strategy may use it, the static one not.
    permit_post_copy: Optional[bool] = _f("1.0", _opt_bool)
    permit_auto_converge: Optional[bool] = _f("1.0", _opt_bool)
    parallel_connections: int = _f("1.0", _int, default=1)
    poll_interval: float = _f("1.0", versioned.check_number, default=0.5)
    #: Where the control connection goes when the destination has an inbound address.
    control_plane: str = _f("1.1", versioned.check_str, default=CONTROL_MANAGEMENT)
    #: Seconds between two progress records kept for operators.
    monitor_interval: int = _f("1.1", _int, default=5)
    #: CIDRs the destination's inbound and listen addresses must lie in (core.trust).
    migration_networks: Optional[Tuple[str, ...]] = _f("1.2", _str_tuple)
    #: CIDRs they must never lie in; filled by the agent from its own interfaces.
    management_networks: Tuple[str, ...] = _f("1.2", versioned.check_str_tuple, default=())
    strategy: str = _f("1.3", versioned.check_str, default="adaptive")
    #: Seconds of the dirty-rate sample taken before the move.
    dirty_rate_window: int = _f("1.3", _int, default=1)
    #: QEMU's cpu-throttle-initial/increment for auto-converge; None: its defaults.
    auto_converge_initial: Optional[int] = _f("1.3", _opt_int)
    auto_converge_increment: Optional[int] = _f("1.3", _opt_int)
    #: Most connections the adaptive strategy may choose by itself (1: never).
    max_parallel_connections: int = _f("1.4", _int, default=1)
    #: MiB/s one connection can push, whatever the link.
    stream_rate_mib: int = _f("1.4", _int, default=128)
    #: The adaptive strategy may arm XBZRLE compression.
    permit_compression: bool = _f("1.4", _bool, default=False)
    #: Compression methods the plan arms (on top of a driver's own configuration).
    compression: Tuple[str, ...] = _f("1.4", versioned.check_str_tuple, default=())
    #: Seconds the flow waits for one driver step before it stops waiting.
    step_deadline: float = _f("1.5", versioned.check_number, default=120.0)
    #: The source host's own addresses: the bulk stream never goes to one of them.
    source_addresses: Tuple[str, ...] = _f("1.6", versioned.check_str_tuple, default=())
    #: With permit_post_copy unset, post-copy only when pre-copy is predicted not
    #: to converge or to take at least this many times as long.
    post_copy_min_gain: float = _f("1.7", versioned.check_number, default=2.0)

    def _validate(self) -> None:
        if self.scheme is not None and not _SCHEME.match(self.scheme):
            raise exception.ConfigError(
                group=opts.GROUP, option="scheme", value=self.scheme,
                reason="a URI scheme is letters, digits, '+', '-' and '.'")
        if self.uri_template is not None and self.uri_template.count("%s") != 1:
            raise exception.ConfigError(
                group=opts.GROUP, option="uri", value=self.uri_template,
                reason="the template must contain '%s' exactly once")
        if self.tunnelled and self.native_tls:
            raise exception.ConflictingOptions(
                options="[live_migration] tunnelled and with_native_tls",
                reason="a tunnelled migration is carried by the control connection "
                       "and cannot also use the hypervisor's native TLS")
        for name in ("migration_networks", "management_networks"):
            parsed = address.parse_networks(getattr(self, name), option=name)
            if parsed is not None:
                object.__setattr__(self, name, tuple(str(n) for n in parsed))
        if self.timeout_action not in TIMEOUT_ACTIONS:
            raise exception.ConfigError(
                group=opts.GROUP, option="timeout_action", value=self.timeout_action,
                reason="must be one of %s" % ", ".join(TIMEOUT_ACTIONS))
        if self.control_plane not in CONTROL_PLANES:
            raise exception.ConfigError(
                group=opts.GROUP, option="control_plane", value=self.control_plane,
                reason="must be one of %s" % ", ".join(CONTROL_PLANES))
        if self.strategy not in STRATEGIES:
            raise exception.ConfigError(
                group=opts.GROUP, option="strategy", value=self.strategy,
                reason="must be one of %s" % ", ".join(STRATEGIES))
        for name in ("auto_converge_initial", "auto_converge_increment"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 99:
                raise exception.ConfigError(group=opts.GROUP, option=name, value=value,
                                            reason="a percentage from 1 to 99")
        if self.post_copy_min_gain < 1.0:
            raise exception.ConfigError(
                group=opts.GROUP, option="post_copy_min_gain",
                value=self.post_copy_min_gain,
                reason="must be at least 1.0 (post-copy is never worth it when slower)")
        for name, low in (("bandwidth_mib", 0), ("completion_timeout", 0),
                          ("monitor_interval", 0), ("dirty_rate_window", 0),
                          ("downtime_ms", 100), ("downtime_steps", 3),
                          ("downtime_delay", 3), ("parallel_connections", 1),
                          ("max_parallel_connections", 1), ("stream_rate_mib", 1)):
            if getattr(self, name) < low:
                raise exception.ConfigError(
                    group=opts.GROUP, option=name, value=getattr(self, name),
                    reason="must be at least %d" % low)
        for name, high in opts.MAXIMA.items():
            if getattr(self, name) > high:
                raise exception.ConfigError(
                    group=opts.GROUP, option=name, value=getattr(self, name),
                    reason="must be at most %d" % high)

        if self.step_deadline < STEP_DEADLINE_MIN:
            raise exception.ConfigError(
                group=opts.GROUP, option="step_deadline", value=self.step_deadline,
                reason="must be at least %g" % STEP_DEADLINE_MIN)

    @property
    def post_copy(self) -> bool:
        """Post-copy is armed at the start (explicitly permitted, or by the plan)."""
        return bool(self.permit_post_copy)

    @property
    def auto_converge(self) -> bool:
        """Auto-converge is armed at the start. In the static strategy post-copy
        wins over it, as in Nova; the adaptive plan arms both when it may
        escalate from one to the other."""
        if self.strategy == "static" and self.permit_post_copy:
            return False
        return bool(self.permit_auto_converge)

    def replace(self, **changes: Any) -> "MigrationSettings":
        """A copy with per-request overrides (e.g. a CLI's ``--bandwidth``)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise self._invalid(unknown[0], changes[unknown[0]], "not a migration setting")
        return dataclasses.replace(self, **changes)

    # -- per-migration overrides on the wire --------------------------------------

    OVERRIDES: ClassVar[str] = "MigrationSettingsOverrides"

    @classmethod
    def overrides_to_primitive(cls, overrides: Mapping[str, Any],
                               target_version: Optional[str] = None) -> Dict[str, Any]:
        """Per-migration overrides (a subset of the fields) as versioned primitives.

        :raises IncompatibleVersion: an override the target version does not know
            (sending it would silently change nothing on that peer).
        """
        version = target_version or cls.VERSION
        target = cls._check_version(version)
        since = {f.name: versioned.parse_version(versioned._since(f))
                 for f in dataclasses.fields(cls)}
        data = {}
        for name, value in overrides.items():
            if name not in since:
                raise cls._invalid(name, value, "not a migration setting")
            if since[name] > target:
                raise exception.IncompatibleVersion(
                    name="%s field %r" % (cls.OVERRIDES, name), version=version,
                    supported="%d.%d and later for this field" % since[name])
            data[name] = versioned.thaw(value)
        return {versioned.NAME_KEY: cls.OVERRIDES, versioned.VERSION_KEY: version,
                versioned.DATA_KEY: data}

    @classmethod
    def overrides_from_primitive(cls, primitive: Any) -> Dict[str, Any]:
        """The overrides a peer sent, each checked as the field it overrides.

        As for every versioned object, an override a newer minor version added
        is ignored (logged as a warning; the agent's record lists the overrides
        it applied, and a sender that knows the peer's version refuses to send
        one it cannot apply: :meth:`overrides_to_primitive`); an unknown one
        in this or an older version is refused.
        """
        if not isinstance(primitive, dict):
            raise cls._invalid("<overrides>", primitive, "expected a JSON object")
        try:
            versioned.check_bounds(primitive)
        except ValueError as err:
            raise cls._invalid("<overrides>", primitive, str(err))
        if primitive.get(versioned.NAME_KEY) != cls.OVERRIDES:
            raise cls._invalid(versioned.NAME_KEY, primitive.get(versioned.NAME_KEY),
                               "expected %r" % cls.OVERRIDES)
        theirs = cls._check_version(primitive.get(versioned.VERSION_KEY))
        data = primitive.get(versioned.DATA_KEY)
        if not isinstance(data, dict):
            raise cls._invalid(versioned.DATA_KEY, data, "expected a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        checked = {}
        for name, value in data.items():
            if name not in fields and theirs > versioned.parse_version(cls.VERSION):
                LOG.warning("Ignoring the override %s of %s %s from a newer peer: this "
                            "host speaks %s", exception.excerpt(name), cls.OVERRIDES,
                            primitive[versioned.VERSION_KEY], cls.VERSION)
                continue
            if name not in fields:
                raise cls._invalid(name, value, "unknown setting: this host cannot "
                                   "apply it (version %s)" % cls.VERSION)
            try:
                checked[name] = versioned._check(fields[name])(value)
            except ValueError as err:
                raise cls._invalid(name, value, str(err))
        return checked


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """Who this host is and where it wants inbound migrations."""

    hostname: str
    my_live_migration_ip: Optional[str] = None
    inbound_cidr: Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = None

    def __post_init__(self) -> None:
        try:
            address.parse_host(self.hostname, field="hostname", allow_port=False)
        except exception.InvalidAddress as err:
            raise exception.ConfigError(group=opts.GROUP, option="hostname",
                                        value=self.hostname, reason=err.kwargs["reason"])


@dataclasses.dataclass(frozen=True)
class ConcurrencySettings:
    max_concurrent: int = 1
    when_busy: str = "wait"
    busy_timeout: int = 3600


@dataclasses.dataclass(frozen=True)
class Settings:
    driver: str
    host: HostSettings
    migration: MigrationSettings
    concurrency: ConcurrencySettings


def _get(conf: cfg.ConfigOpts, group: Optional[str], name: str) -> Any:
    section = conf if group is None else conf[group]
    try:
        return section[name]
    except (cfg.Error, ValueError) as err:
        raise exception.ConfigError(
            group=group or "DEFAULT", option=name, value=_raw(err), reason=str(err))


def _raw(err: Exception) -> str:
    """oslo.config does not keep the raw text; our types put it after 'got', its
    choices and booleans after 'found' and 'value'."""
    match = re.search(r"(?:got|found|value|[Ii]nvalid address) ('[^']*'|\"[^\"]*\")",
                      str(err))
    return match.group(1).strip("'\"") if match else "<unparsable>"


def _cidr(value: Optional[str]
          ) -> Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    if value is None:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as err:
        raise exception.ConfigError(group=opts.GROUP, option="inbound_cidr",
                                    value=value, reason=str(err))


def _opt(group: str, name: str) -> cfg.Opt:
    for opt_group, group_opts in opts.list_opts():
        for opt in group_opts:
            if opt_group == group and opt.dest == name:
                return opt
    raise KeyError(name)


def _is_default(conf: cfg.ConfigOpts, group: Optional[str], name: str) -> bool:
    where = conf.get_location(name, group)  # None: unset, no default either
    return where is None or where.location == cfg.Locations.opt_default


def _from_stack(conf: cfg.ConfigOpts, group: str, name: str, value: Any) -> Any:
    """Our option's value, or the host stack's own Nova option when ours is unset.

    When the stack registered e.g. ``[libvirt] live_migration_bandwidth``
    itself, ours is registered without that alias (see ``opts.register_opts``)
    and the stack's value is read here, through our type, so that it is
    checked as strictly as ours.
    """
    alias = opts.nova_aliases().get((group, name))
    if alias is None or not opts.registered(conf, *alias):
        return value
    if not _is_default(conf, None if group == "DEFAULT" else group, name):
        return value
    nova_group, nova_name = alias
    nova_section = None if nova_group == "DEFAULT" else nova_group
    if _is_default(conf, nova_section, nova_name):
        return value
    nova_value = _get(conf, nova_section, nova_name)
    if nova_value is None or nova_value == "":
        return value
    try:
        return _opt(group, name).type(nova_value)
    except ValueError as err:
        raise exception.ConfigError(group=nova_group, option=nova_name, value=nova_value,
                                    reason=str(err))


def _stack_host(conf: cfg.ConfigOpts) -> Optional[str]:
    """The host stack's own ``[DEFAULT] host`` (Nova's service host name), if any."""
    if not opts.registered(conf, "DEFAULT", "host"):
        return None
    return _get(conf, None, "host") or None


def load(conf: cfg.ConfigOpts) -> Settings:
    """Register the core options on ``conf`` and return validated :class:`Settings`."""
    opts.register_opts(conf)

    def lm(name: str) -> Any:
        return _from_stack(conf, opts.GROUP, name, _get(conf, opts.GROUP, name))

    my_ip = _from_stack(conf, "DEFAULT", "my_live_migration_ip",
                        _get(conf, None, "my_live_migration_ip"))
    host = HostSettings(
        hostname=lm("hostname") or _stack_host(conf) or socket.gethostname(),
        my_live_migration_ip=my_ip,
        inbound_cidr=_cidr(lm("inbound_cidr")),
    )
    migration = MigrationSettings(
        scheme=lm("scheme"),
        uri_template=lm("uri"),
        tunnelled=lm("tunnelled"),
        native_tls=lm("with_native_tls"),
        bandwidth_mib=lm("bandwidth"),
        downtime_ms=lm("downtime"),
        downtime_steps=lm("downtime_steps"),
        downtime_delay=lm("downtime_delay"),
        completion_timeout=lm("completion_timeout"),
        timeout_action=lm("timeout_action"),
        permit_post_copy=lm("permit_post_copy"),
        permit_auto_converge=lm("permit_auto_converge"),
        parallel_connections=lm("parallel_connections"),
        poll_interval=lm("poll_interval"),
        control_plane=lm("control_plane"),
        monitor_interval=lm("monitor_interval"),
        migration_networks=tuple(lm("migration_networks")) or None,
        strategy=lm("strategy"),
        dirty_rate_window=lm("dirty_rate_window"),
        max_parallel_connections=lm("max_parallel_connections"),
        stream_rate_mib=lm("stream_rate"),
        permit_compression=lm("permit_compression"),
        step_deadline=lm("step_deadline"),
        post_copy_min_gain=lm("post_copy_min_gain"),
    )
    concurrency = ConcurrencySettings(
        max_concurrent=lm("max_concurrent"),
        when_busy=lm("when_busy"),
        busy_timeout=lm("busy_timeout"),
    )
    return Settings(driver=lm("driver"), host=host, migration=migration,
                    concurrency=concurrency)
