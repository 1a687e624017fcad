"""The lab reaps the QEMUs its libvirtds daemonize as soon as they exit."""

import os
import shutil
import subprocess
import time

from migplane.lab import proc


def _zombie_children(name):
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = open(os.path.join(entry.path, "stat")).read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if comm == name and int(fields[1]) == me:
            found.append((int(entry.name), fields[0]))
    return found


def test_a_daemonized_qemu_is_adopted_and_reaped_when_it_exits(tmp_path):
    """A double-forked process (as libvirtd starts QEMU) whose parent is gone is
    adopted by the lab's process and reaped once it exits, not left a zombie
    for init to collect."""
    fake = tmp_path / "qemu-fake"
    shutil.copy(shutil.which("sleep"), fake)
    proc.reap_qemus()
    # the intermediate shell exits at once: its child is an orphan
    subprocess.run(["sh", "-c", "'%s' 1.5 & exit 0" % fake], check=True)
    adopted = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not adopted:
        adopted = _zombie_children("qemu-fake")
        time.sleep(0.05)
    assert adopted, "the orphan was not adopted by this process"
    while time.monotonic() < deadline and _zombie_children("qemu-fake"):
        time.sleep(0.05)
    assert _zombie_children("qemu-fake") == []
