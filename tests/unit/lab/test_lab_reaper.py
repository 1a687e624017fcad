"""The lab reaps the QEMUs its libvirtds daemonize as soon as they exit."""

import shutil
import subprocess
import time

from migplane.lab import proc


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
        adopted = proc.children("qemu-fake")
        time.sleep(0.05)
    assert adopted, "the orphan was not adopted by this process"
    while time.monotonic() < deadline and proc.children("qemu-fake"):
        time.sleep(0.05)
    assert proc.children("qemu-fake") == {}
