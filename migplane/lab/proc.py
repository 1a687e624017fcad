"""Running commands and ending processes by pid, never by name.

Every process the lab ends is identified by its pid *and* by the network
namespace it lives in, so a recycled pid belonging to someone else is never
signalled.
"""

import ctypes
import os
import signal
import subprocess
import threading
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


# prctl(2): orphaned descendants go to the nearest ancestor that set this.
_PR_SET_CHILD_SUBREAPER = 36
#: Seconds between two looks for QEMUs newly adopted; for adopted ones that exited.
_ADOPT_SCAN_S = 1.0
_REAP_POLL_S = 0.01
_reaper_lock = threading.Lock()
_reaper = None


def reap_qemus():
    """Adopt the QEMUs that this process's libvirtds start and reap each as it
    exits, as systemd does on a host (idempotent).

    libvirtd daemonizes its QEMUs, so they are orphans that go to init, and
    libvirtd counts one as alive until it is reaped: its confirm phase, which
    ends a migration, waits for the source's QEMU to be gone. Where init reaps
    only now and then (this machine's, once a second), every migration's end
    would be late by that much, and the paused handover's cost with it. Only
    processes named ``qemu*`` are reaped: any other child may be a Popen whose
    exit status its owner still has to read.
    """
    global _reaper
    with _reaper_lock:
        if _reaper is not None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return   # left to init, as before
        _reaper = threading.Thread(target=_reap_adopted, name="qemu-reaper", daemon=True)
        _reaper.start()


def children(prefix):
    """``{pid: state letter}`` of this process's children whose name starts
    with ``prefix`` (adopted orphans among them)."""
    me, found = os.getpid(), {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat and stat[0].startswith(prefix) and stat[2] == me:
                found[int(entry.name)] = stat[1]
    return found


def _stat(pid):
    """``(name, state letter, parent pid)`` from /proc, or None if the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], fields[0], int(fields[1])


def _reap_adopted():
    known, scanned = set(), 0.0
    while True:
        if time.monotonic() - scanned >= _ADOPT_SCAN_S:
            known |= set(children("qemu"))
            scanned = time.monotonic()
        for pid in list(known):
            if _state(pid) in (None, "Z", "X"):
                known.discard(pid)
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(_REAP_POLL_S)


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
    stat = _stat(pid)
    return None if stat is None else stat[1]


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
