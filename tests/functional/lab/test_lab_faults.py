"""Fault injection and shaping are real: throughput drops, delay shows up,
a downed link is seen, a killed libvirtd is gone until restarted."""

import re
import sys
import textwrap
import time

import libvirt
import pytest

from migplane.lab import LabError
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

pytestmark = pytest.mark.lab

RECEIVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(1)
    s.settimeout(30)
    c, _ = s.accept()
    c.settimeout(60)
    # The sender waits for this byte: no data moves before ``go``.
    go = time.monotonic()
    c.sendall(b"g")
    n, first = 0, None
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        if first is None:
            first = time.monotonic()
        n += len(b)
    end = time.monotonic()
    print(n, end - first, end - go)
""")

SENDER = textwrap.dedent("""
    import socket, sys, time
    deadline = time.monotonic() + 60
    while True:
        try:
            s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    s.settimeout(60)
    assert s.recv(1) == b"g"
    buf = b"x" * (1 << 16)
    left = int(sys.argv[3])
    while left > 0:
        s.sendall(buf[:left])
        left -= len(buf)
    s.close()
""")


def throughput(src, dst, nbytes, port=5201):
    """Bytes/s of one TCP stream from src to dst over the migration plane, as
    ``(inner, outer)``: over the span from the first byte received to the last
    (a slow receiver can only shorten it), and over the span from before any
    byte could be sent to the last (which contains the whole transfer, so its
    rate is at most the link's)."""
    import subprocess

    from migplane.lab.daemon import nsenter

    recv = subprocess.Popen([*nsenter(dst.holder_pid), sys.executable, "-c", RECEIVER,
                             dst.mig_ip, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        src.run([sys.executable, "-c", SENDER, dst.mig_ip, str(port), str(nbytes)],
                timeout=60)
        out, _ = recv.communicate(timeout=60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    n, inner, outer = out.split()
    assert int(n) == nbytes
    return nbytes / max(float(inner), 1e-6), nbytes / float(outer)


def rtt_ms(src, ip, user_to_user=False, count=5):
    """The least round trip to ``ip`` of ``count`` pings, as ping measures it:
    process start is never counted. By default the reply's time is the kernel's
    receive timestamp, taken before ``src``'s own ingress (where the lab's delay
    sits), so that delay is left out, and so is any lateness of the ping
    process. ``user_to_user`` (ping -U) counts both in: a figure that can only
    be too high, for lower bounds."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "5"]
    cp = src.run([*argv, *(["-U"] if user_to_user else []), ip], timeout=count * 6 + 30)
    found = re.search(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)", cp.stdout)
    assert found, cp.stdout
    return float(found.group(1))


def test_shaping_limits_the_migration_plane(lab):
    a, b = lab.hosts
    limit = 40e6
    free, _ = throughput(a, b, 8 << 20)
    lab.shape("migration", rate="40mbit")
    try:
        shaped, shaped_at_most = throughput(a, b, 4 << 20)
        assert lab.status()["shaping"]["migration"]["rate"] == "40mbit"
        # The management plane is not delayed: a delay on b's ingress would add
        # at least its 40 ms; the round trip itself is well under a millisecond.
        assert rtt_ms(a, b.mgmt_ip) < 20
    finally:
        lab.unshape()
    assert lab.status()["shaping"] == {}
    print(f"unshaped {free / 1e6:.0f} MB/s, shaped {shaped * 8 / 1e6:.1f} Mbit/s "
          f"({shaped_at_most * 8 / 1e6:.1f} counting from before the first byte)")
    # The cap holds: the span that contains the whole transfer cannot beat it
    # (beyond htb's 64 KiB burst), however late any process runs.
    assert shaped_at_most * 8 < 1.15 * limit
    # The plane is shaped to megabits, not starved, and the unshaped plane is
    # not held to the cap: margins that a late receiver cannot cross.
    assert shaped * 8 > 0.25 * limit
    assert free * 8 > 2 * limit


def test_delay_is_one_way_per_host(lab):
    a, b = lab.hosts
    try:
        lab.shape("management", rate=None, delay="40ms")
    except LabError as exc:
        pytest.skip(str(exc))
    try:
        slow = rtt_ms(a, b.mgmt_ip, user_to_user=True)
        fast = rtt_ms(a, b.mig_ip)
    finally:
        lab.unshape("management")
    assert slow >= 80            # 40 ms each way
    assert fast < 20             # b's ingress would add 40 ms were it delayed


def test_link_down_is_seen_and_recovers(lab):
    a, b = lab.hosts
    b.set_link("migration", False)
    try:
        assert not b.link_up("migration")
        assert not a.ping(b.mig_ip, timeout=1)
        assert a.ping(b.mgmt_ip)
        st = lab.status()["hosts"][1]["links"]
        assert st == {"management": True, "migration": False}
    finally:
        b.set_link("migration", True)
    assert b.link_up("migration")
    assert a.ping(b.mig_ip) and a.ping(b.mig_ip6)


def test_libvirtd_crash_and_restart_keeps_the_guest(lab, kernel):
    b = lab.hosts[1]
    name = "g-crash"
    old_pid = b.libvirtd_pid
    try:
        with ConsoleWatcher.for_domain([b], name) as w:
            guest.define_guest(b, name, kernel, cmdline=guest.cmdline(tick_ms=50))
            w.wait_ticks(2, timeout=120)
            b.kill_libvirtd()
            assert b.libvirtd_pid is None and not b.libvirtd_alive()
            with pytest.raises(libvirt.libvirtError):
                libvirt.open(b.uri).close()
            w.wait_ticks(3, timeout=10)          # the guest does not care
            b.start_libvirtd()
            assert b.libvirtd_alive() and b.libvirtd_pid != old_pid
            conn = libvirt.open(b.uri)
            try:
                assert conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
            finally:
                conn.close()
            assert lab.status()["healthy"]
    finally:
        if not b.libvirtd_alive():
            b.start_libvirtd()
        guest.destroy_guest(b, name)


STREAM_END = textwrap.dedent("""
    import socket, sys, time
    role, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "listen":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(1)
        s.settimeout(30)
        c, _ = s.accept()
    else:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = socket.create_connection((ip, port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    c.settimeout(30)
    print("up", flush=True)
    try:
        while True:    # both ends talk, as a migration stream's control does
            c.sendall(b"x" * 1024)
            c.recv(1 << 16)
            time.sleep(0.05)
    except OSError as err:
        print(type(err).__name__, flush=True)
""")


def test_a_tcp_reset_breaks_a_stream_at_both_ends(lab):
    import subprocess

    from migplane.lab.daemon import nsenter

    a, b = lab.hosts
    ends = [subprocess.Popen([*nsenter(h.holder_pid), sys.executable, "-c", STREAM_END,
                              role, b.mig_ip, "5202"], stdout=subprocess.PIPE, text=True)
            for h, role in ((b, "listen"), (a, "connect"))]
    try:
        for end in ends:
            assert end.stdout.readline().strip() == "up"
        b.set_tcp_reset("migration", True)
        outs = [end.communicate(timeout=60)[0].strip() for end in ends]
        assert outs == ["ConnectionResetError", "ConnectionResetError"]
    finally:
        b.set_tcp_reset("migration", False)
        for end in ends:
            if end.poll() is None:
                end.kill()
                end.wait()
    # the plane carries TCP again: the whole MiB arrives (throughput checks it)
    assert throughput(a, b, 1 << 20, port=5203)[1] > 0


def test_the_guests_qemu_is_found_by_its_pidfile_and_killed(lab, kernel):
    b = lab.hosts[1]
    name = "g-qemu"
    with pytest.raises(LabError, match="bad guest name"):
        b.qemu_pid("../x")
    try:
        guest.define_guest(b, name, kernel, cmdline=guest.cmdline(tick_ms=50))
        pid = b.qemu_pid(name)
        assert pid is not None
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            assert b"guest=%s" % name.encode() in f.read()
        assert b.kill_qemu(name) == pid
        assert b.qemu_pid(name) is None
        conn = libvirt.open(b.uri)
        try:   # libvirtd learns of the death from the monitor's end, soon
            deadline = time.monotonic() + 60
            while conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                assert time.monotonic() < deadline, "libvirtd still sees QEMU running"
                time.sleep(0.2)
        finally:
            conn.close()
    finally:
        guest.destroy_guest(b, name)
