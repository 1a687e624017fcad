"""Which disks of a domain are local, i.e. what a block migration copies.

Read from the domain's XML: writable file or block disks with a source path.
CD-ROMs, read-only or shareable disks and network disks (RBD, iSCSI...)
are reachable from the destination as they are, so copying them would be
wrong, and listing them in ``migrate_disks`` would make libvirt try.
"""

import dataclasses
import posixpath
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple
from typing import cast
from xml.etree import ElementTree

_LOCAL_TYPES = ("file", "block")


@dataclasses.dataclass(frozen=True)
class LocalDisk:
    target: str
    path: str
    format: str
    #: 'file' or 'block': only files can be pre-created on the destination.
    kind: str = "file"
    #: Virtual size in bytes, filled in by the source from virDomainGetBlockInfo.
    capacity: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LocalDisk":
        return cls(target=data["target"], path=data["path"], format=data["format"],
                   kind=data.get("kind", "file"), capacity=int(data.get("capacity", 0)))


def local_disks(xml: str) -> List[LocalDisk]:
    """The :class:`LocalDisk` of ``xml`` (a domain definition), in XML order."""
    root = ElementTree.fromstring(xml)  # noqa: S314 - libvirt's own output
    out = []
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") not in ("disk", "lun"):
            continue
        if disk.get("type", "file") not in _LOCAL_TYPES:
            continue
        if disk.find("readonly") is not None or disk.find("shareable") is not None:
            continue
        source, target = disk.find("source"), disk.find("target")
        if source is None or target is None:
            continue
        path = source.get("file") or source.get("dev")
        if not path:
            continue
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else None) or "raw"
        # the domain schema requires <target dev=...>
        out.append(LocalDisk(target=cast(str, target.get("dev")), path=posixpath.normpath(path),
                             format=fmt, kind=disk.get("type", "file")))
    return out


def under_root(root: str, path: object) -> bool:
    """Whether ``path`` may be an image this host creates or deletes for a peer:
    a normalised absolute path strictly inside the directory ``root``.

    Lexical, as the daemon (perhaps in another mount namespace) will read it:
    no ``..``, no ``//``, no relative path, no NUL; ``root`` itself is no image.
    """
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        return False
    root = posixpath.normpath(root)
    if posixpath.normpath(path) != path or path == root:
        return False
    return posixpath.commonpath([root, path]) == root


def to_delete(copied: Optional[Iterable[str]], claimed: Optional[Iterable[object]]
              ) -> Tuple[str, ...]:
    """The source images to delete after its own block migration: those its own
    definition listed when the copy started (``copied``) that the destination
    said it created (``claimed``: proof the storage is not shared). Never a
    path only the destination named."""
    claimed = {c for c in claimed or () if isinstance(c, str)}
    return tuple(path for path in copied or () if path in claimed)
