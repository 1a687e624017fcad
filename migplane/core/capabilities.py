"""What a driver can do, as declared by its ``describe()``.

The URI policy and the flow consult these flags; a driver never decides
policy itself, it only says what it supports.
"""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class Capabilities:
    #: Control-connection URI schemes the driver accepts (``scheme`` option).
    schemes: Tuple[str, ...] = ("tcp",)
    #: Scheme used when the ``scheme`` option is unset.
    default_scheme: str = "tcp"
    #: Format of the control URI; ``{scheme}`` and ``{host}`` are filled in.
    control_uri_format: str = "qemu+{scheme}://{host}/system"
    #: A separate data URI (libvirt's ``migrate_uri``) can be given.
    data_uri: bool = False
    #: The destination can bind its incoming socket to one address.
    listen_address: bool = False
    #: Block-migration (NBD) traffic can be sent to a given URI.
    disks_uri: bool = False
    #: The TLS verification name can differ from the dialed host.
    tls_destination: bool = False
    tunnelled: bool = False
    native_tls: bool = False
    post_copy: bool = False
    auto_converge: bool = False
    parallel_connections: bool = False
    block_migration: bool = False
    #: ``measure_dirty_rate()`` samples the guest (else: learned from the first pass).
    dirty_rate_sampling: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)
