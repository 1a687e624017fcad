"""Every option migplane defines, for ``oslo-config-generator --namespace migplane``.

Each part keeps its own ``list_opts()``; this one concatenates them so that
one namespace prints a complete sample configuration. Importing it needs no
optional dependency (libvirt-python is not imported by option modules).
"""

import importlib
from typing import Dict
from typing import List
from typing import Tuple

from oslo_config import cfg

_PARTS = (
    "migplane.core.opts",
    "migplane.drivers.libvirt.opts",
    "migplane.drivers.fake.opts",
    "migplane.agent.opts",
)


def list_opts() -> List[Tuple[str, List[cfg.Opt]]]:
    merged: Dict[str, List[cfg.Opt]] = {}
    for name in _PARTS:
        module = importlib.import_module(name)
        for group, opts in module.list_opts():
            merged.setdefault(group, []).extend(opts)
    return list(merged.items())


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every migplane option on ``conf`` (drivers also do it when loaded)."""
    from migplane.core import opts as core_opts

    core_opts.register_opts(conf)  # aware of the host stack's own Nova options
    core = {id(opt) for _, group_opts in core_opts.list_opts() for opt in group_opts}
    for group, opts in list_opts():
        conf.register_opts([opt for opt in opts if id(opt) not in core],
                           group=None if group == "DEFAULT" else group)
