"""The URI-resolution policy: which connection goes where.

Pure: data in (the source's :class:`MigrationSettings`, the destination's
:class:`MigrateData`, the driver's :class:`Capabilities`), one frozen
:class:`MigrationURIs` out. No configuration is read here.

Rules, in order:

* Without an inbound address (``target_connect_addr`` unset) the result is
  exactly the legacy one: the control URI addresses the destination's host
  name and no data URI is given, so the hypervisor picks as it always did.
* With an inbound address and a direct data connection, the control URI still
  addresses the host name (management plane) and the data URI, the
  destination's listen address and the block-migration URI address the
  inbound address (migration plane). With ``control_plane = migration``
  (Nova's behaviour) the control URI addresses the inbound address too.
* Tunnelled, there is no separate data connection: the control URI addresses
  the inbound address so that the tunnelled bulk stream rides the migration
  plane.
* With native TLS while the data URI dials an IP literal, the certificate is
  verified against the destination's host name.
* The deprecated ``%s`` URI template replaces the scheme-based format.
"""

import dataclasses
from typing import TYPE_CHECKING
from typing import Any
from typing import Dict
from typing import Mapping
from typing import Optional
from typing import Tuple

from migplane.core import address
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import versioned

if TYPE_CHECKING:
    from migplane.core.capabilities import Capabilities

MANAGEMENT = "management"
MIGRATION = "migration"
DATA_SCHEME = "tcp"


def _optional_uri(value: Any) -> Optional[str]:
    return versioned.check_optional_str(value)


