"""Fixtures of the libvirt driver's functional tests: one real lab for them all.

The lab (``migplane.lab``) gives two hosts, each a set of namespaces with its
own libvirtd, joined by a management and a migration plane. The drivers run
here, in the root namespace, and reach each libvirtd through its unix socket;
``[driver_libvirt] netns`` makes them read the host's addresses from the
host's network namespace, as they would on a real host.

Every test gets a fresh guest name and leaves the lab as it found it: no
guest, no image, links up, no shaping, libvirtd running.
"""

import contextlib
import os
import threading
import time
import types

import pytest

from migplane import testing
from migplane.core import flow
from migplane.core import loader
from migplane.core import units

IMAGES = "/var/lib/libvirt/images"


@pytest.fixture(scope="session")
def drv_lab(lab_env):
    """A 2-host lab of our own, under a name no other run uses.

    Its libvirtds listen on every address, not only management: a tunnelled
    migration addresses the control connection to the destination's inbound
    address (the migration plane).
    """
    from migplane.lab import Lab

    name = f"mpdrv{os.getpid()}"
    if Lab.exists(name):
        Lab.load(name).down()
    lab = Lab(name, hosts=2, libvirtd_listen="all")
    try:
        lab.up()
        lab.kernel = lab.build_guest()
        yield lab
    finally:
        lab.down()


def _libvirt_conn(host):
    import libvirt

    return libvirt.open(host.uri)


def domain_names(host):
    """Names of the domains defined or running on ``host``."""
    conn = _libvirt_conn(host)
    try:
        return {d.name() for d in conn.listAllDomains()}
    finally:
        conn.close()


def domain_state(host, name):
    """libvirt's state of ``name`` on ``host``, or None when it is not there."""
    import libvirt

    conn = _libvirt_conn(host)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        return dom.state()[0], bool(dom.isPersistent())
    finally:
        conn.close()


def _remove_guest(host, name):
    import libvirt

    conn = _libvirt_conn(host)
    try:
        for dom in conn.listAllDomains():
            if dom.name() != name:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
    finally:
        conn.close()


@pytest.fixture
def lab_guest(drv_lab, request):
    """A guest name for this test; afterwards the lab is as it was before."""
    name = "g" + request.node.name.replace("test_", "")[:24].replace("[", "-").strip("]-")
    yield name
    for host in drv_lab.hosts:
        if not host.link_up("migration"):
            host.set_link("migration", True)
        if not host.libvirtd_alive():
            host.start_libvirtd()
    if drv_lab.shaping:
        drv_lab.unshape()
    for host in drv_lab.hosts:
        _remove_guest(host, name)
        host.run(["rm", "-f", f"{IMAGES}/{name}.qcow2",
                  f"/var/log/libvirt/qemu/{name}-console.log"], check=False)


@pytest.fixture
def make_driver(drv_lab):
    """A LibvirtDriver for a lab host, loaded as production does."""

    def make(host, my_ip=None, **lm):
        # static unless a test asks: most check the calls libvirt gets, in Nova's timing
        conf = testing.host_conf(host.name, my_ip,
                                 **{"poll_interval": 0.1, "strategy": "static", **lm})
        driver = loader.load_driver(_with_driver_opts(conf, host), "libvirt")
        return driver

    return make


def _with_driver_opts(conf, host):
    from migplane.drivers.libvirt import opts

    opts.register_opts(conf)
    conf.set_override("connection_uri", host.uri, group=opts.GROUP)
    conf.set_override("netns", host.netns, group=opts.GROUP)
    return conf


@pytest.fixture
def pair(drv_lab, make_driver):
    """(source, destination) drivers of host-a and host-b; options for both."""

    def make(my_ip=None, **lm):
        a, b = drv_lab.hosts
        return make_driver(a, **lm), make_driver(b, my_ip=my_ip, **lm)

    return make


class Traffic:
    """Bytes each host sent on each plane between enter and exit."""

    def __init__(self, lab):
        self.lab = lab

    def __enter__(self):
        self.before = {h.name: h.counters() for h in self.lab.hosts}
        return self

    def __exit__(self, *exc):
        after = {h.name: h.counters() for h in self.lab.hosts}
        self.sent = {plane: sum(after[h][plane]["tx_bytes"] - self.before[h][plane]["tx_bytes"]
                                for h in after)
                     for plane in ("management", "migration")}

    @property
    def total(self):
        return sum(self.sent.values())

    def share(self, plane):
        return self.sent[plane] / self.total if self.total else 0.0


@pytest.fixture
def traffic(drv_lab):
    return lambda: Traffic(drv_lab)


def start_guest(lab, name, memory_mib=64, disk=None, **cmdline):
    """Define and start the test guest on host-a; return its console watcher."""
    from migplane.lab import guest
    from migplane.lab.console import ConsoleWatcher

    cmd = guest.cmdline(**{"tick_ms": 50, **cmdline})
    watcher = ConsoleWatcher.for_domain(lab.hosts, name).start()
    guest.define_guest(lab.hosts[0], name, lab.kernel, memory_mib=memory_mib, cmdline=cmd,
                       disk=disk)
    watcher.wait_ticks(3, host="host-a", timeout=120)  # a boot: a hang guard
    return watcher


class Background:
    """A LiveMigration run in a thread, with its events, for tests that act mid-way."""

    def __init__(self, migration):
        self.migration = migration
        self.events = []
        self.result = self.error = None
        migration.subscribe(self.events.append)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.result = self.migration.run()
        except Exception as err:
            self.error = err

    def start(self):
        self._thread.start()
        return self

    @property
    def running(self):
        return self._thread.is_alive()

    def join(self, timeout=120):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the migration did not end"
        return self

    def wait_progress(self, min_bytes=1, timeout=60):
        """Wait until the job reports ``min_bytes`` of memory sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e.progress for e in self.events if e.progress is not None]
            if done and done[-1].memory_processed >= min_bytes:
                return done[-1]
            if not self._thread.is_alive():
                raise AssertionError(f"migration ended early: {self.error or self.result}")
            time.sleep(0.05)
        raise AssertionError(f"no progress of {min_bytes} bytes within {timeout}s")


def background(source, destination, name, **kw):
    return Background(flow.LiveMigration(name, source, destination,
                                         source.settings.migration, **kw)).start()


def qemu_listeners(host):
    """(address, port) of every TCP socket QEMU listens on inside ``host``."""
    out = host.run(["ss", "-Hltnp"]).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if "qemu" not in line or len(fields) < 4:
            continue
        addr, _, port = fields[3].rpartition(":")
        found.append((addr.strip("[]"), int(port)))
    return found


def assert_counter_continues(watcher, source, dest=None):
    """One counter across the hosts, by the lab's one rule
    (``ConsoleWatcher.continuity``: no tick lost, none repeated on a host, at
    most ``console.MAX_REPLAY`` replayed at a handover), and one handover,
    from ``source`` to ``dest``, or none when the guest stayed on ``source``."""
    continuity = watcher.continuity()
    assert continuity, continuity
    moves = [(h.frm, h.to) for h in continuity.handovers]
    assert moves == ([(source, dest)] if dest not in (None, source) else []), continuity


@pytest.fixture(scope="session")
def lv():
    """The helpers above, for test modules (which cannot import a conftest)."""
    return types.SimpleNamespace(
        start_guest=start_guest, background=background, domain_state=domain_state,
        assert_counter_continues=assert_counter_continues,
        domain_names=domain_names, qemu_listeners=qemu_listeners, MIB=units.MiB,
        IMAGES=IMAGES)
