"""The console scripts ``migplane`` and ``migplane-agent``.

``pip install migplane`` (no extras) installs both scripts but not what they
import: the ``agent`` extra (oslo.log, Flask, jsonschema, requests,
pyroute2). Each script imports its command here, so that a missing
third-party module ends it with one line naming the extra to install and
exit status 2 (a usage error), never a traceback.
"""

import importlib
import sys
from typing import Callable
from typing import List
from typing import Optional

#: Exit status of a script that lacks an extra (as a usage error).
MISSING_EXTRA = 2
#: Top-level module -> the extra of setup.cfg that installs it.
EXTRAS = {
    "oslo_log": "agent", "flask": "agent", "jsonschema": "agent", "requests": "agent",
    "pyroute2": "agent", "libvirt": "libvirt", "matplotlib": "bench",
}


def _missing_extra(prog: str, err: ModuleNotFoundError, default: str) -> Optional[int]:
    """Say which extra provides the module ``err`` names; None when it is not a
    third-party module (a broken migplane install: the traceback is the news)."""
    top = (err.name or "").partition(".")[0]
    if not top or top == "migplane":
        return None
    extra = EXTRAS.get(top, default)
    print("%s: the Python module %s is missing: install the %r extra "
          "(pip install 'migplane[%s]')" % (prog, top, extra, extra), file=sys.stderr)
    return MISSING_EXTRA


def _run(prog: str, module: str, argv: Optional[List[str]], default: str) -> int:
    try:
        main: Callable[[Optional[List[str]]], int] = importlib.import_module(module).main
    except ModuleNotFoundError as err:
        code = _missing_extra(prog, err, default)
        if code is None:
            raise
        return code
    try:
        return main(argv)
    except ModuleNotFoundError as err:  # a command importing an extra lazily
        if (err.name or "").partition(".")[0] not in EXTRAS:
            raise
        return _missing_extra(prog, err, default) or MISSING_EXTRA


def migplane(argv: Optional[List[str]] = None) -> int:
    """``migplane``: :func:`migplane.cli.main.main`."""
    return _run("migplane", "migplane.cli.main", argv, "agent")


def migplane_agent(argv: Optional[List[str]] = None) -> int:
    """``migplane-agent``: :func:`migplane.agent.main.main`."""
    return _run("migplane-agent", "migplane.agent.main", argv, "agent")
