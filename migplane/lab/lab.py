"""The multi-host lab: N libvirt hosts on one machine, joined by a management
plane and a migration plane, plus a controller namespace (the operator's
workstation) that sees only the management plane.

Everything is prefixed with the lab's name, recorded in a state file before
it is created, and removed by `down()`, which needs nothing but that file.
"""

import os
import re
import shutil
import signal
import time
import uuid
from pathlib import Path

from . import daemon
from . import net
from . import plan
from . import shaping
from . import state
from . import tls
from .errors import LabError
from .proc import alive
from .proc import in_netns
from .proc import netns_pids
from .proc import run
from .proc import terminate
from .proc import wait_dead

IMAGE_ROOT = Path(os.environ.get("MIGPLANE_LAB_IMAGE_ROOT", "/var/lib/migplane-lab"))
STATE_VERSION = 1
#: What a lab guest may be called (it names the QEMU pidfile).
GUEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class LabHost:
    """One hypervisor host: a netns + private mount/UTS namespaces + libvirtd."""

    mgmt_if = plan.IFNAMES["management"]
    mig_if = plan.IFNAMES["migration"]

    def __init__(self, lab, index, name, netns, mgmt_ip, mig_ip, mgmt_ip6, mig_ip6,
                 root, host_uuid, holder_pid=None, libvirtd_pid=None,
                 libvirtd_listen="management", keepalive_count=daemon.KEEPALIVE_COUNT):
        self.lab = lab
        self.index = index
        self.name = name
        self.netns = netns
        self.mgmt_ip, self.mig_ip = mgmt_ip, mig_ip
        self.mgmt_ip6, self.mig_ip6 = mgmt_ip6, mig_ip6
        self.root = Path(root)
        self.host_uuid = host_uuid
        self.holder_pid = holder_pid
        self.libvirtd_pid = libvirtd_pid
        self.libvirtd_listen = daemon.check_listen(libvirtd_listen)
        self.keepalive_count = daemon.check_keepalive_count(keepalive_count)

    def __repr__(self):
        return f"<LabHost {self.name} {self.mgmt_ip}/{self.mig_ip} libvirtd={self.libvirtd_pid}>"

    # -- addressing -------------------------------------------------------
    @property
    def socket(self):
        return daemon.socket_path(self.root)

    @property
    def uri(self):
        """Usable from the root namespace: the socket is on a bind-mounted dir."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def tcp_uri(self):
        return f"qemu+tcp://{self.name}/system"

    @property
    def mig_name(self):
        """Hostname that resolves (inside the lab) to the migration address."""
        return f"{self.name}-mig"

    @property
    def pki_dir(self):
        return self.root / daemon.PKI_SUBDIR / "qemu"

    def addresses(self):
        return [self.mgmt_ip, self.mig_ip, self.mgmt_ip6, self.mig_ip6]

    def ip(self, plane, family=4):
        p = "mgmt" if plan.plane(plane) == "management" else "mig"
        return getattr(self, f"{p}_ip" if family == 4 else f"{p}_ip6")

    def ifname(self, plane):
        return plan.IFNAMES[plan.plane(plane)]

    def host_path(self, path):
        """Where a path inside this host lives in the root namespace."""
        path = str(path)
        for target, sub in {**daemon.PRIVATE_DIRS, **daemon.ETC_ENTRIES}.items():
            if path == target or path.startswith(target + "/"):
                return self.root / sub / path[len(target):].lstrip("/")
        return Path(path)

    # -- commands ---------------------------------------------------------
    def run(self, argv, check=True, timeout=60, input=None, env=None):
        """Run argv inside this host's net+mount+UTS namespaces."""
        if not alive(self.holder_pid) or not in_netns(self.holder_pid, self.netns):
            raise LabError(f"{self.name} is not up (no namespace holder)")
        return daemon.run_in(self.holder_pid, argv, check=check, timeout=timeout,
                             input=input, env=env)

    # -- network ----------------------------------------------------------
    def ping(self, ip, count=1, timeout=1):
        """True if `ip` answers ICMP echo from this host."""
        return ping_argv_ok(self.run, ip, count, timeout)

    def counters(self):
        return {p: net.counters(self.netns, plan.IFNAMES[p]) for p in plan.PLANES}

    def set_link(self, plane, up):
        p = plan.plane(plane)
        net.set_link(self.netns, plan.IFNAMES[p], up, [self.ip(p, 6)])

    def link_up(self, plane):
        return net.link_up(self.netns, self.ifname(plane))

    def set_tcp_reset(self, plane, on):
        """Answer every TCP segment in or out of a plane's interface with a
        reset (on) or stop doing so (off): a stream over that plane really
        breaks, where a link down only stalls it."""
        ifname = self.ifname(plane)
        for tool in ("iptables", "ip6tables"):
            for chain, way in (("INPUT", "-i"), ("OUTPUT", "-o")):
                # resets themselves pass: the peer must get the one sent for it
                rule = [chain, way, ifname, "-p", "tcp", "!", "--tcp-flags", "RST", "RST",
                        "-j", "REJECT", "--reject-with", "tcp-reset"]
                present = net.iptables(self.netns, tool, "-C", *rule, check=False)
                if on and present.returncode != 0:
                    net.iptables(self.netns, tool, "-I", *rule)
                while not on and present.returncode == 0:
                    net.iptables(self.netns, tool, "-D", *rule)
                    present = net.iptables(self.netns, tool, "-C", *rule, check=False)

    # -- guests -----------------------------------------------------------
    def qemu_pid(self, name):
        """The pid of guest ``name``'s QEMU on this host, from libvirt's own
        pidfile under the host's root; None when no such QEMU runs here."""
        if not GUEST_NAME.fullmatch(name):
            raise LabError(f"bad guest name {name!r}")
        path = self.host_path(f"/run/libvirt/qemu/{name}.pid")
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and in_netns(pid, self.netns) else None

    def kill_qemu(self, name, sig=signal.SIGKILL):
        """Kill guest ``name``'s QEMU on this host (a crash); return its pid."""
        pid = self.qemu_pid(name)
        if pid is None:
            raise LabError(f"no QEMU of {name} runs on {self.name}")
        os.kill(pid, sig)
        if sig == signal.SIGKILL and wait_dead([pid], 10):
            raise LabError(f"QEMU {pid} of {name} on {self.name} survived SIGKILL")
        return pid

    # -- libvirtd ---------------------------------------------------------
    def libvirtd_alive(self):
        return bool(self.libvirtd_pid) and alive(self.libvirtd_pid) \
            and in_netns(self.libvirtd_pid, self.netns)

    def kill_libvirtd(self, sig=signal.SIGKILL):
        """Kill this host's libvirtd by its pid (a crash, by default SIGKILL).
        Guests keep running, as with a real daemon crash."""
        pid = self.libvirtd_pid
        if pid and alive(pid) and in_netns(pid, self.netns):
            os.kill(pid, sig)
            if wait_dead([pid], 10):
                raise LabError(f"libvirtd {pid} on {self.name} survived signal {sig}")
        self.libvirtd_pid = None
        self.lab._save()

    def start_libvirtd(self, wait=True, timeout=60):
        if self.libvirtd_alive():
            raise LabError(f"libvirtd already runs on {self.name} (pid {self.libvirtd_pid})")
        pidfile = self.root / "run/libvirt/libvirtd.pid"
        if pidfile.exists():
            pidfile.unlink()
        self.libvirtd_pid = daemon.start_libvirtd(self.holder_pid, self.root)
        self.lab._save()
        if wait:
            daemon.wait_ready(self.libvirtd_pid, self.root, self.uri, timeout)
        return self.libvirtd_pid

    def wait_libvirtd(self, timeout=60):
        daemon.wait_ready(self.libvirtd_pid, self.root, self.uri, timeout)

    def set_libvirtd_listen(self, listen, timeout=60):
        """Make libvirtd listen on the management address only ("management")
        or on every address of the host ("all"): rewrite libvirtd.conf and, if
        libvirtd runs, restart it (SIGTERM by pid; guests keep running).
        Returns libvirtd's pid (None if it was not running)."""
        return self._reconfigure(daemon.check_listen(listen), self.keepalive_count, timeout)

    def set_keepalive_count(self, count, timeout=60):
        """Set libvirt's keepalive count (``daemon.KEEPALIVE_*``) for this host's
        daemon and its peer-to-peer connections, restarting libvirtd as
        `set_libvirtd_listen` does."""
        return self._reconfigure(self.libvirtd_listen, daemon.check_keepalive_count(count),
                                 timeout)

    def _reconfigure(self, listen, keepalive_count, timeout):
        changed = (listen, keepalive_count) != (self.libvirtd_listen, self.keepalive_count)
        self.libvirtd_listen, self.keepalive_count = listen, keepalive_count
        daemon.write_confs(self.root, self.mgmt_ip, self.host_uuid, listen, keepalive_count)
        self.lab._save()
        if self.libvirtd_alive() and changed:
            self.kill_libvirtd(signal.SIGTERM)
            self.start_libvirtd(timeout=timeout)
        return self.libvirtd_pid if self.libvirtd_alive() else None

    # -- state ------------------------------------------------------------
    def to_dict(self):
        return {"index": self.index, "name": self.name, "netns": self.netns,
                "mgmt_ip": self.mgmt_ip, "mig_ip": self.mig_ip,
                "mgmt_ip6": self.mgmt_ip6, "mig_ip6": self.mig_ip6,
                "root": str(self.root), "host_uuid": self.host_uuid,
                "holder_pid": self.holder_pid, "libvirtd_pid": self.libvirtd_pid,
                "libvirtd_listen": self.libvirtd_listen,
                "keepalive_count": self.keepalive_count}


