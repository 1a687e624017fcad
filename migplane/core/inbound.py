"""Choosing the destination's inbound migration address.

Runs on the destination, in ``pre_live_migration()``: the address must be
this host's own, so it is checked against the host's addresses here, before
any guest memory moves, instead of failing later as a connection error on
the source.
"""

import ipaddress
from typing import TYPE_CHECKING
from typing import Any
from typing import Collection
from typing import Mapping
from typing import Optional
from typing import Tuple
from typing import Union
from typing import cast

from migplane.core import address
from migplane.core import exception
from migplane.core import migrate_data as md

if TYPE_CHECKING:
    from migplane.core.settings import HostSettings


def _ip(text: str) -> Union[ipaddress.IPv4Address, ipaddress.IPv6Address]:
    return ipaddress.ip_address(text.split("%", 1)[0])


def select(host_settings: "HostSettings", local_addresses: Optional[Collection[str]]
           ) -> Tuple[Optional[str], str]:
    """Return ``(address, source)`` for this host, or ``(None, 'none')``.

    :param host_settings: this host's :class:`~migplane.core.settings.HostSettings`.
    :param local_addresses: the IP addresses configured on this host (strings),
        or None when they cannot be known (then an explicit address is trusted).
    :raises InboundAddressError: the address is not this host's, or the CIDR
        selects no address or several.
    """
    host = host_settings.hostname
    explicit = host_settings.my_live_migration_ip
    local = None if local_addresses is None else {_ip(a) for a in local_addresses}
    if explicit:
        parsed = address.parse_host(explicit, field="my_live_migration_ip")
        if parsed.is_ip and local is not None and _ip(parsed.host) not in local:
            raise exception.InboundAddressError(
                address=explicit, host=host,
                reason="it is not an address of this host (its addresses: %s)"
                       % ", ".join(sorted(str(a) for a in local)))
        return explicit, md.INBOUND_FROM_OPTION
    cidr = host_settings.inbound_cidr
    if cidr is None:
        return None, md.INBOUND_NONE
    if local is None:
        raise exception.InboundAddressError(
            address=str(cidr), host=host,
            reason="this host's addresses are unknown, so none can be chosen")
    # Keep a link-local address's zone id: without it the address cannot be dialed.
    # local is None exactly when local_addresses is, and that raised just above.
    matches = sorted({str(ipaddress.ip_address(a))
                      for a in cast(Collection[str], local_addresses)
                      if _ip(a).version == cidr.version and _ip(a) in cidr})
    if len(matches) != 1:
        raise exception.InboundAddressError(
            address=str(cidr), host=host,
            reason="[live_migration] inbound_cidr must match exactly one address of "
                   "this host, it matches %s; set my_live_migration_ip instead"
                   % (", ".join(matches) or "none"))
    return matches[0], md.INBOUND_FROM_CIDR


def destination_data(host_settings: "HostSettings",
                     local_addresses: Optional[Collection[str]],
                     block_migration: bool = False,
                     driver_data: Optional[Mapping[str, Any]] = None,
                     listen_addrs: Optional[Mapping[str, str]] = None
                     ) -> md.MigrateData:
    """The :class:`MigrateData` a destination returns from pre_live_migration()."""
    addr, source = select(host_settings, local_addresses)
    listen = dict(listen_addrs or {})
    if addr is not None and md.LISTEN_MIGRATION not in listen:
        parsed = address.parse_host(addr, field="my_live_migration_ip")
        listen[md.LISTEN_MIGRATION] = parsed.host
    return md.MigrateData(
        dest_hostname=host_settings.hostname,
        block_migration=block_migration,
        driver_data=driver_data or {},
        target_connect_addr=addr,
        inbound_addr_source=source,
        listen_addrs=listen,
    )
