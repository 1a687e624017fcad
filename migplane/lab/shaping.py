"""Shaping one interface of a host: rate with tc htb, delay with netem or,
on kernels without netem (like this lab machine's), with an NFQUEUE delay
process (nfdelay.py).

htb rather than tbf because veths hand it 64 KiB GSO packets, which tbf
only handles with a burst larger than them.  Shaping is applied on the
egress of every host's interface, so each direction between two hosts is
shaped once, at its sender (the NFQUEUE delay: at its receiver): `delay`
is the one-way delay.
"""

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .errors import LabCommandError
from .errors import LabError
from .proc import alive
from .proc import in_netns
from .proc import run
from .proc import spawn
from .proc import terminate

NFDELAY = Path(__file__).with_name("nfdelay.py")
QUEUE_OF = {"mgmt0": 11, "mig0": 12}


def rate_bits(rate):
    """'100mbit' -> 100_000_000 (tc units; decimal prefixes; 'bps' = bytes)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(bit|bps)?\s*", str(rate).lower())
    if not m:
        raise ValueError(f"bad rate {rate!r}")
    mult = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2)]
    return int(float(m.group(1)) * mult * (8 if m.group(3) == "bps" else 1))


def delay_ms(delay):
    """'40ms' / '0.1s' / '500us' / 40 -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s)?\s*", str(delay).lower())
    if not m:
        raise ValueError(f"bad delay {delay!r}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, None: 1.0}[m.group(2)]


def _tc(netns, *args, check=True):
    return run(["tc", "-n", netns, *args], check=check, timeout=30)


def shape(netns, ifname, rate=None, delay=None, log_dir=None):
    """Apply rate and/or delay; return what clear() needs to undo it.
    log_dir: where the NFQUEUE delay process logs (the host's root)."""
    clear(netns, ifname)
    info = {"rate": rate, "delay": delay, "delay_method": None, "delay_pid": None}
    try:
        if rate is not None:
            _htb(netns, ifname, rate_bits(rate))
        if delay is not None:
            if _netem(netns, ifname, delay, under_htb=rate is not None):
                info["delay_method"] = "netem"
            else:
                info["delay_pid"] = _nfqueue(netns, ifname, delay_ms(delay), log_dir)
                info["delay_method"] = "nfqueue"
    except BaseException:
        clear(netns, ifname, info["delay_pid"])
        raise
    return info


def _htb(netns, ifname, bits):
    burst = max(65536 + 1514, bits // 8 // 500)   # ~2 ms, at least one GSO packet
    _tc(netns, "qdisc", "add", "dev", ifname, "root", "handle", "1:", "htb", "default", "10")
    _tc(netns, "class", "add", "dev", ifname, "parent", "1:", "classid", "1:10", "htb",
        "rate", f"{bits}bit", "ceil", f"{bits}bit", "burst", str(burst), "cburst", str(burst))


def _netem(netns, ifname, delay, under_htb):
    where = ["parent", "1:10", "handle", "10:"] if under_htb else ["root", "handle", "1:"]
    try:
        _tc(netns, "qdisc", "add", "dev", ifname, *where, "netem", "delay",
            f"{delay_ms(delay)}ms", "limit", "100000")
        return True
    except LabCommandError as exc:
        if "unknown" in (exc.stderr or "").lower():
            return False          # no CONFIG_NET_SCH_NETEM
        raise


def _rule(ifname):
    # Ingress, not egress: a packet held in the sender's own stack still
    # counts against its socket (TCP small queues) and throughput collapses;
    # on arrival the veth has already orphaned it. Delaying every host's
    # ingress still delays each direction between two hosts exactly once.
    return ["PREROUTING", "-i", ifname, "-j", "NFQUEUE", "--queue-num",
            str(QUEUE_OF[ifname]), "--queue-bypass"]


def _nfqueue(netns, ifname, ms, log_dir):
    if not (shutil.which("iptables") and shutil.which("ip6tables")):
        raise LabError("delay needs the netem qdisc (missing from this kernel) or "
                       "iptables for the NFQUEUE fallback (apt-get install iptables)")
    log = Path(log_dir or tempfile.gettempdir()) / f"nfdelay-{netns}-{ifname}.log"
    log.write_text("")
    pid = spawn(["ip", "netns", "exec", netns, sys.executable, NFDELAY,
                 str(QUEUE_OF[ifname]), str(ms)], log)
    deadline = time.monotonic() + 10
    while "ready" not in log.read_text():
        if not alive(pid) or time.monotonic() > deadline:
            terminate([pid])
            raise LabError(f"nfqueue delay did not start in {netns}: {log.read_text()[-500:]}")
        time.sleep(0.02)
    for tool in ("iptables", "ip6tables"):
        run(["ip", "netns", "exec", netns, tool, "-w", "-t", "mangle", "-A", *_rule(ifname)],
            timeout=30)
    return pid


def clear(netns, ifname, delay_pid=None):
    """Remove any shaping of ifname (qdisc, NFQUEUE rules, delay process)."""
    _tc(netns, "qdisc", "del", "dev", ifname, "root", check=False)
    for tool in ("iptables", "ip6tables"):
        for _ in range(10):     # one rule per shape(); loop in case of leftovers
            cp = run(["ip", "netns", "exec", netns, tool, "-w", "-t", "mangle", "-D",
                      *_rule(ifname)], check=False, timeout=30)
            if cp.returncode != 0:
                break
    if delay_pid and in_netns(delay_pid, netns):
        terminate([delay_pid], grace=2)
