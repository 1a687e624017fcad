"""Tail the test guest's serial console files on several hosts at once.

Each parsed MPTICK line is timestamped on the host side when read, so the
largest wall-clock gap between consecutive ticks bounds what the guest saw
of a migration's downtime (to within the poll interval). A line the guest
was printing when a migration switched over starts in the source's file and
ends in the destination's; the watcher joins it. `ConsoleWatcher.continuity`
is the one rule for the tick counter.
"""

import itertools
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .guest import console_log

TICK_RE = re.compile(r"MPTICK boot=([0-9a-f]{16}) n=(\d+) ms=(\d+) pass=(\d+) bad=(\d+)"
                     r"(?: pos=(\d+))?")
BOOT_RE = re.compile(r"MPBOOT boot=([0-9a-f]{16})")
DISK_RE = re.compile(r"MPDISK sum=([0-9a-f]{8}) lba=(\d+) sectors=(\d+)")
STAMP_RE = re.compile(r"MPSTAMPED mib=(\d+) sum=([0-9a-f]{8})")
LINE_RES = (TICK_RE, BOOT_RE, DISK_RE, STAMP_RE)

#: Ticks the destination may print again at a handover, for every check of
#: the test guest's counter (`ConsoleWatcher.continuity`'s default): none.
#: Measured on the lab, 0 replayed ticks in 320 live migrations of a dirtying
#: guest (210 with the guest's old layout, 110 with its loop state written
#: through freshly flushed TLB entries); see guest/README.md.
MAX_REPLAY = 0


@dataclass(frozen=True)
class Tick:
    host: str
    t: float          # time.monotonic() when read
    wall: float       # time.time() when read, to line up with other logs
    boot: str
    n: int
    ms: int           # guest uptime by its own PIT count
    passes: int       # completed passes over the dirty region
    bad: int          # memory words that did not hold what was written
    initial: bool     # already in the file when watching started (t is meaningless)
    pos: Optional[int] = None   # words written into the current pass

    def written_mib(self, dirty_mib):
        """MiB the guest has written since boot (its work), or None when its
        console does not say where it is in the pass."""
        if self.pos is None:
            return None
        return self.passes * dirty_mib + self.pos * 4 / (1 << 20)


@dataclass(frozen=True)
class Handover:
    frm: str          # host that printed the last tick before the change
    to: str           # host that printed the first one after it
    last_n: int
    first_n: int

    @property
    def replayed(self):
        """Ticks the destination printed again (0 when it went on at +1)."""
        return max(0, self.last_n + 1 - self.first_n)


@dataclass(frozen=True)
class Continuity:
    """What `ConsoleWatcher.continuity` found; true when the rule holds."""
    max_replay: int
    handovers: tuple   # Handover, in the guest's order
    replayed: int      # ticks printed twice, over all handovers
    lost: int          # counter values never printed
    problems: tuple    # one sentence per broken rule
    sequence: str      # the last ticks as "<host letter><n>", for messages

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def __str__(self):
        verdict = "; ".join(self.problems) or (
            f"continuous ({len(self.handovers)} handover(s), {self.replayed} tick(s) "
            f"replayed, at most {self.max_replay} allowed per handover)")
        return f"{verdict} [ticks: {self.sequence}]"


