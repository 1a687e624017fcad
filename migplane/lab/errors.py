"""Exceptions raised by the lab."""

import subprocess


class LabError(Exception):
    """Anything the lab could not do (setup, teardown, a fault injection)."""


class LabCommandError(LabError, subprocess.CalledProcessError):
    """A command run by the lab failed; also a CalledProcessError for callers
    that already handle those."""

    def __init__(self, returncode, cmd, output=None, stderr=None):
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)

    def __str__(self):
        err = (self.stderr or "").strip()
        tail = f": {err[-800:]}" if err else ""
        return f"command {self.cmd!r} exited {self.returncode}{tail}"
