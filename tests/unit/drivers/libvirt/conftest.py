"""A small in-memory libvirt for the libvirt driver's unit tests.

``FakeDaemon`` stands for one host's libvirtd: its domains, storage pools
and volumes, and a migration call that moves a domain to the daemon its
control URI names. Errors are real ``libvirt.libvirtError`` objects with
real error codes, so the driver's error handling is exercised as against
libvirtd. ``libvirt.open`` is patched to hand out connections by URI.
"""

import threading
import uuid as uuid_mod

import pytest

from migplane import testing
from migplane.drivers.libvirt import opts

try:
    import libvirt
except ImportError:  # the driver needs libvirt-python: nothing to test without it
    libvirt = None
collect_ignore_glob = [] if libvirt else ["test_*.py"]

DISK_XML = """
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/{name}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""


def domain_xml(name, disk=False):
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='KiB'>65536</memory>
  <devices>{DISK_XML.format(name=name) if disk else ""}
    <disk type='file' device='cdrom'>
      <source file='/isos/boot.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
  </devices>
</domain>"""


def lv_error(code, message):
    """A libvirtError as libvirt-python raises it."""
    err = libvirt.libvirtError(message)
    err.err = (code, libvirt.VIR_FROM_QEMU, message, libvirt.VIR_ERR_ERROR, None, None,
               None, 0, 0)
    return err


class FakeVolume:
    def __init__(self, pool, name, capacity, fmt):
        self.pool, self._name, self.capacity, self.format = pool, name, capacity, fmt

    def name(self):
        return self._name

    def delete(self, flags=0):
        del self.pool.daemon.files[self.pool.path + "/" + self._name]


class FakePool:
    def __init__(self, daemon, name, path, transient):
        self.daemon, self._name, self.path = daemon, name, path
        self.transient, self.active, self.refreshed = transient, True, 0

    def name(self):
        return self._name

    def isActive(self):
        return self.active

    def create(self, flags=0):
        self.active = True

    def refresh(self, flags=0):
        self.refreshed += 1

    def info(self):
        """[state, capacity, allocation, available] of the filesystem holding it."""
        return [libvirt.VIR_STORAGE_POOL_RUNNING, self.daemon.pool_capacity, 0,
                self.daemon.pool_capacity]

    def destroy(self):
        self.active = False
        if self.transient:
            self.daemon.pools.remove(self)

    def storageVolLookupByName(self, name):
        path = self.path + "/" + name
        if path not in self.daemon.files:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_VOL, "Storage volume not found: " + name)
        return FakeVolume(self, name, *self.daemon.files[path])

    def createXML(self, xml, flags=0):
        import re

        name = re.search(r"<name>(.*?)</name>", xml).group(1)
        capacity = int(re.search(r"<capacity unit='bytes'>(\d+)<", xml).group(1))
        fmt = re.search(r"<format type=['\"](\w+)['\"]", xml).group(1)
        self.daemon.files[self.path + "/" + name] = (capacity, fmt)
        self.daemon.created_volumes.append((self.path + "/" + name, capacity, fmt, flags))
        return FakeVolume(self, name, capacity, fmt)


