"""The test guest: build the bare-metal multiboot kernel from guest/ and
describe it to libvirt.

Why not a Linux guest: under TCG a Debian cloud kernel was corrupted when
migrated while dirtying memory; this 32-bit kernel (paging off) migrates
intact, boots in well under a second and checks its own memory.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

from .errors import LabError

# The sources ship inside the package (``guest/`` in a checkout links here), so
# that ``migplane demo`` builds the guest from an installed wheel too.
GUEST_SRC = Path(os.environ.get("MIGPLANE_GUEST_SRC",
                                Path(__file__).resolve().parent / "guest_src"))
SOURCES = ("boot.S", "kernel.c", "linker.ld")
CFLAGS = ["-m32", "-march=i686", "-ffreestanding", "-nostdlib", "-fno-pie", "-no-pie",
          "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-mgeneral-regs-only",
          "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-Wl,--build-id=none",
          "-Wl,--no-warn-rwx-segments"]
DEFAULT_CONSOLE = "/var/log/libvirt/qemu/{name}-console.log"
IMAGES_DIR = "/var/lib/libvirt/images"   # private per host: each keeps its own disk


def source_hash(src_dir=GUEST_SRC):
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (Path(src_dir) / name).read_bytes() + b"\0")
    h.update(" ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def build(out_dir, src_dir=GUEST_SRC, cc="gcc"):
    """Compile guest/ into out_dir/mpguest-<source hash>.elf (cached)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out = out_dir / f"mpguest-{source_hash(src_dir)}.elf"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_out = Path(tmp) / out.name
        argv = [cc, *CFLAGS, f"-Wl,-T,{src_dir / 'linker.ld'}", "-o", str(tmp_out),
                str(src_dir / "boot.S"), str(src_dir / "kernel.c")]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            raise LabError(f"guest build failed ({' '.join(argv)}):\n{cp.stderr}")
        tmp_out.chmod(0o644)
        os.replace(tmp_out, out)
    return out


def cmdline(tick_ms=100, dirty_mib=0, rate_mib_s=0, stamp_mib=0, disk_write=False,
            **extra):
    """Kernel command line for the guest (see guest/kernel.c for the keys)."""
    args = {"tick_ms": tick_ms, "dirty_mib": dirty_mib, "rate_mib_s": rate_mib_s,
            "stamp_mib": stamp_mib, "disk_write": int(bool(disk_write)), **extra}
    return " ".join(f"{k}={int(v)}" for k, v in args.items())


def console_log(name):
    return DEFAULT_CONSOLE.format(name=name)


def domain_xml(name, kernel, memory_mib=64, cmdline="tick_ms=100", console_log=None,
               disk=None, uuid=None, disk_cache=None):
    """libvirt XML: TCG, default CPU, serial to a file in the host's private
    /var/log/libvirt (source and destination each keep their own), optional
    qcow2 on legacy IDE (what the guest's PIO driver talks to)."""
    console = console_log or DEFAULT_CONSOLE.format(name=name)
    disk_xml = ""
    cache = f" cache={quoteattr(disk_cache)}" if disk_cache else ""
    if disk:
        disk_xml = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'{cache}/>
      <source file={quoteattr(str(disk))}/>
      <target dev='hda' bus='ide'/>
    </disk>"""
    uuid_xml = f"\n  <uuid>{escape(uuid)}</uuid>" if uuid else ""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>{uuid_xml}
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>{disk_xml}
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path={quoteattr(console)} append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def create_disk(host, name, size_mib=16):
    """Create an empty qcow2 in the host's private images dir; return its
    in-host path. Call it on the destination too before a block migration."""
    path = f"{IMAGES_DIR}/{name}.qcow2"
    host.run(["qemu-img", "create", "-q", "-f", "qcow2", path, f"{int(size_mib)}M"])
    return path


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def disk_checksum(host, path, lba=1, sectors=4):
    """FNV-1a of the sectors the guest wrote, as printed in `MPDISK sum=`.
    Reads with force-share, so the guest may still be running."""
    src = host.host_path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "disk.raw"
        cp = subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw",
                             str(src), str(raw)], capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            raise LabError(f"qemu-img convert {src}: {cp.stderr}")
        with open(raw, "rb") as f:
            f.seek(lba * 512)
            data = f.read(sectors * 512)
    return f"{fnv1a(data):08x}"


def define_guest(host, name, kernel, start=True, fresh_console=True, **xml_kwargs):
    """Define (and start) the guest on a LabHost; return the domain XML used.
    fresh_console empties this host's console file so old boots do not show."""
    import libvirt

    xml = domain_xml(name, kernel, **xml_kwargs)
    log = host.host_path(xml_kwargs.get("console_log") or console_log(name))
    log.parent.mkdir(parents=True, exist_ok=True)
    if fresh_console and log.exists():
        log.unlink()
    conn = libvirt.open(host.uri)
    try:
        dom = conn.defineXML(xml)
        if start:
            dom.create()
    finally:
        conn.close()
    return xml


def destroy_guest(host, name, undefine=True):
    """Best effort: stop and forget a guest on a host."""
    import libvirt

    try:
        conn = libvirt.open(host.uri)
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains():
            if dom.name() != name:
                continue
            persistent = dom.isPersistent()   # a transient one vanishes on destroy
            if dom.isActive():
                dom.destroy()
            if undefine and persistent:
                dom.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


def domains(host):
    """``{name: (libvirt state, persistent)}`` of every domain on ``host``."""
    import libvirt

    conn = libvirt.open(host.uri)
    try:
        return {d.name(): (d.state()[0], bool(d.isPersistent()))
                for d in conn.listAllDomains()}
    finally:
        conn.close()


def state_of(host, name):
    """libvirt's state of domain ``name`` on ``host``, or None when it has none."""
    found = domains(host).get(name)
    return None if found is None else found[0]


def copy_kernel(kernel, dest_dir):
    """Put a kernel where every host sees it at the same path."""
    dest = Path(dest_dir) / Path(kernel).name
    if not dest.exists():
        shutil.copy2(kernel, dest)
    return dest
