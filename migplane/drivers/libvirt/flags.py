"""The migrateToURI3 call of one migration: flags and typed parameters.

Pure: the core's resolved :class:`~migplane.core.uri.MigrationURIs`, the
source's :class:`~migplane.core.settings.MigrationSettings` and the driver's
capabilities in, one frozen :class:`MigrateCall` out. Combinations that libvirt or
QEMU would reject halfway through a migration are refused here, before
anything moves, with an error that names the options and their values.
"""

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Dict
from typing import List
from typing import NoReturn
from typing import Optional
from typing import Sequence
from typing import cast

import libvirt

from migplane.core import exception
from migplane.core import versioned

if TYPE_CHECKING:  # only for annotations: this module imports nothing more
    from migplane.core import capabilities as caps_mod
    from migplane.core import settings as settings_mod
    from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
LM = "[live_migration]"

#: Always set: a live, peer-to-peer migration that leaves one definition.
BASE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
              | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)

_FLAG_NAMES = sorted(
    (getattr(libvirt, name), name[len("VIR_MIGRATE_"):])
    for name in dir(libvirt)
    if name.startswith("VIR_MIGRATE_") and not name.startswith("VIR_MIGRATE_PARAM_")
    and isinstance(getattr(libvirt, name), int))


def flag_names(flags: int) -> List[str]:
    """``['LIVE', 'PEER2PEER', ...]`` for logs and reports."""
    return [name for value, name in _FLAG_NAMES if value and flags & value == value]


@dataclasses.dataclass(frozen=True)
class MigrateCall:
    """Arguments of ``virDomain.migrateToURI3``."""

    dconnuri: str
    flags: int
    params: Mapping[str, Any]
    #: Why each flag (by name) and parameter is there, for ``migplane explain``.
    reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", versioned.freeze(dict(self.params)))
        object.__setattr__(self, "reasons", versioned.freeze(dict(self.reasons)))

    @property
    def flag_names(self) -> List[str]:
        return flag_names(self.flags)

    def call_params(self) -> Dict[str, Any]:
        """A plain dict (lists for multi-valued keys), as libvirt-python wants it."""
        return cast(Dict[str, Any], versioned.thaw(self.params))

    def describe(self) -> str:
        """One log line; domain XML is elided."""
        return (f"migrateToURI3({self.dconnuri!r}, {self.to_dict()['params']!r}, "
                f"{'|'.join(self.flag_names)})")

    def to_dict(self, elide: Sequence[str] = (libvirt.VIR_MIGRATE_PARAM_PERSIST_XML,
                                              libvirt.VIR_MIGRATE_PARAM_DEST_XML)
                ) -> Dict[str, Any]:
        """The call as ``migplane explain`` shows it; domain XML is elided."""
        params = {key: (f"<{len(value)} characters of domain XML>" if key in elide
                        else value)
                  for key, value in self.call_params().items()}
        return {"call": "virDomainMigrateToURI3", "dconnuri": self.dconnuri,
                "flags": self.flag_names, "params": params, "reasons": dict(self.reasons)}


def _conflict(options: str, reason: str) -> NoReturn:
    raise exception.ConflictingOptions(options=options, reason=reason)


def check_settings(settings: "settings_mod.MigrationSettings",
                   compression: Sequence[str] = ()) -> None:
    """Refuse option combinations no libvirt/QEMU pair can honour.

    :param settings: a :class:`~migplane.core.settings.MigrationSettings`.
    :param compression: ``[driver_libvirt] compression`` methods.
    :raises ConflictingOptions: naming the options and their values.
    """
    parallel = settings.parallel_connections
    if settings.tunnelled and parallel > 1:
        _conflict(f"{LM} tunnelled=True and parallel_connections={parallel}",
                  "a tunnelled migration has a single stream, carried by the control "
                  "connection")
    if settings.tunnelled and settings.post_copy:
        _conflict(f"{LM} tunnelled=True and permit_post_copy=True",
                  "post-copy needs a return path that a tunnelled stream lacks; libvirt "
                  "refuses it")
    if settings.post_copy and parallel > 1:
        _conflict(f"{LM} permit_post_copy=True and parallel_connections={parallel}",
                  "QEMU cannot switch a multi-connection (multifd) migration to post-copy")
    if "mt" in compression and parallel > 1:
        _conflict(f"[driver_libvirt] compression=mt and {LM} parallel_connections={parallel}",
                  "QEMU's multi-threaded compression cannot be used with parallel "
                  "connections")
    if "mt" in compression and settings.post_copy:
        _conflict(f"[driver_libvirt] compression=mt and {LM} permit_post_copy=True",
                  "QEMU cannot switch a compressed migration to post-copy")


