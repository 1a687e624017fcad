"""The benchmark's hands on the lab: guests, probes, counters, and migrations
driven two ways, by migplane (the core flow and the libvirt driver, as the
agent does it) and by bare ``virsh migrate`` (what an operator would type).

Everything started here is tracked and stopped by its own pid or handle;
:meth:`BenchLab.down` removes the whole lab.
"""

import dataclasses
import itertools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from migplane.bench import overhead
from migplane.bench import probe
from migplane.bench import stats
from migplane.lab import Lab
from migplane.lab import daemon
from migplane.lab import guest
from migplane.lab import shaping
from migplane.lab.console import ConsoleWatcher

LOG = logging.getLogger(__name__)
MIGPLANE = "migplane"
VIRSH = "virsh"
REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATION_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    """One test guest (see guest/kernel.c for the command-line keys)."""

    name: str
    memory_mib: int
    stamp_mib: int = 0
    dirty_mib: int = 0
    rate_mib_s: int = 0
    verify_mib_s: int = 1
    tick_ms: int = 100

    @property
    def cmdline(self):
        return guest.cmdline(tick_ms=self.tick_ms, dirty_mib=self.dirty_mib,
                             rate_mib_s=self.rate_mib_s, stamp_mib=self.stamp_mib,
                             verify_mib_s=self.verify_mib_s)

    def to_dict(self):
        return dataclasses.asdict(self)


def _job_dict(stats_dict):
    """The figures we keep of a libvirt jobStats() dict (bytes, ms)."""
    if not stats_dict:
        return None
    keep = ("time_elapsed", "time_elapsed_net", "data_processed", "data_total",
            "memory_processed", "memory_total", "memory_normal_bytes", "memory_bps",
            "memory_iteration", "downtime", "downtime_net", "memory_dirty_rate",
            "setup_time", "memory_constant")
    return {k: stats_dict[k] for k in keep if k in stats_dict}


_RT = []


def realtime_prefix():
    """``chrt -f 10`` when this machine lets us use SCHED_FIFO, else nothing.

    The probe runs real-time so that the CPU scheduler of a busy machine stays
    out of the network round trips it measures.
    """
    if not _RT:
        ok = False
        if shutil.which("chrt"):
            cp = subprocess.run(["chrt", "-f", "10", "true"], capture_output=True,
                                timeout=10, check=False)
            ok = cp.returncode == 0
        _RT.append(["chrt", "-f", "10"] if ok else [])
    return list(_RT[0])


def read_net_dev(pid, ifnames):
    """``{ifname: tx_bytes}`` of the network namespace of process ``pid``.

    ``/proc/<pid>/net/dev`` shows the namespace of that process: a plain
    file read, cheap enough to sample ten times a second.
    """
    out = {}
    with open("/proc/%d/net/dev" % pid) as f:
        for line in f:
            name, sep, rest = line.partition(":")
            name = name.strip()
            if sep and name in ifnames:
                out[name] = int(rest.split()[8])
    return out


class PlaneSampler:
    """Bytes sent per plane, summed over hosts, sampled every ``interval`` s."""

    def __init__(self, hosts, interval=0.1, planes=None):
        self.hosts = list(hosts)
        self.interval = interval
        self.planes = planes or {"management": "mgmt0", "migration": "mig0"}
        self.samples = []          # (t, {plane: tx bytes summed over hosts})
        self._stop = threading.Event()
        self._thread = None

    def read(self):
        total = dict.fromkeys(self.planes, 0)
        names = set(self.planes.values())
        for h in self.hosts:
            counts = read_net_dev(h.holder_pid, names)
            for plane, ifname in self.planes.items():
                total[plane] += counts.get(ifname, 0)
        return time.monotonic(), total

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.read())
            except OSError:
                pass
            self._stop.wait(self.interval)

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="plane-sampler",
                                        daemon=True)
        self._thread.start()
        return self

    # The start/stop of a thread, as in the agent's server and the dashboard; not
    # shared: each owns its own stop signal, join bound and teardown.
    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def rates(self, start=None, end=None):
        """``[(t0, t1, {plane: bits per second})]`` of consecutive samples that
        overlap ``[start, end]``."""
        out = []
        samples = list(self.samples)
        for (t0, a), (t1, b) in itertools.pairwise(samples):
            if (start is not None and t1 < start) or (end is not None and t0 > end):
                continue
            dt = t1 - t0
            if dt > 0:
                out.append((t0, t1, {p: (b[p] - a[p]) * 8.0 / dt for p in b}))
        return out


