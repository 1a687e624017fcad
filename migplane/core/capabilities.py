"""What a driver can do, as declared by its ``describe()``.

The URI policy and the flow consult these flags; a driver never decides
policy itself, it only says what it supports. Capabilities cross between
hosts (an agent reports its driver's), so they are versioned like
:class:`~migplane.core.migrate_data.MigrateData`: a flag added in a minor
version is ignored by an older peer and defaults to False (unsupported) when
an older peer does not send it.
"""

import dataclasses
from typing import Any
from typing import Dict
from typing import Tuple

from migplane.core import exception
from migplane.core import versioned

_bool = versioned.check_bool


def _format(value: object) -> str:
    value = versioned.check_str(value)
    if "{host}" not in value:
        raise ValueError("the control URI format must contain '{host}'")
    return value


@dataclasses.dataclass(frozen=True)
class Capabilities(versioned.VersionedData):
    """Features a driver supports; every flag defaults to unsupported."""

    # Version 1.0: the flags below; what migplane 1.x drivers declare.
    # Version 1.1: Adds dirty_rate_sampling (convergence).
    # Version 1.2: Adds compression (methods the strategy may arm).
    # Version 1.3: Adds post_copy_recovery.
    VERSION = "1.3"

    #: Control-connection URI schemes the driver accepts (``scheme`` option).
    schemes: Tuple[str, ...] = versioned.field("1.0", versioned.check_str_tuple,
                                               default=("tcp",))
    #: Scheme used when the ``scheme`` option is unset.
    default_scheme: str = versioned.field("1.0", versioned.check_str, default="tcp")
    #: Format of the control URI; ``{scheme}`` and ``{host}`` are filled in.
    control_uri_format: str = versioned.field("1.0", _format,
                                              default="qemu+{scheme}://{host}/system")
    #: A separate data URI (libvirt's ``migrate_uri``) can be given.
    data_uri: bool = versioned.field("1.0", _bool, default=False)
    #: The destination can bind its incoming socket to one address.
    listen_address: bool = versioned.field("1.0", _bool, default=False)
    #: Block-migration (NBD) traffic can be sent to a given URI.
    disks_uri: bool = versioned.field("1.0", _bool, default=False)
    #: The TLS verification name can differ from the dialed host.
    tls_destination: bool = versioned.field("1.0", _bool, default=False)
    tunnelled: bool = versioned.field("1.0", _bool, default=False)
    native_tls: bool = versioned.field("1.0", _bool, default=False)
    post_copy: bool = versioned.field("1.0", _bool, default=False)
    auto_converge: bool = versioned.field("1.0", _bool, default=False)
    parallel_connections: bool = versioned.field("1.0", _bool, default=False)
    block_migration: bool = versioned.field("1.0", _bool, default=False)
    #: ``measure_dirty_rate()`` samples the guest (else: learned from the first pass).
    dirty_rate_sampling: bool = versioned.field("1.1", _bool, default=False)
    #: Compression methods of the stream the driver can arm per migration
    #: (``MigrationSettings.compression``), e.g. ``("xbzrle",)``.
    compression: Tuple[str, ...] = versioned.field("1.2", versioned.check_str_tuple,
                                                   default=())
    #: A post-copy whose stream broke is paused and resumed by the driver
    #: (``JOB_POSTCOPY_PAUSED``/``RECOVERING``); without it a broken link in
    #: post-copy loses the guest, and the adaptive default avoids post-copy
    #: unless pre-copy cannot converge.
    post_copy_recovery: bool = versioned.field("1.3", _bool, default=False)

    def to_dict(self) -> Dict[str, Any]:
        """The flags as a plain dict (for display; peers get :meth:`to_primitive`)."""
        return {f.name: versioned.thaw(getattr(self, f.name))
                for f in dataclasses.fields(self)}

    def require(self, flag: str, driver: str, feature: str) -> None:
        """Raise UnsupportedFeature naming ``feature`` unless ``flag`` is declared:
        the one check the URI policy and a driver's own call building share."""
        if not getattr(self, flag):
            raise exception.UnsupportedFeature(driver=driver, feature=feature)
