"""Functional-test fixtures: real multi-host labs (root, QEMU, libvirtd).

`lab` is one 2-host lab for the whole session; `lab3` a 3-host one, built
only if a test asks for it. Both are always torn down, and their names carry
our pid so parallel runs on the same machine never collide. Tests must leave
a lab as they found it (links up, no shaping, libvirtd running, no guests).
"""

import os
import shutil

import pytest


def lab_skip_reason():
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("libvirtd", "qemu-system-x86_64", "qemu-img", "ip", "tc", "nsenter",
                 "unshare", "gcc", "openssl"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"the lab needs {tool}"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "the lab needs libvirt-python"
    return None


def _lab(suffix, hosts):
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from migplane.lab import Lab

    name = f"t{os.getpid()}{suffix}"
    if Lab.exists(name):
        Lab.load(name).down()
    lab = Lab(name, hosts=hosts)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def lab_env():
    """Skip unless this machine can build labs at all (for tests making their own)."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab():
    yield from _lab("", 2)


@pytest.fixture(scope="session")
def lab3():
    yield from _lab("c", 3)


@pytest.fixture(scope="module")
def lab_agents(lab):
    """An agent on each host of ``lab`` (my_live_migration_ip set), for one test module."""
    from migplane.lab import agents as agents_mod

    agents = agents_mod.LabAgents(lab)
    try:
        for host in lab.hosts:
            agents.start(host, my_ip=host.mig_ip)
        yield agents
    finally:
        agents.stop_all()