class Lab:
    """N hosts + switch + controller. `up()`, `down()`, `status()`.

    libvirtd_listen: where every host's libvirtd listens for TCP,
    "management" (its management address, the default) or "all" (every
    address: needed by tunnelled migrations that dial the destination's
    inbound, migration-plane address). One host can be changed later with
    `LabHost.set_libvirtd_listen`.
    """

    def __init__(self, name, hosts=2, base_dir=None, image_dir=None,
                 caps_cache=daemon.DEFAULT_CAPS_CACHE, libvirtd_listen="management"):
        self.name = plan.check_name(name)
        self.libvirtd_listen = daemon.check_listen(libvirtd_listen)
        if not 1 <= int(hosts) <= plan.MAX_HOSTS:
            raise ValueError(f"hosts must be 1..{plan.MAX_HOSTS}")
        self.n_hosts = int(hosts)
        self.base_dir = Path(base_dir) if base_dir else state.state_dir(name)
        self.image_dir = Path(image_dir) if image_dir else IMAGE_ROOT / name
        self.caps_cache = Path(caps_cache) if caps_cache else None
        self.switch_netns = plan.switch_netns(name)
        self.controller_netns = plan.controller_netns(name)
        self.shaping = {}
        self.tls_names = None
        self.phase = "new"
        self.hosts = [self._new_host(i) for i in range(self.n_hosts)]
        sock = len(str(self.hosts[-1].socket)) + 3
        if sock > 107:
            raise ValueError(f"base_dir too long for a unix socket path ({sock} > 107)")

    def _new_host(self, i):
        return LabHost(self, i, plan.hostname(i), plan.host_netns(self.name, i),
                       root=self.base_dir / "hosts" / plan.hostname(i),
                       host_uuid=str(uuid.uuid4()), libvirtd_listen=self.libvirtd_listen,
                       **plan.host_addrs(i))

    def __repr__(self):
        return f"<Lab {self.name} hosts={self.n_hosts} {self.phase}>"

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    # -- state ------------------------------------------------------------
    @property
    def state_file(self):
        return state.state_path(self.name)

    def _save(self):
        state.save(self.name, {
            "version": STATE_VERSION, "name": self.name, "phase": self.phase,
            "n_hosts": self.n_hosts, "base_dir": str(self.base_dir),
            "libvirtd_listen": self.libvirtd_listen,
            "image_dir": str(self.image_dir),
            "caps_cache": str(self.caps_cache) if self.caps_cache else None,
            "switch_netns": self.switch_netns, "controller_netns": self.controller_netns,
            "hosts": [h.to_dict() for h in self.hosts], "shaping": self.shaping,
            "tls_names": self.tls_names, "owner_pid": os.getpid(),
            "saved_at": time.time()})

    @classmethod
    def load(cls, name):
        """Rebuild a Lab from its state file (e.g. to `down()` after a crash)."""
        data = state.load(plan.check_name(name))
        if data is None:
            raise LabError(f"no state file for lab {name!r} ({state.state_path(name)})")
        lab = cls(name, hosts=data["n_hosts"], base_dir=data["base_dir"],
                  image_dir=data["image_dir"], caps_cache=data.get("caps_cache"),
                  # state files written before the option existed: management
                  libvirtd_listen=data.get("libvirtd_listen", "management"))
        lab.phase = data.get("phase", "unknown")
        lab.shaping = data.get("shaping") or {}
        lab.tls_names = data.get("tls_names")
        lab.hosts = []
        for h in data["hosts"]:
            h = dict(h)
            lab.hosts.append(LabHost(lab, **h))
        return lab

    @staticmethod
    def exists(name):
        return state.load(name) is not None

    @staticmethod
    def names():
        return state.names()

    # -- lookup -------------------------------------------------------------
    def host(self, name):
        for h in self.hosts:
            if h.name == name or h.netns == name:
                return h
        raise LabError(f"no host {name!r} in lab {self.name}")

    def __getitem__(self, i):
        return self.hosts[i]

    @property
    def controller_root(self):
        return self.base_dir / "controller"

    @property
    def shared_dir(self):
        """Read-only files every host sees at the same path (not bind-mounted)."""
        return self.image_dir

    # -- up -----------------------------------------------------------------
    def up(self, timeout=120):
        """Create everything; on any failure tear down what was made and raise."""
        if self.exists(self.name):
            raise LabError(f"lab {self.name!r} already has state; down() it first")
        for d in (self.base_dir, self.image_dir):
            if d.exists() and any(d.iterdir()):
                raise LabError(f"{d} exists and is not empty")
        t0 = time.monotonic()
        self.phase = "creating"
        self._save()   # before anything exists, so down() can always clean up
        try:
            self._up_network()
            self._up_hosts(timeout)
        except BaseException as exc:
            try:
                self.down()
            except Exception as down_exc:   # report both
                raise LabError(f"lab up failed ({exc!r}); cleanup failed too: "
                               f"{down_exc}") from exc
            if isinstance(exc, LabError) or not isinstance(exc, Exception):
                raise
            raise LabError(f"lab {self.name} up failed: {exc!r}") from exc
        self.phase = "up"
        self._save()
        self.up_seconds = time.monotonic() - t0
        return self

    def _all_netns(self):
        return [self.switch_netns, self.controller_netns, *[h.netns for h in self.hosts]]

    def _up_network(self):
        for d in (self.base_dir, self.image_dir, self.controller_root):
            d.mkdir(parents=True, exist_ok=True)
        self.image_dir.chmod(0o755)
        for ns in self._all_netns():
            net.add_netns(ns)
        net.make_switch(self.switch_netns)
        hosts_text = plan.hosts_file(self.n_hosts)
        # controller: management plane only
        ctl = self.controller_netns
        net.prepare_endpoint(ctl)
        net.attach(self.switch_netns, plan.switch_port("management", None), "management",
                   ctl, plan.IFNAMES["management"], [plan.CONTROLLER_IP], [plan.CONTROLLER_IP6])
        (self.controller_root / "hosts").write_text(hosts_text)
        etc = Path("/etc/netns") / ctl
        etc.mkdir(parents=True, exist_ok=True)
        if not (etc / "hosts").is_symlink():
            (etc / "hosts").symlink_to(self.controller_root / "hosts")
        for h in self.hosts:
            net.prepare_endpoint(h.netns)
            for p in plan.PLANES:
                net.attach(self.switch_netns, plan.switch_port(p, h.index), p, h.netns,
                           plan.IFNAMES[p], [h.ip(p, 4)], [h.ip(p, 6)])
            daemon.prepare_root(h.root, h.netns, h.mgmt_ip, h.host_uuid, hosts_text,
                                listen=h.libvirtd_listen, keepalive_count=h.keepalive_count)
        self._save()

    def _up_hosts(self, timeout):
        for h in self.hosts:
            h.holder_pid = daemon.start_holder(h.netns, h.root, h.name)
        self._save()
        first, rest = self.hosts[0], self.hosts[1:]
        daemon.seed_caps(first.root, self.caps_cache)
        first.start_libvirtd(wait=True, timeout=timeout)
        daemon.save_caps(first.root, self.caps_cache)
        # the others reuse host-a's freshly validated probe: no 8 s each
        for h in rest:
            daemon.seed_caps(h.root, first.root / "cache/qemu/capabilities")
            h.start_libvirtd(wait=False)
        for h in rest:
            h.wait_libvirtd(timeout)

    # -- down ---------------------------------------------------------------
    def down(self):
        """Remove everything the lab created. Idempotent; works from the state
        file alone, and without it from the lab's (unambiguous) names."""
        data = state.load(self.name)
        # the state file wins over this object (it may come from another process)
        src = Lab.load(self.name) if data is not None else self
        errors = []
        host_ns = [h.netns for h in src.hosts]
        if data is None:   # no state: look for every name this lab could use
            host_ns = [plan.host_netns(self.name, i) for i in range(plan.MAX_HOSTS)]
        # daemons first, so libvirtd does not react to its guests dying
        daemons = [h.libvirtd_pid for h in src.hosts
                   if h.libvirtd_pid and in_netns(h.libvirtd_pid, h.netns)]
        try:
            terminate(daemons, grace=5)
        except LabError as exc:
            errors.append(str(exc))
        all_ns = [self.switch_netns, self.controller_netns, *host_ns]
        try:
            terminate([p for ns in all_ns for p in netns_pids(ns)], grace=5)
        except LabError as exc:
            errors.append(str(exc))
        for ns in all_ns:
            try:
                net.del_netns(ns)
            except LabError as exc:
                errors.append(str(exc))
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        for d in (src.base_dir, src.image_dir):
            if d.exists():
                mounted = _mounts_under(d)
                if mounted:
                    errors.append(f"not removing {d}: mounts under it: {mounted}")
                    continue
                shutil.rmtree(d, ignore_errors=True)
        for h in self.hosts:
            h.holder_pid = h.libvirtd_pid = None
        self.phase = "down"
        self.shaping = {}
        if errors:
            raise LabError(f"lab {self.name} down incomplete: {'; '.join(errors)}")
        state.remove(self.name)

    # -- status -------------------------------------------------------------
    def status(self):
        existing = set()
        cp = run(["ip", "netns", "list"], timeout=30)
        for line in cp.stdout.splitlines():
            if line.strip():
                existing.add(line.split()[0])
        hosts = []
        for h in self.hosts:
            d = {k: v for k, v in h.to_dict().items() if k != "index"}
            d.update(uri=h.uri, tcp_uri=h.tcp_uri, netns_exists=h.netns in existing,
                     holder_alive=alive(h.holder_pid), libvirtd_alive=h.libvirtd_alive())
            if d["netns_exists"]:
                try:
                    d["links"] = {p: h.link_up(p) for p in plan.PLANES}
                    d["counters"] = h.counters()
                except LabError as exc:
                    d["error"] = str(exc)
            hosts.append(d)
        healthy = (self.phase == "up" and all(
            d["netns_exists"] and d["holder_alive"] and d["libvirtd_alive"] for d in hosts)
            and {self.switch_netns, self.controller_netns} <= existing)
        return {
            "name": self.name, "phase": self.phase, "healthy": healthy,
            "state_file": str(self.state_file), "base_dir": str(self.base_dir),
            "image_dir": str(self.image_dir), "switch_netns": self.switch_netns,
            "controller": {"netns": self.controller_netns, "ip": plan.CONTROLLER_IP,
                           "ip6": plan.CONTROLLER_IP6,
                           "exists": self.controller_netns in existing},
            "shaping": self.shaping, "tls_names": self.tls_names, "hosts": hosts}

    # -- controller ---------------------------------------------------------
    def run_controller(self, argv, check=True, timeout=60, input=None, env=None):
        """Run argv on the operator's workstation (management plane only)."""
        return run(["ip", "netns", "exec", self.controller_netns, *argv], check=check,
                   timeout=timeout, input=input, env=env)

    def controller_ping(self, ip, count=1, timeout=1):
        return ping_argv_ok(self.run_controller, ip, count, timeout)

    # -- shaping --------------------------------------------------------------
    def shape(self, plane, rate="100mbit", delay=None, hosts=None):
        """Shape a plane on every host (or on `hosts`): rate on each host's
        egress, delay (e.g. '20ms') one-way, once per direction; rate=None
        for delay only. Replaces earlier shaping of that plane."""
        p = plan.plane(plane)
        self.unshape(p)
        targets = [self.host(h) if isinstance(h, str) else h for h in hosts] if hosts \
            else self.hosts
        per_host = {}
        self.shaping[p] = {"rate": rate, "delay": delay, "hosts": per_host}
        try:
            for h in targets:
                per_host[h.name] = shaping.shape(h.netns, plan.IFNAMES[p], rate, delay,
                                                 log_dir=h.root)
                self._save()
        except BaseException:
            self.unshape(p)
            raise

    def unshape(self, plane=None):
        planes = [plan.plane(plane)] if plane else list(plan.PLANES)
        for p in planes:
            done = self.shaping.get(p, {}).get("hosts", {})
            for h in self.hosts:
                shaping.clear(h.netns, plan.IFNAMES[p], done.get(h.name, {}).get("delay_pid"))
            self.shaping.pop(p, None)
        self._save()

    # -- TLS ----------------------------------------------------------------
    def setup_tls(self, names=None):
        """Issue CA-signed server+client certs into every host's pki dir.
        names: {host: [dns names / IPs]} for the server cert (default: the
        hostname). Re-callable, e.g. to issue wrong-name certs."""
        names = dict(names or {})
        ca_key, ca_cert = tls.ensure_ca(self.base_dir / "tls", self.name)
        used = {}
        serial = int(time.time() * 1000) % (1 << 40)
        for h in self.hosts:
            host_names = list(names.get(h.name, [h.name]))
            tls.issue_host(ca_key, ca_cert, h.pki_dir, h.name, host_names, serial)
            serial += 2
            used[h.name] = host_names
        self.tls_names = used
        self._save()
        return used

    # -- guest ----------------------------------------------------------------
    def build_guest(self):
        """Build (or reuse) the test guest kernel into the shared image dir."""
        from . import guest
        return guest.build(self.image_dir)


def _mounts_under(path):
    path = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def ping_argv_ok(runner, ip, count, timeout):
    """iputils ping if installed, else busybox's (Debian's busybox-static)."""
    ping = shutil.which("ping")
    argv = [ping] if ping else ["busybox", "ping"]
    cp = runner([*argv, "-c", str(count), "-W", str(timeout), ip], check=False,
                timeout=count * (timeout + 1) + 5)
    return cp.returncode == 0