def check_block_migration(settings: "settings_mod.MigrationSettings") -> None:
    """Refuse a block migration these settings cannot carry.

    libvirt 9.0 fails a tunnelled migration with non-shared disks halfway,
    with "argument key 'host' must not have null value": the NBD stream has
    no data connection to ride.
    """
    if settings.tunnelled:
        _conflict(f"{LM} tunnelled=True and block migration",
                  "libvirt cannot copy local disks (NBD) through the tunnelled control "
                  "connection; use a direct data connection (tunnelled=False, with "
                  "with_native_tls=True for encryption) or shared storage")


def build(settings: "settings_mod.MigrationSettings", uris: "uri_mod.MigrationURIs",
          capabilities: "caps_mod.Capabilities", migrate_disks: Sequence[str] = (),
          persistent_xml: Optional[str] = None, destination_xml: Optional[str] = None,
          compression: Sequence[str] = (), instance: str = "the instance",
          driver: str = "libvirt") -> MigrateCall:
    """The :class:`MigrateCall` of one migration.

    :param settings: the source's :class:`~migplane.core.settings.MigrationSettings`.
    :param uris: the core's resolved :class:`~migplane.core.uri.MigrationURIs`.
    :param capabilities: this driver's :class:`~migplane.core.capabilities.Capabilities`.
    :param migrate_disks: target names (``vda``) of the local disks a block
        migration copies; empty for shared storage.
    :param persistent_xml: the inactive definition to persist on the destination.
    :param destination_xml: a changed live definition for the destination.
    :raises ConflictingOptions, UnsupportedFeature, InconsistentURIs:
    """
    check_settings(settings, compression)
    flags = BASE_FLAGS
    params: Dict[str, Any] = {}
    why = {
        "LIVE": "the guest keeps running while its memory is copied",
        "PEER2PEER": "the source's libvirtd opens the control connection to the "
                     f"destination's, {uris.control_uri}",
        "PERSIST_DEST": "the guest stays defined on the destination",
        "UNDEFINE_SOURCE": "nothing of the guest is left defined on the source",
    }

    def uri_param(name: str, param: str, purpose: str, default_reason: str) -> None:
        """Pass ``uris.<name>`` as ``param``; the capability and reason share its name."""
        capabilities.require(name, driver, purpose)
        params[param] = getattr(uris, name)
        why[param] = uris.reasons.get(name, default_reason)

    if settings.tunnelled:
        capabilities.require("tunnelled", driver, "tunnelled migration")
        if uris.data_uri or uris.listen_address or uris.disks_uri:
            raise exception.InconsistentURIs(
                instance=instance, reason="a tunnelled migration has no data connection, "
                f"yet the plan gives data_uri={uris.data_uri!r}, "
                f"listen_address={uris.listen_address!r}, disks_uri={uris.disks_uri!r}")
        flags |= libvirt.VIR_MIGRATE_TUNNELLED
        why["TUNNELLED"] = f"{LM} tunnelled: the data rides the control connection"
    if settings.native_tls:
        capabilities.require("native_tls", driver, "native TLS migration")
        flags |= libvirt.VIR_MIGRATE_TLS
        why["TLS"] = f"{LM} with_native_tls: QEMU encrypts the data connection"
        if uris.tls_destination:
            uri_param("tls_destination", libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION,
                      f"verifying the TLS certificate against {uris.tls_destination!r}",
                      "the certificate's expected name")
    elif uris.tls_destination:
        LOG.debug("Ignoring tls_destination %r: native TLS is off", uris.tls_destination)

    if uris.data_uri:
        uri_param("data_uri", libvirt.VIR_MIGRATE_PARAM_URI,
                  "a separate migration data URI", "data URI")
    if uris.listen_address:
        uri_param("listen_address", libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
                  f"binding the incoming socket to {uris.listen_address!r}",
                  "the destination's incoming socket binds here only")

    if migrate_disks:
        capabilities.require("block_migration", driver, "block migration")
        check_block_migration(settings)
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(migrate_disks)
        why["NON_SHARED_INC"] = "block migration: the local disks are copied (NBD)"
        why[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = (
            "the guest's local, writable disks only (not CD-ROMs, shared or network disks)")
        if uris.disks_uri:
            uri_param("disks_uri", libvirt.VIR_MIGRATE_PARAM_DISKS_URI,
                      f"sending block-migration traffic to {uris.disks_uri!r}", "")

    if settings.post_copy and capabilities.post_copy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
        why["POSTCOPY"] = (f"{LM} permit_post_copy (or the adaptive plan): the monitor, "
                           "force-complete or timeout_action=force_complete may switch "
                           "to post-copy")
    elif settings.post_copy:
        LOG.warning("Post-copy is permitted but %s does not support it; force-complete "
                    "will pause the guest instead", driver)
    if not flags & libvirt.VIR_MIGRATE_POSTCOPY:
        # libvirt refuses PAUSED together with POSTCOPY
        flags |= libvirt.VIR_MIGRATE_PAUSED
        why["PAUSED"] = ("the handover: the destination's copy stays paused after the "
                         "switch-over until migplane saw the source's copy stop, so the "
                         "guest never runs on both hosts (libvirt resumes the source by "
                         "itself when its confirm phase is cancelled)")
    if settings.auto_converge:
        if capabilities.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
            why["AUTO_CONVERGE"] = (
                f"{LM} permit_auto_converge (post-copy not permitted)"
                if settings.strategy == "static" else
                "the adaptive plan: QEMU throttles the vCPUs once it sees the job not "
                "converging")
            for key, value in ((libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
                                settings.auto_converge_initial),
                               (libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
                                settings.auto_converge_increment)):
                if value is not None:
                    params[key] = value
                    why[key] = "throttle of auto-converge, in percent (the plan's)"
        else:
            LOG.warning("Auto-converge is permitted but %s does not support it", driver)

    if settings.parallel_connections > 1:
        capabilities.require("parallel_connections", driver,
                             f"{settings.parallel_connections} parallel connections")
        flags |= libvirt.VIR_MIGRATE_PARALLEL
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = \
            settings.parallel_connections
        why["PARALLEL"] = (f"{LM} parallel_connections={settings.parallel_connections}"
                           " (configured, or the adaptive plan's)")
    unsupported = [m for m in compression if m not in capabilities.compression]
    if unsupported:
        raise exception.UnsupportedFeature(
            driver=driver, feature="[driver_libvirt] compression=%s (this host's QEMU "
            "offers only %s)" % (",".join(unsupported),
                                 ", ".join(capabilities.compression) or "none"))
    chosen = tuple(m for m in settings.compression if m not in compression)
    if compression or chosen:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
        params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = list(compression) + list(chosen)
        why["COMPRESSED"] = "; ".join(
            ([f"[driver_libvirt] compression={','.join(compression)}"] if compression
             else []) + ([f"the adaptive plan: {','.join(chosen)}"] if chosen else []))
    if settings.bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = settings.bandwidth_mib
        why[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = f"{LM} bandwidth, in MiB/s"
    if persistent_xml:
        params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = persistent_xml
        why[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = (
            "the source's inactive definition becomes the destination's")
    if destination_xml:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = destination_xml
    return MigrateCall(dconnuri=uris.control_uri, flags=flags, params=params, reasons=why)