class ConsoleWatcher:
    """Follow console files {label: path}; use as a context manager."""

    def __init__(self, files, poll_s=0.01, from_start=True):
        self.files = {label: Path(p) for label, p in files.items()}
        self.poll_s = poll_s
        self._from_start = from_start
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ticks = []
        self._lines = {label: [] for label in self.files}
        self._pos = {}
        self._buf = {label: "" for label in self.files}
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def for_domain(cls, hosts, name, **kw):
        """Watch domain `name`'s console on every LabHost in `hosts`."""
        return cls({h.name: h.host_path(console_log(name)) for h in hosts}, **kw)

    # -- lifecycle ------------------------------------------------------------
    def start(self):
        for label, path in self.files.items():
            size = path.stat().st_size if path.exists() else 0
            self._pos[label] = 0 if self._from_start else size
        self._poll(initial=True)
        self._thread = threading.Thread(target=self._loop, name="console-watcher",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._poll()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _loop(self):
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.poll_s)

    def _poll(self, initial=False):
        # Read every file first, then parse: a line the guest was printing
        # when it was stopped for a handover starts in the source's file and
        # ends in the destination's; its head is then in the source's buffer
        # whatever order the files are read in.
        new = {}
        for label, path in self.files.items():
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, 2)
                    if size < self._pos[label]:      # truncated / recreated
                        self._pos[label] = 0
                    f.seek(self._pos[label])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self._pos[label] += len(data)
            text = self._buf[label] + data.decode("ascii", "replace")
            *lines, self._buf[label] = text.split("\n")
            new[label] = (time.monotonic(), time.time(), lines)
        with self._cond:
            for label, (now, wall, lines) in new.items():
                for line in lines:
                    line = self._join_split(label, line.rstrip("\r"))
                    self._lines[label].append(line)
                    m = TICK_RE.search(line)
                    if m:
                        self._ticks.append(Tick(label, now, wall, m.group(1), int(m.group(2)),
                                                int(m.group(3)), int(m.group(4)),
                                                int(m.group(5)), initial,
                                                int(m.group(6)) if m.group(6) else None))
            if new:
                self._cond.notify_all()

    def _join_split(self, label, line):
        """A line split by a handover, whole again: `line` (read on `label`)
        does not start like a guest line and another host's file ends with
        an unfinished one that, put in front, makes a line we know. The line
        is counted as the destination's (it was finished there)."""
        if not line or line.startswith("MP"):
            return line
        for other, head in self._buf.items():
            if other != label and head.startswith("MP"):
                whole = head.rstrip("\r") + line
                if any(r.match(whole) for r in LINE_RES):
                    self._buf[other] = ""
                    return whole
        return line

    # -- queries ----------------------------------------------------------------
    def ticks(self, host=None):
        with self._lock:
            return [t for t in self._ticks if host is None or t.host == host]

    def lines(self, host=None):
        with self._lock:
            if host is not None:
                return list(self._lines[host])
            return [ln for lines in self._lines.values() for ln in lines]

    def boot_ids(self):
        """Every boot id seen, from MPBOOT and MPTICK lines on all hosts."""
        ids = {t.boot for t in self.ticks()}
        ids.update(m.group(1) for ln in self.lines() for m in [BOOT_RE.search(ln)] if m)
        return ids

    def last(self):
        ticks = self.ticks()
        return ticks[-1] if ticks else None

    def last_counter(self):
        t = self.last()
        return None if t is None else t.n

    def host_of_last_tick(self):
        t = self.last()
        return None if t is None else t.host

    def work_rate(self, dirty_mib, start, end):
        """MiB/s the guest wrote between host times ``start`` and ``end`` (the
        last tick read by ``start`` and the first read from ``end`` on), on
        whichever host it ran; None when the ticks do not cover the span."""
        ticks = [t for t in self.ticks() if not t.initial and t.pos is not None]
        before = [t for t in ticks if t.t <= start]
        after = [t for t in ticks if t.t >= end]
        if not before or not after:
            return None
        first, last = before[-1], after[0]
        if first.boot != last.boot or last.t <= first.t:
            return None
        return (last.written_mib(dirty_mib) - first.written_mib(dirty_mib)) / (
            last.t - first.t)

    def max_bad(self):
        return max((t.bad for t in self.ticks()), default=0)

    def continuity(self, max_replay=MAX_REPLAY):
        """Judge the tick counter of every boot: the one continuity rule.

        Per boot, each host's ticks are cut into stays (runs going up by one)
        and the stays are put in the guest's order. Between two stays on
        different hosts (a handover) the destination may print again at most
        `max_replay` ticks the source already printed; a lost tick (a counter
        value nobody printed) is never allowed, nor is any jump or repeat
        within one host. Returns a `Continuity`, true when the rule holds.
        """
        stays = []
        for boot in dict.fromkeys(t.boot for t in self.ticks()):
            runs = []
            for host in dict.fromkeys(t.host for t in self.ticks()):
                for t in self.ticks(host):
                    if t.boot != boot:
                        continue
                    if runs and runs[-1][-1].host == host and t.n == runs[-1][-1].n + 1:
                        runs[-1].append(t)
                    else:
                        runs.append([t])
            # guest order: by first counter value; read time breaks ties
            stays.append(sorted(runs, key=lambda r: (r[0].n, r[0].t)))
        handovers, problems = [], []
        replayed = lost = 0
        for runs in stays:
            for before, after in itertools.pairwise(runs):
                last, first = before[-1], after[0]
                step = first.n - last.n - 1          # > 0: lost, < 0: replayed
                h = Handover(last.host, first.host, last.n, first.n)
                where = f"{h.frm} printed up to n={last.n}, {h.to} went on from n={first.n}"
                if h.frm != h.to:
                    handovers.append(h)
                if step > 0:
                    lost += step
                    problems.append(f"{step} tick(s) lost: {where}")
                elif step < 0:
                    replayed += -step
                    if h.frm == h.to:
                        problems.append(f"{-step} tick(s) repeated on one host: {where}")
                    elif -step > max_replay:
                        problems.append(f"{-step} tick(s) replayed (at most {max_replay} "
                                        f"allowed): {where}")
        return Continuity(max_replay, tuple(handovers), replayed, lost, tuple(problems),
                          self._sequence())

    def counter_continuous(self, max_replay=MAX_REPLAY):
        """True if the counter holds `continuity(max_replay)`'s rule."""
        return self.continuity(max_replay).ok

    def _sequence(self, n=40):
        return " ".join(f"{t.host[-1]}{t.n}" for t in self.ticks()[-n:])

    def gaps(self, since=None):
        """(gap seconds, tick before, tick after) between consecutive live ticks."""
        ticks = [t for t in self.ticks() if not t.initial and (since is None or t.t >= since)]
        return [(b.t - a.t, a, b) for a, b in itertools.pairwise(ticks)]

    def max_gap(self, since=None):
        """Largest host-side gap between consecutive ticks, in seconds."""
        return max((g for g, _, _ in self.gaps(since)), default=0.0)

    def handover(self, since=None):
        """(from_host, to_host, gap seconds) of the last change of host (after
        ``since``, a time.monotonic() reading), or None: the pause the guest
        felt at its switch-over, to within a tick and a console poll."""
        out = None
        for g, a, b in self.gaps(since):
            if a.host != b.host:
                out = (a.host, b.host, g)
        return out

    def disk_sums(self):
        """{host: checksum} from MPDISK lines."""
        out = {}
        for label in self.files:
            for ln in self.lines(label):
                m = DISK_RE.search(ln)
                if m:
                    out[label] = m.group(1)
        return out

    def stamped(self):
        return any(STAMP_RE.search(ln) for ln in self.lines())

    # -- waiting ------------------------------------------------------------------
    def wait_ready(self, ticks=5, timeout=120):
        """Wait until the guest filled its stamped memory (``MPSTAMPED``) and
        printed ``ticks`` ticks: booted, dirtying as asked, ready to migrate."""
        self.wait_for(lambda w: w.stamped(), timeout, "MPSTAMPED")
        self.wait_ticks(ticks, timeout=timeout)

    def wait_for(self, predicate, timeout=30, what="condition"):
        """Wait until predicate(self) is true; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"console: no {what} within {timeout}s "
                                   f"(last lines: {self._tail()})")
            with self._cond:   # woken by new lines; short wait covers races
                self._cond.wait(min(left, 0.2))
        return True

    def _tail(self):
        with self._lock:
            return {label: lines[-3:] for label, lines in self._lines.items()}

    def wait_ticks(self, count=1, host=None, timeout=30):
        """Wait for `count` more ticks (on `host`, if given) than seen now."""
        start = len(self.ticks(host))
        self.wait_for(lambda w: len(w.ticks(host)) >= start + count, timeout,
                      f"{count} ticks" + (f" on {host}" if host else ""))
        return self.ticks(host)[-1]
