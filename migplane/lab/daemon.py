"""One host's private namespaces and its own libvirtd.

A small *holder* process (`sleep infinity`) owns the host's mount and UTS
namespaces, so libvirtd can be killed and restarted (fault tests) without
losing the host's private bind mounts; libvirtd and every command run "on the
host" enter the holder's namespaces with nsenter, which execs, so the pid we
spawn is the daemon's own pid.
"""

import os
import shlex
import shutil
import socket
import time
from pathlib import Path

from .errors import LabError
from .proc import alive
from .proc import exit_code
from .proc import reap_qemus
from .proc import run
from .proc import spawn

LIBVIRTD = "/usr/sbin/libvirtd"
SLEEP = shutil.which("sleep") or "/bin/sleep"
DEFAULT_CAPS_CACHE = Path("/var/cache/migplane-lab/qemu-capabilities")

# in-host path -> directory under the host's root that is bind-mounted there
PRIVATE_DIRS = {
    "/run/libvirt": "run/libvirt",
    "/var/lib/libvirt": "lib",
    "/var/cache/libvirt": "cache",
    "/var/log/libvirt": "log",
}
# in-host path -> file/dir under the host's root, bound by `ip netns exec`
# from /etc/netns/<netns>/
ETC_ENTRIES = {"/etc/hosts": "etc/hosts", "/etc/libvirt": "etc/libvirt"}
PKI_SUBDIR = "etc/pki"


#: Where a host's libvirtd listens for TCP: "management", its management
#: address only (the default: peers and the controller dial host names, which
#: resolve to it), or "all", every address of the host. A tunnelled migration
#: with an inbound address set dials the destination's libvirtd on that
#: (migration-plane) address, which needs "all".
LIBVIRTD_LISTEN = ("management", "all")


def check_listen(listen):
    if listen not in LIBVIRTD_LISTEN:
        raise ValueError(f"libvirtd_listen must be one of {', '.join(LIBVIRTD_LISTEN)}, "
                         f"not {listen!r}")
    return listen


#: libvirt's keepalive for the daemons' own connections: libvirtd.conf's for
#: the connections a daemon serves (the destination's end of the peer-to-peer
#: one), qemu.conf's for the peer-to-peer connection a source opens. Between
#: the switch to post-copy and libvirt's Finish the destination holds the
#: incoming guest paused and destroys it when the source's connection closes;
#: with libvirt's default (5 x 5 s) a management outage of 30 s there lost the
#: guest. About two minutes of silence lets TCP carry Finish across the
#: outages the fault matrix strikes (10-60 s); a dead peer is still noticed,
#: later, and migplane's own deadlines do not wait for it.
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 24
#: libvirt's own default count, for tests of a host that kept it.
LIBVIRT_DEFAULT_KEEPALIVE_COUNT = 5


def check_keepalive_count(count):
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"keepalive_count must be a whole number >= 1, not {count!r}")
    return count


def keepalive_lines(count):
    return (f"keepalive_interval = {KEEPALIVE_INTERVAL_S}\n"
            f"keepalive_count = {check_keepalive_count(count)}\n")


def libvirtd_conf(mgmt_ip, host_uuid, listen="management", keepalive_count=KEEPALIVE_COUNT):
    if check_listen(listen) == "management":
        listen_line = f'listen_addr = "{mgmt_ip}"'
    else:   # without listen_addr libvirtd binds every IPv4 and IPv6 address
        listen_line = "# listen_addr unset: every address (libvirtd_listen=all)"
    return f"""# written by migplane.lab
listen_tls = 0
listen_tcp = 1
{listen_line}
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
{keepalive_lines(keepalive_count)}"""


def qemu_conf(pki_dir, keepalive_count=KEEPALIVE_COUNT):
    return f"""# written by migplane.lab
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
default_tls_x509_cert_dir = "{pki_dir}"
default_tls_x509_verify = 1
migrate_tls_x509_cert_dir = "{pki_dir}"
migrate_tls_x509_verify = 1
{keepalive_lines(keepalive_count)}"""


def libvirtd_conf_path(root):
    return Path(root) / "etc/libvirt/libvirtd.conf"


def write_confs(root, mgmt_ip, host_uuid, listen="management",
                keepalive_count=KEEPALIVE_COUNT):
    """(Re)write the host's libvirtd.conf and qemu.conf; libvirtd reads them
    when it starts."""
    root = Path(root)
    libvirtd_conf_path(root).write_text(
        libvirtd_conf(mgmt_ip, host_uuid, listen, keepalive_count))
    qconf = root / "etc/libvirt/qemu.conf"
    qconf.write_text(qemu_conf(root / PKI_SUBDIR / "qemu", keepalive_count))
    qconf.chmod(0o600)