class BenchLab:
    """A lab with shaped planes, the test guest kernel and bookkeeping."""

    def __init__(self, name="mpbench", hosts=3, rate="100mbit", delay=None, workdir=None,
                 poll_s=0.05):
        self.name = name
        self.n_hosts = hosts
        self.rate = rate
        self.rate_bps = shaping.rate_bits(rate)
        self.delay = delay
        self._workdir = Path(workdir) if workdir else None
        self.workdir = None
        self.poll_s = poll_s
        self.lab = None
        self.kernel = None
        self.where = {}            # guest name -> host name
        self.specs = {}
        self.watchers = {}
        self._drivers = {}
        self._probes = []          # Popen of probe processes we started
        self._probe_out = None
        self.sampler = None

    # -- lifecycle --------------------------------------------------------------

    def up(self):
        # libvirt's event loop must be registered before any connection opens
        from migplane.drivers.libvirt import events as lv_events
        lv_events.ensure_event_loop()
        if Lab.exists(self.name):
            LOG.warning("Removing a leftover lab %s", self.name)
            Lab.load(self.name).down()
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            self.workdir = self._workdir
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix=self.name + "-"))
        self.lab = Lab(self.name, hosts=self.n_hosts)
        self.lab.up()
        self.kernel = self.lab.build_guest()
        for plane in ("management", "migration"):
            self.lab.shape(plane, rate=self.rate, delay=self.delay)
        self.sampler = PlaneSampler(self.lab.hosts).start()
        return self

    def down(self):
        errors = []
        for w in self.watchers.values():
            try:
                w.stop()
            except Exception as err:  # best effort: the lab goes anyway
                errors.append(str(err))
        self.watchers.clear()
        self.stop_probe()
        if self.sampler is not None:
            self.sampler.stop()
        for drv in self._drivers.values():
            try:
                drv.close()
            except Exception as err:
                errors.append(str(err))
        self._drivers.clear()
        if self.lab is not None:
            self.lab.down()
            self.lab = None
        if self.workdir is not None and self._workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return errors

    def host(self, name):
        return self.lab.host(name)

    @property
    def hosts(self):
        return self.lab.hosts

    # -- guests -----------------------------------------------------------------

    def start_guests(self, specs, host, timeout=120, poll_s=None):
        """Define and start ``specs`` on ``host``; wait until each has stamped and ticks.

        :param poll_s: how often their consoles are read (default: ``self.poll_s``).
        """
        for spec in specs:
            guest.define_guest(host, spec.name, self.kernel, memory_mib=spec.memory_mib,
                               cmdline=spec.cmdline)
            self.where[spec.name] = host.name
            self.specs[spec.name] = spec
            w = ConsoleWatcher.for_domain(self.hosts, spec.name,
                                          poll_s=poll_s or self.poll_s)
            self.watchers[spec.name] = w.start()
        for spec in specs:
            w = self.watchers[spec.name]
            if spec.stamp_mib:
                w.wait_for(lambda w: w.stamped(), timeout, "MPSTAMPED")
            w.wait_ticks(2, timeout=timeout)

    def destroy_guests(self, names):
        """Stop watching and destroy ``names``, in parallel (each takes a while)."""
        threads = []
        for name in names:
            w = self.watchers.pop(name, None)
            if w is not None:
                w.stop()
            host = self.where.pop(name, None)
            self.specs.pop(name, None)
            if host is not None:
                t = threading.Thread(target=guest.destroy_guest, args=(self.host(host), name),
                                     daemon=True)
                t.start()
                threads.append(t)
        for t in threads:
            t.join(60)

    def guest_check(self, name, since=None):
        """Is the guest whole: one boot, counter continuous, no bad word, ticking where
        we believe it runs? Plus the largest tick gap (bounds the downtime seen)."""
        w = self.watchers[name]
        try:
            w.wait_ticks(2, host=self.where[name], timeout=15)
            ticking = True
        except TimeoutError:
            ticking = False
        boots = sorted(w.boot_ids())
        result = {
            "guest": name,
            "host": self.where[name],
            "boot_ids": boots,
            "counter_continuous": w.counter_continuous(),
            "ticking_on_host": ticking and w.host_of_last_tick() == self.where[name],
            "bad_words": w.max_bad(),
            "last_counter": w.last_counter(),
            "max_tick_gap_s": w.max_gap(since),
        }
        if hasattr(w, "continuity"):
            result["continuity"] = str(w.continuity())   # the lab's own wording
        result["intact"] = bool(len(boots) == 1 and result["counter_continuous"]
                                and result["ticking_on_host"] and result["bad_words"] == 0)
        return result

    def other(self, host_name, among=("host-a", "host-b")):
        return among[1] if host_name == among[0] else among[0]

    # -- probe ------------------------------------------------------------------

    def _spawn_in(self, host, argv, log_path, realtime=False):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        with open(log_path, "ab") as log:
            rt = realtime_prefix() if realtime else []
            proc = subprocess.Popen([*daemon.nsenter(host.holder_pid), *rt, *argv],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd="/",
                                    start_new_session=True)
        self._probes.append(proc)
        return proc

    def start_probe(self, client, server, interval=probe.DEFAULT_INTERVAL,
                    size=probe.DEFAULT_SIZE, max_seconds=3600, port=probe.DEFAULT_PORT,
                    realtime=True):
        """Echo server on ``server``'s management address, client on ``client``."""
        slog = self.workdir / "probe-server.log"
        self._probe_out = self.workdir / "probe-samples.txt"
        self._probe_out.write_text("")
        self._spawn_in(server, probe.server_argv(server.mgmt_ip, port, size, max_seconds),
                       slog, realtime)
        deadline = time.monotonic() + 20
        while "listening" not in slog.read_text(errors="replace"):
            if time.monotonic() > deadline or self._probes[-1].poll() is not None:
                raise RuntimeError("probe server did not start: %s"
                                   % slog.read_text(errors="replace")[-500:])
            time.sleep(0.05)
        self._spawn_in(client, probe.client_argv(server.mgmt_ip, self._probe_out, port, size,
                                                 interval, max_seconds=max_seconds),
                       self.workdir / "probe-client.log", realtime)
        deadline = time.monotonic() + 20
        while not probe.read_samples(self._probe_out):
            if time.monotonic() > deadline or self._probes[-1].poll() is not None:
                raise RuntimeError("probe client got no answer: %s" % (
                    (self.workdir / "probe-client.log").read_text(errors="replace")[-500:]))
            time.sleep(0.05)

    def probe_samples(self):
        if self._probe_out is None or not self._probe_out.exists():
            return []
        return probe.read_samples(self._probe_out)

    def stop_probe(self):
        """Stop the probe processes (by their own handles); return the samples."""
        for proc in reversed(self._probes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self._probes.clear()
        return self.probe_samples()

    # -- measurements -------------------------------------------------------------

    def plane_tx(self):
        """Bytes sent so far per plane, summed over every host (each byte once)."""
        total = {"management": 0, "migration": 0}
        for h in self.hosts:
            for plane, c in h.counters().items():
                total[plane] += c["tx_bytes"]
        return total

    def snapshot(self):
        return {"t": time.monotonic(), "tx": self.plane_tx(), "cpu": stats.read_cpu_times()}

    @staticmethod
    def delta(before, after):
        return {
            "duration_s": after["t"] - before["t"],
            "plane_bytes": {p: after["tx"][p] - before["tx"][p] for p in after["tx"]},
            "cpu_busy": stats.busy_fraction(before["cpu"], after["cpu"]),
        }

    def throughput(self, start, end, t0):
        """``[[t - t0, management Mbit/s, migration Mbit/s]]`` between start and end."""
        if self.sampler is None:
            return []
        return [[round(t - t0, 3), round(r["management"] / 1e6, 2),
                 round(r["migration"] / 1e6, 2)]
                for _, t, r in self.sampler.rates(start, end)]

    def link_use(self, start, end, plane="migration", threshold=0.2):
        """How fully ``plane`` was used while it carried the bulk stream.

        The sending phase runs from the first to the last sampling interval
        with more than ``threshold`` of the link rate; returns its length,
        the bytes sent in it, and their rate as a share of the link.
        """
        if self.sampler is None:
            return None
        intervals = [(a, b, r[plane]) for a, b, r in self.sampler.rates(start, end)]
        active = [k for k, (_, _, r) in enumerate(intervals)
                  if r > threshold * self.rate_bps]
        if not active:
            return None
        phase = intervals[active[0]:active[-1] + 1]
        length = phase[-1][1] - phase[0][0]
        sent = sum((b - a) * r / 8.0 for a, b, r in phase)
        return {"sending_s": length, "bytes": sent,
                "share_of_link": (sent * 8.0 / length) / self.rate_bps if length else None}

    def completed_job(self, host_name, name):
        """The destination's statistics of the incoming migration that just ended."""
        import libvirt

        try:
            conn = libvirt.open(self.host(host_name).uri)
        except libvirt.libvirtError as err:
            LOG.warning("No job stats from %s: %s", host_name, err)
            return None
        try:
            dom = conn.lookupByName(name)
            return _job_dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        except libvirt.libvirtError as err:
            LOG.warning("No completed job stats of %s on %s: %s", name, host_name, err)
            return None
        finally:
            conn.close()

    # -- migplane -----------------------------------------------------------------

    def driver(self, host_name, split, max_concurrent=1):
        key = (host_name, split, max_concurrent)
        if key not in self._drivers:
            from migplane import testing
            from migplane.core import loader

            host = self.host(host_name)
            conf = testing.host_conf(host.name, host.mig_ip if split else None,
                                     max_concurrent=max_concurrent)
            conf.set_override("connection_uri", host.uri, "driver_libvirt")
            conf.set_override("netns", host.netns, "driver_libvirt")
            self._drivers[key] = loader.load_driver(conf, "libvirt")
        return self._drivers[key]

    def migrate_migplane(self, moves, split=True, limiter=None, max_concurrent=1):
        """Run one migplane flow per ``(guest, destination)`` at once, each in its
        thread (a shared ``limiter`` may queue them); return their records."""
        from migplane.core import exception
        from migplane.core import flow

        records = [None] * len(moves)

        def one(i, name, dest):
            src = self.where[name]
            rec = {"guest": name, "tool": MIGPLANE, "mode": "split" if split else "unsplit",
                   "source": src, "dest": dest}
            meter = overhead.MonitorMeter()
            marks = {}

            def mark(event):
                if event.kind == "step" and "slot" not in marks:
                    marks["slot"] = time.monotonic()   # the limiter let it run
                if event.kind == "transfer_started":
                    marks["transfer_start"] = time.monotonic()
                elif event.kind == "step" and event.message == \
                        "post_live_migration_at_destination":
                    marks["transfer_end"] = time.monotonic()

            try:
                source = self.driver(src, split, max_concurrent)
                destination = self.driver(dest, split, max_concurrent)
                mig = flow.LiveMigration(name, source, destination,
                                         source.settings.migration, limiter=limiter)
                mig.subscribe(meter)
                mig.subscribe(mark)
                rec["start"] = time.monotonic()
                try:
                    result = mig.run()
                except exception.MigplaneError as err:
                    result = getattr(err, "result", None)
                    rec["error"] = str(err)
                rec["end"] = time.monotonic()
            except Exception as err:  # record, never lose the other threads
                LOG.exception("migplane migration of %s failed", name)
                rec.setdefault("start", time.monotonic())
                rec["end"] = time.monotonic()
                rec["error"] = "%s: %s" % (type(err).__name__, err)
                result = None
            rec["wall_s"] = rec["end"] - rec["start"]
            rec.update(marks)
            if result is not None:
                rec["status"] = result.status
                rec["data_uri"] = result.uris.data_uri if result.uris else None
                rec["plane"] = result.uris.plane if result.uris else None
                rec["flow_progress"] = result.progress.to_dict() if result.progress else None
            else:
                rec["status"] = "failed"
            rec["monitor"] = meter.result()
            records[i] = rec

        self._run_threads(one, moves)
        return self._finish(records)

    def _run_threads(self, fn, moves):
        threads = [threading.Thread(target=fn, args=(i, name, dest), daemon=True,
                                    name="bench-%s" % name)
                   for i, (name, dest) in enumerate(moves)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(MIGRATION_TIMEOUT + 60)
            if t.is_alive():
                raise RuntimeError("a migration thread (%s) did not finish" % t.name)

    def _finish(self, records):
        for rec in records:
            if rec["status"] == "completed":
                self.where[rec["guest"]] = rec["dest"]
                rec["job"] = self.completed_job(rec["dest"], rec["guest"])
            else:
                rec["job"] = None
        return records

    # -- bare virsh -----------------------------------------------------------------

    def virsh_argv(self, name, src, dest):
        """What an operator types: p2p over the management plane, data to the
        destination's migration address."""
        s, d = self.host(src), self.host(dest)
        return ["virsh", "-c", s.uri, "migrate", "--live", "--p2p", "--persistent",
                "--undefinesource", name, d.tcp_uri, "tcp://%s" % d.mig_ip]

    def migrate_virsh(self, moves):
        """Run one ``virsh migrate`` per ``(guest, destination)`` at once."""
        records = [None] * len(moves)

        def one(i, name, dest):
            src = self.where[name]
            argv = self.virsh_argv(name, src, dest)
            rec = {"guest": name, "tool": VIRSH, "mode": "split", "source": src,
                   "dest": dest, "argv": argv, "data_uri": argv[-1], "plane": "migration"}
            rec["start"] = time.monotonic()
            try:
                cp = subprocess.run(argv, capture_output=True, text=True,
                                    timeout=MIGRATION_TIMEOUT, stdin=subprocess.DEVNULL)
                rec["end"] = time.monotonic()
                rec["status"] = "completed" if cp.returncode == 0 else "failed"
                if cp.returncode:
                    rec["error"] = (cp.stderr or cp.stdout).strip()[-500:]
            except subprocess.TimeoutExpired:
                rec["end"] = time.monotonic()
                rec["status"] = "failed"
                rec["error"] = "virsh migrate timed out"
                subprocess.run(["virsh", "-c", self.host(src).uri, "domjobabort", name],
                               capture_output=True, timeout=60, check=False)
            rec["wall_s"] = rec["end"] - rec["start"]
            records[i] = rec

        self._run_threads(one, moves)
        return self._finish(records)

    def migrate(self, tool, moves, split=True, limiter=None, max_concurrent=1):
        if tool == VIRSH:
            return self.migrate_virsh(moves)
        return self.migrate_migplane(moves, split=split, limiter=limiter,
                                     max_concurrent=max_concurrent)

    # -- noise ------------------------------------------------------------------------

    def noise(self):
        """What else runs on this machine: other labs, other QEMU processes, load."""
        ours = set()
        if self.lab is not None:
            from migplane.lab.proc import netns_pids
            for h in self.hosts:
                ours.update(netns_pids(h.netns))
        qemu = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in ours:
                continue
            try:
                comm = Path("/proc/%s/comm" % entry).read_text().strip()
            except OSError:
                continue
            if comm.startswith("qemu-system"):
                qemu += 1
        return {"loadavg": list(os.getloadavg()),
                "other_labs": [n for n in Lab.names() if n != self.name],
                "other_qemu_processes": qemu,
                "cpus": os.cpu_count()}


def versions():
    out = {"python": sys.version.split()[0]}
    try:
        import libvirt
        v = libvirt.getVersion()
        out["libvirt_python"] = "%d.%d.%d" % (v // 1000000, v // 1000 % 1000, v % 1000)
    except ImportError:
        pass
    for name, argv in (("qemu", ["qemu-system-x86_64", "--version"]),
                       ("libvirtd", ["libvirtd", "--version"])):
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out[name] = cp.stdout.splitlines()[0].strip() if cp.stdout else None
        except (OSError, subprocess.TimeoutExpired):
            out[name] = None
    try:
        from importlib import metadata
        out["migplane"] = metadata.version("migplane")
    except Exception:
        out["migplane"] = None
    out["git"] = git_describe()
    return out


def git_describe(root=REPO_ROOT):
    """The commit the benchmarked code is at, '+dirty' when it has changes; or None."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