class FakeDomain:
    def __init__(self, daemon, name, xml, persistent=True, active=True, uuid=None):
        self.daemon, self._name, self.xml = daemon, name, xml
        self.uuid = uuid or str(uuid_mod.uuid4())
        self.persistent, self.active = persistent, active
        self.state_ = [libvirt.VIR_DOMAIN_RUNNING if active else libvirt.VIR_DOMAIN_SHUTOFF, 1]
        self.job_stats = {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        self.completed_stats = {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        self.calls = []

    # -- plain facts --
    def connect(self):
        """The connection of this handle: alive while the daemon runs."""
        return FakeConn(self.daemon)

    def name(self):
        return self._name

    def UUIDString(self):
        return self.uuid

    def _check(self):
        if not self.daemon.running:   # a handle outlives its daemon, and fails
            raise lv_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                           "internal error: client socket is closed")
        if self.daemon.domains.get(self._name) is not self:
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN,
                           f"Domain not found: no domain with matching name '{self._name}'")

    def isActive(self):
        self._check()
        return self.active

    def isPersistent(self):
        self._check()
        return self.persistent

    def state(self, flags=0):
        self._check()
        return list(self.state_)

    def info(self):
        self._check()
        return [self.state_[0], 65536, 65536, 1, 0]

    def XMLDesc(self, flags=0):
        self._check()
        self.calls.append(("XMLDesc", flags))
        return self.xml

    def blockInfo(self, path, flags=0):
        self._check()
        return [self.daemon.disk_sizes.get(path, 16 << 20), 1 << 20, 1 << 20]

    def jobStats(self, flags=0):
        self._check()
        if self.daemon.stats_error is not None and not flags:
            raise self.daemon.stats_error
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return dict(self.completed_stats)
        return dict(self.job_stats)

    # -- the migration --
    def _job_active(self):
        return self.job_stats.get("type") in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                              libvirt.VIR_DOMAIN_JOB_UNBOUNDED)

    def migrateToURI3(self, dconnuri, params, flags):
        self._check()
        self.daemon.migrations.append((dconnuri, dict(params), flags))
        self.job_stats = dict(self.daemon.running_stats)
        self.daemon.job_started.set()
        self.daemon.gate.wait(60)  # a hang guard: tests open the gate
        self.job_stats = {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        if self.daemon.migrate_error is not None:
            if self.state_ == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION]:
                self.state_ = [libvirt.VIR_DOMAIN_RUNNING, 1]
            raise self.daemon.migrate_error
        dest = self.daemon.peers[dconnuri]
        dest.domains[self._name] = FakeDomain(dest, self._name, self.xml, uuid=self.uuid)
        if flags & libvirt.VIR_MIGRATE_PAUSED:  # held paused after the switch-over
            dest.domains[self._name].state_ = [libvirt.VIR_DOMAIN_PAUSED,
                                               libvirt.VIR_DOMAIN_PAUSED_USER]
        del self.daemon.domains[self._name]
        for callback in self.daemon.job_callbacks:
            callback(None, self, dict(self.daemon.completed_event_stats), None)

    def abortJob(self):
        self._check()
        self.calls.append(("abortJob",))
        if not self._job_active():
            raise lv_error(libvirt.VIR_ERR_OPERATION_INVALID,
                           "Requested operation is not valid: no job is active on the domain")
        self.daemon.migrate_error = lv_error(
            libvirt.VIR_ERR_OPERATION_ABORTED,
            "operation aborted: job 'migration out' canceled by client")
        self.completed_stats = {"type": libvirt.VIR_DOMAIN_JOB_CANCELLED,
                                "data_processed": 123}
        self.daemon.gate.set()

    def abortJobFlags(self, flags=0):
        """With VIR_DOMAIN_ABORT_JOB_POSTCOPY: QEMU pauses a post-copy stream."""
        self._check()
        self.calls.append(("abortJobFlags", flags))
        if flags != libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY:
            return self.abortJob()
        self.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
        self.daemon.migrate_error = lv_error(libvirt.VIR_ERR_OPERATION_FAILED,
                                             "post-copy phase failed")
        self.daemon.gate.set()

    def migrateSetMaxDowntime(self, downtime, flags=0):
        self._check()
        self.calls.append(("migrateSetMaxDowntime", downtime))
        if self.daemon.downtime_error is not None:
            raise self.daemon.downtime_error

    def migrateStartPostCopy(self, flags=0):
        self._check()
        self.calls.append(("migrateStartPostCopy",))
        if not self._job_active():
            raise lv_error(libvirt.VIR_ERR_OPERATION_INVALID,
                           "Requested operation is not valid: domain is not being migrated")

    def suspend(self):
        self._check()
        self.calls.append(("suspend",))
        self.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]

    def resume(self):
        self._check()
        self.calls.append(("resume",))
        self.state_ = [libvirt.VIR_DOMAIN_RUNNING, 1]

    def destroy(self):
        self._check()
        self.calls.append(("destroy",))
        self.active = False
        self.state_ = [libvirt.VIR_DOMAIN_SHUTOFF, 1]
        if not self.persistent:
            del self.daemon.domains[self._name]

    def undefineFlags(self, flags=0):
        self._check()
        self.calls.append(("undefineFlags", flags))
        if self.active:
            self.persistent = False
        else:
            del self.daemon.domains[self._name]


class FakeConn:
    def __init__(self, daemon):
        self.daemon = daemon
        self.alive = True

    def _up(self):
        if not self.alive or not self.daemon.running:
            raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe")

    def isAlive(self):
        return int(self.alive and self.daemon.running)

    def close(self):
        self.alive = False

    def getLibVersion(self):
        self._up()
        return self.daemon.lib_version

    def getVersion(self):
        self._up()
        return self.daemon.qemu_version

    def lookupByName(self, name):
        self._up()
        if name not in self.daemon.domains:
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN,
                           f"Domain not found: no domain with matching name '{name}'")
        return self.daemon.domains[name]

    def lookupByUUIDString(self, uuid):
        self._up()
        for dom in self.daemon.domains.values():
            if dom.uuid == uuid:
                return dom
        raise lv_error(libvirt.VIR_ERR_NO_DOMAIN,
                       f"Domain not found: no domain with matching uuid '{uuid}'")

    def defineXML(self, xml):
        self._up()
        self.daemon.defined.append(xml)

    def domainEventRegisterAny(self, dom, event_id, callback, opaque):
        assert event_id == libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED
        self.daemon.job_callbacks.append(callback)
        return len(self.daemon.job_callbacks)

    def storagePoolLookupByTargetPath(self, path):
        self._up()
        for pool in self.daemon.pools:
            if pool.path == path:
                return pool
        raise lv_error(libvirt.VIR_ERR_NO_STORAGE_POOL,
                       f"Storage pool not found: no storage pool with matching target path "
                       f"'{path}'")

    def storagePoolCreateXML(self, xml, flags=0):
        import re

        self._up()
        name = re.search(r"<name>(.*?)</name>", xml).group(1)
        path = re.search(r"<path>(.*?)</path>", xml).group(1)
        self.daemon.pool_builds.append((path, flags))
        pool = FakePool(self.daemon, name, path, transient=True)
        self.daemon.pools.append(pool)
        return pool


