"""The pre-migration data contract between destination and source.

The destination fills a :class:`MigrateData` in ``pre_live_migration()`` and
the source reads it to build the migration URIs. It crosses between hosts,
possibly between releases, so it is versioned (see ``versioned``): a
destination that sends no ``target_connect_addr`` (an older peer, or a host
with ``my_live_migration_ip`` unset) means "migrate exactly as before".
"""

import dataclasses
from typing import Any
from typing import Mapping
from typing import Optional
from typing import cast

from migplane.core import address
from migplane.core import exception
from migplane.core import versioned

INBOUND_FROM_OPTION = "option"
INBOUND_FROM_CIDR = "cidr"
INBOUND_NONE = "none"
INBOUND_SOURCES = (INBOUND_FROM_OPTION, INBOUND_FROM_CIDR, INBOUND_NONE)

#: Key of ``listen_addrs`` for the incoming migration socket.
LISTEN_MIGRATION = "migration"


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _parse(value: Any, allow_port: bool = True) -> address.HostAddress:
    """parse_host for a field check: a bad address is a ValueError (InvalidMigrateData)."""
    try:
        return address.parse_host(value, allow_port=allow_port)
    except exception.InvalidAddress as err:
        raise ValueError(err.kwargs["reason"])


def _optional_host(value: Any) -> Optional[str]:
    if value is None:
        return None
    _parse(value)
    return cast(str, value)  # parse_host accepted it, and it accepts only strings


def _optional_hostname(value: Any) -> Optional[str]:
    """A host name or IP, kept as the destination wrote it (``[::1]`` -> ``::1``):
    the legacy control URI must read exactly as the configured name."""
    if value is None:
        return None
    parsed = _parse(value, allow_port=False)
    return parsed.written if parsed.kind == address.IPV6 else value


def _inbound_source(value: Any) -> str:
    if value not in INBOUND_SOURCES:
        raise ValueError("expected one of %s" % ", ".join(INBOUND_SOURCES))
    return cast(str, value)  # it is one of INBOUND_SOURCES, which are strings


def _listen_addrs(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("expected an object mapping a purpose to an address")
    for purpose, addr in value.items():
        if not isinstance(purpose, str) or not purpose:
            raise ValueError("purpose %r is not a non-empty string" % (purpose,))
        try:
            _parse(addr, allow_port=False)
        except ValueError as err:
            raise ValueError("address %r for %r: %s" % (addr, purpose, err))
    frozen: Mapping[str, str] = versioned.freeze(value)
    return frozen


def _driver_data(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a JSON object")
    checked: Mapping[str, Any] = versioned.check_json(value)
    return checked


@dataclasses.dataclass(frozen=True)
class MigrateData(versioned.VersionedData):
    """What the destination tells the source before the transfer starts."""

    # Version 1.0: dest_hostname, block_migration, driver_data: what a
    #              destination without a split migration plane sends.
    # Version 1.1: Adds target_connect_addr, inbound_addr_source and
    #              listen_addrs for the dedicated migration plane.
    VERSION = "1.1"

    #: Name of the destination on the management network (control connection).
    dest_hostname: Optional[str] = versioned.field("1.0", _optional_hostname)
    #: Whether disks are copied too (non-shared storage).
    block_migration: bool = versioned.field("1.0", _bool, default=False)
    #: Driver-specific JSON data, opaque to the core.
    driver_data: Mapping[str, Any] = versioned.field("1.0", _driver_data, default_factory=dict)
    #: The destination's inbound migration address; None means legacy behaviour.
    target_connect_addr: Optional[str] = versioned.field("1.1", _optional_host)
    #: Where target_connect_addr came from: 'option', 'cidr' or 'none'.
    inbound_addr_source: str = versioned.field("1.1", _inbound_source,
                                               default=INBOUND_NONE)
    #: Addresses the destination will listen on, by purpose ('migration', ...).
    listen_addrs: Mapping[str, str] = versioned.field("1.1", _listen_addrs, default_factory=dict)

    @classmethod
    def _invalid(cls, field: str, value: Any, reason: str
                 ) -> exception.InvalidMigrateData:
        return exception.InvalidMigrateData(field=field, value=value, reason=reason)

    def _validate(self) -> None:
        has_addr = self.target_connect_addr is not None
        if has_addr != (self.inbound_addr_source != INBOUND_NONE):
            raise exception.InvalidMigrateData(
                field="inbound_addr_source", value=self.inbound_addr_source,
                reason="must be 'none' exactly when target_connect_addr (%r) is unset"
                       % (self.target_connect_addr,))

    @property
    def uses_split_plane(self) -> bool:
        return self.target_connect_addr is not None

    def replace(self, **changes: Any) -> "MigrateData":
        return dataclasses.replace(self, **changes)
