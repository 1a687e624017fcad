"""Running commands and ending processes by pid, never by name.

Every process the lab ends is identified by its pid *and* by the network
namespace it lives in, so a recycled pid belonging to someone else is never
signalled.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from .errors import LabCommandError
from .errors import LabError

# Popen objects of daemons we started, kept so they can be reaped (no zombies,
# no ResourceWarning when the Lab object goes away before the daemon does).
_children: dict[int, subprocess.Popen] = {}


def run(argv, check=True, timeout=60, input=None, env=None, cwd="/"):
    """Run argv, capture text output; raise LabCommandError on failure."""
    argv = [str(a) for a in argv]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            input=input, env=env, cwd=cwd,
                            stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command {argv!r} timed out after {timeout}s") from exc
    if check and cp.returncode != 0:
        raise LabCommandError(cp.returncode, argv, cp.stdout, cp.stderr)
    return cp


def spawn(argv, log_path, env=None):
    """Start a long-running process detached from our session; return pid."""
    with open(log_path, "ab") as log:
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, cwd="/",
                             env=env, start_new_session=True)
    _children[p.pid] = p
    return p.pid


def _state(pid):
    """Process state letter from /proc, or None if the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2]


def _reap(pid):
    p = _children.get(pid)
    if p is not None:
        if p.poll() is not None:
            _children.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid):
    """True if pid runs (zombies count as dead)."""
    if not pid:
        return False
    _reap(pid)
    st = _state(pid)
    return st is not None and st not in ("Z", "X")


def exit_code(pid):
    """Exit status of a child we spawned that has ended, else None."""
    p = _children.get(pid)
    return None if p is None else p.poll()


def netns_inode(netns):
    """Inode of a named network namespace, or None if it does not exist."""
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return None


def pid_netns_inode(pid):
    try:
        link = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return int(link[link.index("[") + 1:-1])


def netns_pids(netns):
    """Pids of every process inside a named netns (what `ip netns pids` does)."""
    ino = netns_inode(netns)
    if ino is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_netns_inode(int(entry)) == ino:
            pids.append(int(entry))
    return sorted(pids)


def in_netns(pid, netns):
    ino = netns_inode(netns)
    return ino is not None and pid_netns_inode(pid) == ino


def signal_pids(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_dead(pids, timeout):
    """Wait until all pids are gone or zombies; return those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def terminate(pids, grace=5.0):
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds."""
    pids = [p for p in pids if alive(p)]
    if not pids:
        return
    signal_pids(pids, signal.SIGTERM)
    left = wait_dead(pids, grace)
    if left:
        signal_pids(left, signal.SIGKILL)
        left = wait_dead(left, 5.0)
    if left:
        raise LabError(f"processes {left} did not die")
