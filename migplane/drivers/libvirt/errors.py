"""libvirt errors turned into the core's typed errors, keeping libvirt's words.

An operator reading "Live migration of g1 failed during live_migration:
libvirt on host-a: unable to connect to server at '198.51.100.12:49152': No
route to host" learns both which step failed and what libvirt saw; the bare
``libvirtError`` said only the second half.
"""

import contextlib
from typing import Callable
from typing import Iterator
from typing import Optional
from typing import cast

import libvirt

from migplane.core import exception


def code(err: BaseException) -> Optional[int]:
    return err.get_error_code() if isinstance(err, libvirt.libvirtError) else None


def message(err: BaseException) -> str:
    """libvirt's own text of ``err``."""
    if isinstance(err, libvirt.libvirtError):
        return err.get_error_message() or str(err)
    return str(err)


def is_not_found(err: BaseException) -> bool:
    return cast(bool, code(err) == libvirt.VIR_ERR_NO_DOMAIN)  # libvirt is untyped


def is_invalid_operation(err: BaseException) -> bool:
    """"Requested operation is not valid": e.g. no migration job (yet, or any more)."""
    return cast(bool, code(err) == libvirt.VIR_ERR_OPERATION_INVALID)


def translate(err: BaseException, instance: str, step: str, host: str,
              connected: bool = True) -> exception.MigplaneError:
    """The :class:`~migplane.core.exception.MigplaneError` for ``err``.

    :param connected: False when the connection to the local daemon died: the
        error is then about this host's daemon, not about the migration.
    """
    if not connected:
        return exception.HypervisorUnavailable(
            host=host, reason=f"libvirt, during {step} of {instance}: {message(err)}")
    if is_not_found(err):
        return exception.InstanceNotFound(instance=instance, host=host)
    if code(err) == libvirt.VIR_ERR_OPERATION_ABORTED:
        return exception.MigrationAborted(instance=instance,
                                          reason=f"libvirt: {message(err)}")
    return exception.MigrationError(instance=instance, step=step,
                                    reason=f"libvirt on {host}: {message(err)}")


@contextlib.contextmanager
def translated(instance: str, step: str, host: str,
               alive: Optional[Callable[[], bool]] = None) -> Iterator[None]:
    """Re-raise libvirt errors inside the block as typed errors.

    :param alive: a callable telling whether the daemon connection still works.
    """
    try:
        yield
    except libvirt.libvirtError as err:
        connected = True if alive is None else alive()
        raise translate(err, instance, step, host, connected) from err