def prepare_root(root, netns, mgmt_ip, host_uuid, hosts_text, listen="management",
                 keepalive_count=KEEPALIVE_COUNT):
    """Create the host's private tree and its /etc/netns/<netns> entries."""
    root = Path(root)
    for sub in [*PRIVATE_DIRS.values(), "etc/libvirt", f"{PKI_SUBDIR}/qemu", "lib/images",
                "log/qemu"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc/hosts").write_text(hosts_text)
    write_confs(root, mgmt_ip, host_uuid, listen, keepalive_count)
    entries = dict(ETC_ENTRIES)
    if Path("/etc/pki").is_dir():
        entries["/etc/pki"] = PKI_SUBDIR
    etc_dir = Path("/etc/netns") / netns
    etc_dir.mkdir(parents=True, exist_ok=True)
    for target, sub in entries.items():
        link = etc_dir / Path(target).name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(root / sub)
    return etc_dir


def holder_script(root, hostname):
    binds = []
    for target, sub in PRIVATE_DIRS.items():
        binds.append(f"mount --bind {shlex.quote(str(Path(root) / sub))} {target}")
    # Drop our copy of /run/netns so this mount namespace pins no other
    # lab's network namespaces.
    return " && ".join([
        "set -e", *binds,
        "(umount -l /run/netns 2>/dev/null || true)",
        f"hostname {shlex.quote(hostname)}",
        f"exec {SLEEP} infinity",
    ])


def start_holder(netns, root, hostname, timeout=10):
    """Spawn the namespace holder; return its pid once its mounts are in place."""
    for target in PRIVATE_DIRS:
        # mount points must exist; libvirt-daemon-system normally creates
        # these, /run/libvirt only exists while a system libvirtd runs
        Path(target).mkdir(parents=True, exist_ok=True)
    argv = ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts",
            "--propagation", "private", "sh", "-c", holder_script(root, hostname)]
    pid = spawn(argv, Path(root) / "holder.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") == os.path.realpath(SLEEP):
                return pid
        except OSError:
            pass
        if not alive(pid):
            break
        time.sleep(0.02)
    log = (Path(root) / "holder.log").read_text(errors="replace")[-2000:]
    raise LabError(f"namespace holder for {hostname} did not start (exit "
                   f"{exit_code(pid)}): {log}")


def nsenter(holder_pid):
    return ["nsenter", "-t", str(holder_pid), "-n", "-m", "-u", "--"]


def seed_caps(root, cache_dir):
    """Copy cached QEMU capabilities in: probing takes ~8 s per host under TCG.
    libvirt re-validates them (binary ctimes, kernel, microcode) and simply
    re-probes if they are stale."""
    if not cache_dir or not Path(cache_dir).is_dir():
        return
    dst = Path(root) / "cache/qemu/capabilities"
    dst.mkdir(parents=True, exist_ok=True)
    for f in Path(cache_dir).glob("*.xml"):
        shutil.copy2(f, dst / f.name)


def save_caps(root, cache_dir):
    """Publish a host's probed capabilities to the shared cache (atomically)."""
    if not cache_dir:
        return
    src = Path(root) / "cache/qemu/capabilities"
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.xml"):
            tmp = Path(cache_dir) / f".{f.name}.{os.getpid()}.tmp"
            shutil.copy2(f, tmp)
            os.replace(tmp, Path(cache_dir) / f.name)
    except OSError:
        pass  # a cache only


def start_libvirtd(holder_pid, root):
    reap_qemus()
    argv = [*nsenter(holder_pid), LIBVIRTD, "--listen",
            "--pid-file", "/run/libvirt/libvirtd.pid"]
    return spawn(argv, Path(root) / "libvirtd.out")


def socket_path(root):
    return Path(root) / "run/libvirt/libvirt-sock"


def wait_socket(pid, root, timeout=30):
    """Wait until libvirtd accepts connections on its unix socket."""
    path = str(socket_path(root))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise LabError(f"libvirtd {pid} died: {tail_log(root)}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.05)
    raise LabError(f"libvirtd {pid} not listening after {timeout}s: {tail_log(root)}")


def wait_ready(pid, root, uri, timeout=60):
    """Socket up, then one real API call that also runs the capability probe."""
    import libvirt  # local: the rest of the lab works without the binding

    wait_socket(pid, root, timeout)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            conn = libvirt.open(uri)
            try:
                conn.getCapabilities()
                return
            finally:
                conn.close()
        except libvirt.libvirtError as exc:
            last = exc
            if not alive(pid):
                break
            time.sleep(0.1)
    raise LabError(f"libvirtd {pid} not ready: {last}; {tail_log(root)}")


def tail_log(root, n=1500):
    out = []
    for name in ("libvirtd.out", "log/libvirtd.log"):
        p = Path(root) / name
        if p.exists():
            out.append(f"[{name}] " + p.read_text(errors="replace")[-n:])
    return " ".join(out)


def run_in(holder_pid, argv, check=True, timeout=60, input=None, env=None):
    return run([*nsenter(holder_pid), *argv], check=check, timeout=timeout,
               input=input, env=env)