@dataclasses.dataclass(frozen=True)
class MigrationURIs(versioned.VersionedData):
    """The resolved connections of one migration, with the reason for each.

    Versioned like :class:`~migplane.core.migrate_data.MigrateData`: the source
    agent sends it to its driver and reports it to operators.
    """

    # Version 1.0: control_uri, data_uri, listen_address, disks_uri,
    #              tls_destination, bulk_host, plane, reasons.
    VERSION = "1.0"

    #: Where the source's hypervisor daemon connects to the destination's.
    control_uri: str = versioned.field("1.0", versioned.check_str,
                                       default=versioned.REQUIRED)
    #: Where the bulk memory stream goes; None lets the hypervisor choose
    #: (legacy) or means it is tunnelled through the control connection.
    data_uri: Optional[str] = versioned.field("1.0", _optional_uri,
                                              default=versioned.REQUIRED)
    #: Address the destination binds its incoming migration socket to.
    listen_address: Optional[str] = versioned.field("1.0", _optional_uri,
                                                    default=versioned.REQUIRED)
    #: Where block-migration (NBD) traffic goes; None: hypervisor default.
    disks_uri: Optional[str] = versioned.field("1.0", _optional_uri,
                                               default=versioned.REQUIRED)
    #: Name the TLS certificate is verified against, when not the dialed host.
    tls_destination: Optional[str] = versioned.field("1.0", _optional_uri,
                                                     default=versioned.REQUIRED)
    #: Host part of whatever carries the bulk stream.
    bulk_host: str = versioned.field("1.0", versioned.check_str,
                                     default=versioned.REQUIRED)
    #: The plane the bulk stream rides: 'migration' or 'management'.
    plane: str = versioned.field("1.0", versioned.check_choice(MANAGEMENT, MIGRATION),
                                 default=versioned.REQUIRED)
    #: Why each field has its value, for ``migplane explain``.
    reasons: Mapping[str, str] = versioned.field("1.0", versioned.check_str_mapping,
                                                 default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """Plain form, for display and for peers that predate versioning."""
        return {f.name: versioned.thaw(getattr(self, f.name))
                for f in dataclasses.fields(self)}


def _control_uri(settings: settings_mod.MigrationSettings, capabilities: "Capabilities",
                 target: address.HostAddress) -> Tuple[str, str]:
    if settings.uri_template:
        return settings.uri_template % target.netloc, (
            "deprecated template [live_migration] uri %r" % settings.uri_template)
    scheme = settings.scheme or capabilities.default_scheme
    why = "scheme %r%s" % (scheme, "" if settings.scheme else " (default)")
    return capabilities.control_uri_format.format(scheme=scheme, host=target.netloc), why


def _check_capabilities(settings: settings_mod.MigrationSettings,
                        capabilities: "Capabilities", driver: str, block: bool) -> None:
    scheme = settings.scheme or capabilities.default_scheme
    if not settings.uri_template and scheme not in capabilities.schemes:
        raise exception.UnsupportedFeature(
            driver=driver, feature="control URI scheme %r (supported: %s)"
            % (scheme, ", ".join(capabilities.schemes)))
    wanted = (("tunnelled", settings.tunnelled, "tunnelled migration"),
              ("native_tls", settings.native_tls, "native TLS migration"),
              ("block_migration", block, "block migration"))
    for flag, asked, feature in wanted:
        if asked:
            capabilities.require(flag, driver, feature)


def resolve(settings: settings_mod.MigrationSettings, migrate_data: md.MigrateData,
            capabilities: "Capabilities", dest_hostname: Optional[str] = None,
            block_migration: Optional[bool] = None, driver: str = "the driver"
            ) -> MigrationURIs:
    """Resolve the URIs of one migration.

    :param settings: the source's :class:`~migplane.core.settings.MigrationSettings`.
    :param migrate_data: the destination's :class:`~migplane.core.migrate_data.MigrateData`.
    :param capabilities: the source driver's :class:`~migplane.core.capabilities.Capabilities`.
    :param dest_hostname: the destination's management host name; defaults to
        ``migrate_data.dest_hostname``.
    :param block_migration: overrides ``migrate_data.block_migration``.
    :param driver: the driver's name, for error messages.
    :returns: a frozen :class:`MigrationURIs`.
    :raises InconsistentURIs, InvalidAddress, UnsupportedFeature:
    """
    dest_name = dest_hostname or migrate_data.dest_hostname
    if not dest_name:
        raise exception.InconsistentURIs(
            instance="the instance", reason="the destination's host name is unknown")
    dest = address.parse_host(dest_name, field="destination host name", allow_port=False)
    block = migrate_data.block_migration if block_migration is None else block_migration
    _check_capabilities(settings, capabilities, driver, block)
    if migrate_data.target_connect_addr is None:
        return _management_plane_uris(settings, capabilities, dest, dest_name)
    inbound = address.parse_host(migrate_data.target_connect_addr,
                                 field="target_connect_addr")
    origin = "the destination's inbound address %r (from %s)" % (
        migrate_data.target_connect_addr, migrate_data.inbound_addr_source)
    if settings.tunnelled:
        return _tunnelled_uris(settings, capabilities, inbound, origin)
    return _split_plane_uris(settings, migrate_data, capabilities, dest, dest_name, inbound,
                             origin, block, driver)


def _management_plane_uris(settings: settings_mod.MigrationSettings,
                           capabilities: "Capabilities", dest: address.HostAddress,
                           dest_name: str) -> MigrationURIs:
    """No inbound address: everything goes to the host name, as before the spec."""
    control, why = _management_control(settings, capabilities, dest, dest_name)
    reasons = {"control_uri": why,
               "data_uri": ("unset: the destination sent no inbound address "
                            "(my_live_migration_ip unset or an older peer), so the "
                            "hypervisor sends the data to the host name as before")}
    return MigrationURIs(control_uri=control, data_uri=None, listen_address=None,
                         disks_uri=None, tls_destination=None, bulk_host=dest.host,
                         plane=MANAGEMENT, reasons=reasons)


def _tunnelled_uris(settings: settings_mod.MigrationSettings, capabilities: "Capabilities",
                    inbound: address.HostAddress, origin: str) -> MigrationURIs:
    """Tunnelled: the control connection carries the data, so it goes to the
    inbound address."""
    control, why = _control_uri(settings, capabilities, inbound)
    reasons = {"control_uri": ("migration plane: tunnelled, so the control connection "
                               "carries the data and targets %s, %s" % (origin, why)),
               "data_uri": "unset: tunnelled through the control connection"}
    return MigrationURIs(control_uri=control, data_uri=None, listen_address=None,
                         disks_uri=None, tls_destination=None,
                         bulk_host=inbound.host, plane=MIGRATION, reasons=reasons)


def _split_plane_uris(settings: settings_mod.MigrationSettings, migrate_data: md.MigrateData,
                      capabilities: "Capabilities", dest: address.HostAddress,
                      dest_name: str, inbound: address.HostAddress, origin: str,
                      block: bool, driver: str) -> MigrationURIs:
    """The spec's split: data (and disks) to the inbound address, control to
    the host name unless ``control_plane = migration``."""
    if not capabilities.data_uri:
        raise exception.UnsupportedFeature(
            driver=driver, feature="a separate migration data URI, needed to send data "
                                   "to the inbound address %r" % inbound.host)
    reasons: Dict[str, str] = {}
    if settings.control_plane == settings_mod.CONTROL_MIGRATION:
        control, why = _control_uri(settings, capabilities, inbound)
        reasons["control_uri"] = ("migration plane: control_plane = migration (Nova's "
                                  "behaviour), so it targets %s, %s" % (origin, why))
    else:
        control, reasons["control_uri"] = _management_control(settings, capabilities, dest,
                                                              dest_name)
    reasons["data_uri"] = "migration plane: %s" % origin
    listen, reasons["listen_address"] = _listen_address(migrate_data, capabilities, inbound)
    disks_uri, reasons["disks_uri"] = _disks_uri(capabilities, inbound, block, origin)
    tls_name = _tls_destination(settings, capabilities, dest, dest_name, inbound, driver)
    if tls_name is not None:
        reasons["tls_destination"] = ("native TLS dials the IP %r, so the certificate is "
                                      "verified against the host name %r"
                                      % (inbound.host, dest.host))
    return MigrationURIs(control_uri=control,
                         data_uri="%s://%s" % (DATA_SCHEME, inbound.netloc),
                         listen_address=listen, disks_uri=disks_uri,
                         tls_destination=tls_name, bulk_host=inbound.host,
                         plane=MIGRATION, reasons=reasons)


def _management_control(settings: settings_mod.MigrationSettings,
                        capabilities: "Capabilities", dest: address.HostAddress,
                        dest_name: str) -> Tuple[str, str]:
    """The control URI to the destination's host name, and why."""
    control, why = _control_uri(settings, capabilities, dest)
    return control, "management plane: destination host name %r, %s" % (dest_name, why)


def _listen_address(migrate_data: md.MigrateData, capabilities: "Capabilities",
                    inbound: address.HostAddress) -> Tuple[Optional[str], str]:
    """Where the destination binds its incoming socket, and why."""
    if not capabilities.listen_address:
        return None, "unset: the driver cannot bind the incoming socket"
    chosen = migrate_data.listen_addrs.get(md.LISTEN_MIGRATION)
    if chosen:
        return chosen, "chosen by the destination: %r" % chosen
    return inbound.host, ("the inbound address, so the destination listens on the "
                          "migration plane only")


def _disks_uri(capabilities: "Capabilities", inbound: address.HostAddress, block: bool,
               origin: str) -> Tuple[Optional[str], str]:
    """Where block migration's disk stream goes, and why."""
    if block and capabilities.disks_uri:
        return ("%s://%s" % (DATA_SCHEME, inbound.uri_host),
                "block migration rides the migration plane: %s" % origin)
    return None, "unset: %s" % ("no block migration" if not block
                                else "driver cannot direct disk traffic")


def _tls_destination(settings: settings_mod.MigrationSettings,
                     capabilities: "Capabilities", dest: address.HostAddress,
                     dest_name: str, inbound: address.HostAddress,
                     driver: str) -> Optional[str]:
    """The name native TLS verifies when it dials an IP: the destination's host name."""
    if not (settings.native_tls and inbound.is_ip):
        return None
    if not capabilities.tls_destination:
        raise exception.UnsupportedFeature(
            driver=driver, feature="verifying the TLS certificate against %r while "
                                   "dialing %r" % (dest_name, inbound.host))
    return dest.host
