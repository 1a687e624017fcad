"""migplane.lab: a multi-host live-migration lab on one machine.

Hosts are network + mount + UTS namespaces, each running its own libvirtd;
a management plane and a migration plane join them through bridges in a
per-lab switch namespace. See `Lab`.
"""

from .errors import LabCommandError
from .errors import LabError
from .lab import Lab
from .lab import LabHost

__all__ = ["Lab", "LabHost", "LabError", "LabCommandError"]
