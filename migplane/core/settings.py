"""Frozen settings read from configuration, validated as a whole.

oslo.config checks each option alone; the rules that span options (tunnelled
with native TLS, a URI template without ``%s``) live here, and :func:`load`
reads every option eagerly so that a bad configuration fails when it is
loaded, with an error naming the option and the value, not halfway through a
migration.
"""

import dataclasses
import ipaddress
import re
import socket
from typing import Optional

from oslo_config import cfg

from migplane.core import address
from migplane.core import exception
from migplane.core import opts

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*\Z")
TIMEOUT_ACTIONS = ("abort", "force_complete")
STRATEGIES = ("adaptive", "static")


@dataclasses.dataclass(frozen=True)
class MigrationSettings:
    """How the source host migrates: the inputs of the URI policy and the monitor."""

    scheme: Optional[str] = None
    uri_template: Optional[str] = None
    tunnelled: bool = False
    native_tls: bool = False
    bandwidth_mib: int = 0
    downtime_ms: int = 500
    downtime_steps: int = 10
    downtime_delay: int = 75
    completion_timeout: int = 800
    timeout_action: str = "abort"
    #: None (unset): the adaptive strategy may use it, the static one not.
    permit_post_copy: Optional[bool] = None
    permit_auto_converge: Optional[bool] = None
    parallel_connections: int = 1
    poll_interval: float = 0.5
    strategy: str = "adaptive"
    dirty_rate_window: int = 1
    #: QEMU's cpu-throttle-initial/increment for auto-converge; None: its defaults.
    auto_converge_initial: Optional[int] = None
    auto_converge_increment: Optional[int] = None

    def __post_init__(self):
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
        if self.timeout_action not in TIMEOUT_ACTIONS:
            raise exception.ConfigError(
                group=opts.GROUP, option="timeout_action", value=self.timeout_action,
                reason="must be one of %s" % ", ".join(TIMEOUT_ACTIONS))
        if self.strategy not in STRATEGIES:
            raise exception.ConfigError(
                group=opts.GROUP, option="strategy", value=self.strategy,
                reason="must be one of %s" % ", ".join(STRATEGIES))
        for name in ("auto_converge_initial", "auto_converge_increment"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 99:
                raise exception.ConfigError(group=opts.GROUP, option=name, value=value,
                                            reason="a percentage from 1 to 99")
        for name, low in (("bandwidth_mib", 0), ("completion_timeout", 0),
                          ("dirty_rate_window", 0),
                          ("downtime_ms", 100), ("downtime_steps", 3),
                          ("downtime_delay", 3), ("parallel_connections", 1)):
            if getattr(self, name) < low:
                raise exception.ConfigError(
                    group=opts.GROUP, option=name, value=getattr(self, name),
                    reason="must be at least %d" % low)

    @property
    def post_copy(self):
        """Post-copy is armed at the start (explicitly permitted, or by the plan)."""
        return bool(self.permit_post_copy)

    @property
    def auto_converge(self):
        """Auto-converge is armed at the start. In the static strategy post-copy
        wins over it, as in Nova; the adaptive plan arms both when it may
        escalate from one to the other."""
        if self.strategy == "static" and self.permit_post_copy:
            return False
        return bool(self.permit_auto_converge)

    def replace(self, **changes):
        """A copy with per-request overrides (e.g. a CLI's ``--bandwidth``)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """Who this host is and where it wants inbound migrations."""

    hostname: str
    my_live_migration_ip: Optional[str] = None
    inbound_cidr: Optional[ipaddress._BaseNetwork] = None

    def __post_init__(self):
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


def _get(conf, group, name):
    section = conf if group is None else conf[group]
    try:
        return section[name]
    except (cfg.Error, ValueError) as err:
        raise exception.ConfigError(
            group=group or "DEFAULT", option=name, value=_raw(err), reason=str(err))


def _raw(err):
    """oslo.config does not keep the raw text; our types put it after 'got', its
    choices and booleans after 'found' and 'value'."""
    match = re.search(r"(?:got|found|value|[Ii]nvalid address) ('[^']*'|\"[^\"]*\")",
                      str(err))
    return match.group(1).strip("'\"") if match else "<unparsable>"


def _cidr(value):
    if value is None:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as err:
        raise exception.ConfigError(group=opts.GROUP, option="inbound_cidr",
                                    value=value, reason=str(err))


def load(conf):
    """Register the core options on ``conf`` and return validated :class:`Settings`."""
    opts.register_opts(conf)

    def lm(name):
        return _get(conf, opts.GROUP, name)

    host = HostSettings(
        hostname=lm("hostname") or socket.gethostname(),
        my_live_migration_ip=_get(conf, None, "my_live_migration_ip"),
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
        strategy=lm("strategy"),
        dirty_rate_window=lm("dirty_rate_window"),
    )
    concurrency = ConcurrencySettings(
        max_concurrent=lm("max_concurrent"),
        when_busy=lm("when_busy"),
        busy_timeout=lm("busy_timeout"),
    )
    return Settings(driver=lm("driver"), host=host, migration=migration,
                    concurrency=concurrency)
