"""Disk images created and deleted through libvirt's storage API.

Why not ``qemu-img`` run by the driver: the libvirt daemon may live in
another mount namespace (a container, the lab's hosts) or on another machine
than this process, so a path means what the *daemon* sees. Asking the
daemon to create the volume puts the file where QEMU will open it, in the
right format and size, with no namespace tricks. A directory with no storage
pool gets a transient ``dir`` pool for the duration of the call, so nothing
is left defined afterwards.
"""

import contextlib
import hashlib
import logging
import posixpath
import threading
from typing import Any
from typing import Iterator
from typing import Optional
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

import libvirt

LOG = logging.getLogger(__name__)
POOL_PREFIX = "migplane-"
# One transient pool per directory at a time within this process.
_LOCK = threading.Lock()

#: libvirt-python ships no types.
Connection = Any  # libvirt.virConnect
Pool = Any  # libvirt.virStoragePool
Volume = Any  # libvirt.virStorageVol


def _pool_xml(directory: str) -> str:
    name = POOL_PREFIX + hashlib.sha256(directory.encode()).hexdigest()[:12]
    return (f"<pool type='dir'><name>{name}</name>"
            f"<target><path>{escape(directory)}</path></target></pool>")


@contextlib.contextmanager
def dir_pool(conn: Connection, directory: str, build: bool = False) -> Iterator[Pool]:
    """An active storage pool whose target is ``directory``, for the block.

    :param build: create the directory if it is missing.
    """
    with _LOCK:
        yield from _dir_pool(conn, directory, build)


def _dir_pool(conn: Connection, directory: str, build: bool) -> Iterator[Pool]:
    stop = False
    try:
        pool = conn.storagePoolLookupByTargetPath(directory)
    except libvirt.libvirtError as err:
        if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        pool = conn.storagePoolCreateXML(
            _pool_xml(directory), libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD if build else 0)
        stop = True
    else:
        if not pool.isActive():
            pool.create(0)
            stop = True
        else:
            pool.refresh(0)
    try:
        yield pool
    finally:
        if stop:
            try:
                pool.destroy()
            except libvirt.libvirtError as err:
                LOG.warning("Could not stop storage pool %s: %s", pool.name(), err)


def _volume_xml(name: str, capacity: int, fmt: str) -> str:
    return (f"<volume><name>{escape(name)}</name>"
            f"<capacity unit='bytes'>{int(capacity)}</capacity>"
            f"<target><format type={quoteattr(fmt)}/></target></volume>")


def _lookup(pool: Pool, name: str) -> Optional[Volume]:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


class TooLarge(ValueError):
    """An image larger than the storage that would hold it."""


def create_volume(conn: Connection, path: str, capacity: int, fmt: str) -> bool:
    """Create an empty image at ``path``; return False if a file is already there.

    An existing file is never overwritten: it may be the guest's disk on
    shared storage, or someone else's. An image larger than its pool's
    capacity is refused (TooLarge): a sparse file of any size would do, and
    fill the disk as it is written.
    """
    directory, name = posixpath.split(path)
    with dir_pool(conn, directory, build=True) as pool:
        if _lookup(pool, name) is not None:
            return False
        pool_capacity = pool.info()[1]
        if capacity > pool_capacity:
            raise TooLarge(f"{path} would be {capacity} bytes, more than the "
                           f"{pool_capacity} bytes of the storage holding it")
        flags = libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA if fmt == "qcow2" else 0
        pool.createXML(_volume_xml(name, capacity, fmt), flags)
    LOG.info("Created %s image %s of %d bytes", fmt, path, capacity)
    return True


def delete_volume(conn: Connection, path: str) -> bool:
    """Delete the image at ``path``; return False if there was none."""
    directory, name = posixpath.split(path)
    with dir_pool(conn, directory) as pool:
        vol = _lookup(pool, name)
        if vol is None:
            return False
        vol.delete(0)
    LOG.info("Deleted image %s", path)
    return True