class FakeDaemon:
    """One host's libvirtd."""

    def __init__(self, name, lib_version=9_000_000, qemu_version=7_002_000):
        self.name = name
        self.uri = f"fake+unix:///{name}"
        self.lib_version, self.qemu_version = lib_version, qemu_version
        self.running = True
        #: What this daemon says of a post-copy half (the recovery's probe).
        self.half_gone = False
        self.domains = {}
        self.pools = []
        self.files = {}
        self.pool_capacity = 1 << 40
        self.disk_sizes = {}
        self.created_volumes, self.pool_builds, self.defined = [], [], []
        self.migrations = []
        self.peers = {}
        self.job_callbacks = []
        self.gate = threading.Event()
        self.gate.set()
        self.job_started = threading.Event()
        self.migrate_error = None
        self.downtime_error = None
        self.stats_error = None
        self.running_stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": 1500,
                              "data_total": 100, "data_processed": 40, "data_remaining": 60,
                              "memory_total": 100, "memory_processed": 40,
                              "memory_remaining": 60,
                              "memory_dirty_rate": 10, "memory_page_size": 4096,
                              "memory_iteration": 2}
        self.completed_event_stats = {"type": libvirt.VIR_DOMAIN_JOB_COMPLETED,
                                      "data_processed": 100, "data_total": 100,
                                      "downtime": 42}
        self.conns = []

    def connect(self):
        if not self.running:
            raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                           f"Failed to connect socket to '/run/{self.name}': Connection refused")
        conn = FakeConn(self)
        self.conns.append(conn)
        return conn

    def add_pool(self, name, path, active=True):
        pool = FakePool(self, name, path, transient=False)
        pool.active = active
        self.pools.append(pool)
        return pool

    def add_domain(self, name, disk=False, **kwargs):
        dom = FakeDomain(self, name, domain_xml(name, disk), **kwargs)
        self.domains[name] = dom
        return dom


@pytest.fixture
def daemons(monkeypatch):
    """host-a and host-b daemons; ``libvirt.open(uri)`` reaches them."""
    a, b = FakeDaemon("host-a"), FakeDaemon("host-b")
    by_uri = {a.uri: a, b.uri: b}
    for d in (a, b):
        d.peers = {f"qemu+tcp://{o.name}/system": o for o in (a, b) if o is not d}
        d.peers.update({f"qemu+tcp://{ip}/system": b for ip in ("198.51.100.12",)})

    def fake_open(uri=None):
        if uri not in by_uri:
            raise lv_error(libvirt.VIR_ERR_NO_CONNECT, f"no connection driver for {uri}")
        return by_uri[uri].connect()

    monkeypatch.setattr(libvirt, "open", fake_open)
    return a, b


#: Addresses each fake host reports (as the pyroute2 reader would).
HOST_ADDRESSES = {
    "host-a": [("127.0.0.1", "lo"), ("192.0.2.11", "mgmt0"), ("198.51.100.11", "mig0"),
               ("2001:db8:2::11", "mig0")],
    "host-b": [("127.0.0.1", "lo"), ("192.0.2.12", "mgmt0"), ("198.51.100.12", "mig0"),
               ("2001:db8:2::12", "mig0")],
}


@pytest.fixture
def links(monkeypatch):
    """{(netns, ifname): up}; addresses.read() reports HOST_ADDRESSES with these."""
    from migplane.drivers.libvirt import addresses

    state = {}

    def read(netns=None):
        host = netns or "host-a"
        return [addresses.LocalAddress(addr, ifname, state.get((host, ifname), True))
                for addr, ifname in HOST_ADDRESSES[host]]

    monkeypatch.setattr(addresses, "read", read)
    return state


@pytest.fixture
def make_conf():
    def make(daemon, my_ip=None, event_loop=False, driver_opts=None, **lm):
        # static: these tests check the calls libvirt gets (Nova's flags and timing)
        conf = testing.host_conf(daemon.name, my_ip,
                                 **{"poll_interval": 0.01, "strategy": "static", **lm})
        conf.set_override("connection_uri", daemon.uri, group=opts.GROUP)
        conf.set_override("netns", daemon.name, group=opts.GROUP)
        conf.set_override("event_loop", event_loop, group=opts.GROUP)
        conf.set_override("job_end_timeout", 2, group=opts.GROUP)
        for name, value in (driver_opts or {}).items():
            conf.set_override(name, value, group=opts.GROUP)
        return conf
    return make


@pytest.fixture
def make_drivers(daemons, links, make_conf):
    """(source, destination) LibvirtDrivers for host-a and host-b."""
    from migplane.drivers.libvirt import driver as driver_mod

    a, b = daemons

    def make(my_ip="198.51.100.12", source_opts=None, dest_opts=None, **lm):
        src = driver_mod.LibvirtDriver(make_conf(a, driver_opts=source_opts, **lm))
        dst = driver_mod.LibvirtDriver(make_conf(b, my_ip=my_ip, driver_opts=dest_opts, **lm))
        return src, dst
    return make
