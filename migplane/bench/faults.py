"""``python -m migplane.bench.faults``: the fault matrix, on a lab, through the CLI.

Runs live migrations of small dirtying guests between the two hosts of a
lab, through the agents and ``migplane migrate``, each with one real fault
struck at one of these points (``--strike``):

===================  ==========================================================
``random``           a random moment 0-6 s after the source agent accepted it
``switchover``       when the source's job reports 6 MiB or less remaining
``postcopy``         when the source reports the switch to post-copy
``postcopy_random``  at a random point of the post-copy phase
``armed_switchover`` as ``switchover``, with post-copy armed (``--postcopy``)
===================  ==========================================================

The fault kinds (``--kinds``) are listed by ``--help``: links down for a few
seconds to two minutes, a TCP reset on the migration plane, management-plane
outages, an agent stopped while its libvirtd runs, libvirtd, agents and QEMU
killed. Post-copy strikes use a guest dirtying twice as fast as the link and
``--postcopy``, so they go post-copy whatever the default does.

While a run goes on, both hosts' libvirtd are asked twice a second or more
where the guest runs, and both consoles are followed: "two copies running"
is any moment both ran it (by libvirt's states, or by their consoles
printing ticks interleaved). After each run it checks that the guest runs
on exactly one host, is defined only there and its console shows
continuity; that the CLI's exit code and verdict and the agent's record
match where the guest is; how long an unresolved migration took to settle
once the fault was over; and that nothing is left over (a domain, even a
shut-off definition, on a host that does not run the guest; a slot held on
an agent).

Each run is appended to ``faults.json`` as it finishes (``--append``
continues a file); ``render`` rewrites ``FAULTS.md`` from every run in it.
Needs root, QEMU and libvirtd; 30 s to three minutes per run.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from migplane.bench import faultrules as rules
from migplane.core import units
from migplane.lab import agents as agents_mod

LOG = logging.getLogger("migplane.bench.faults")
SLOT_PROBE = r"""
import json, sys, requests
from migplane.agent import wire
token, ca = sys.argv[1:3]
out = {}
for url in sys.argv[3:]:
    try:
        r = requests.get(url + "/v1/host", verify=ca or True, timeout=10,
                         headers={"Authorization": "Bearer " + token})
        agent = wire.load_answer(r.json())["agent"]
        out[url] = {"running": agent["running"], "incoming": len(agent["incoming"])}
    except Exception as err:
        out[url] = {"error": str(err)}
print(json.dumps(out))
"""
#: The migration plane's rate (MiB/s) in a matrix's lab: post-copy pulls
#: pages as fast as the link allows, and its phase must last long enough to
#: strike in.
LINK_MIB = 8
RESULTS_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Profile:
    """The guest and the migration of one strike point."""
    memory_mib: int
    dirty_mib: int
    rate_mib_s: int
    bandwidth: int            # the migration's cap, MiB/s
    #: True: ``--postcopy``; False: the source agent forbids it
    #: (``permit_post_copy = false``); None: the agents' defaults.
    postcopy: bool = None
    force_after: int = None   # ``--force-complete-after``, if it did not switch by then


#: Random: converges in a few iterations (~15 s), with the defaults.
#: Switch-over: the split's reproducer (128 MiB rewriting 16 MiB at 4 MiB/s,
#: 8 MiB/s cap), in pre-copy whatever the default does, so that the strike
#: finds the switch-over it is named for. Post-copy: dirties twice as fast
#: as the link, so only post-copy converges it.
PROFILES = {
    rules.RANDOM: Profile(48, 8, 1, 4),
    rules.SWITCHOVER: Profile(128, 16, 4, 8, False),
    rules.POSTCOPY: Profile(64, 32, 2 * LINK_MIB, LINK_MIB, True, 20),
    rules.ARMED_SWITCHOVER: Profile(128, 16, 4, 8, True),
}
PROFILES[rules.POSTCOPY_RANDOM] = PROFILES[rules.POSTCOPY]
#: Longest wait for a strike point before striking anyway (after the migration).
STRIKE_WAIT_S = 300
SETTLE_WAIT_S = 120


@dataclasses.dataclass
class Run:
    index: int
    kind: str
    source: str
    destination: str
    strike: str = rules.RANDOM
    target: str = ""           # the host(s) the fault hit
    delay_s: float = 0.0       # when it struck, after the migration was accepted
    duration_s: float = 0.0    # of the fault (links, a stopped agent)
    #: The CLI was still following the migration when the fault struck.
    during: bool = False
    #: The migration's phase when the fault struck: precopy, postcopy, after.
    phase: str = ""
    migration_id: str = None
    cli_code: int = None
    cli_status: str = None
    cli_verdict: str = None
    cli_running_on: str = None
    record_status: str = None
    record_verdict: str = None
    record_running_on: str = None
    #: Each host's view of the guest at the end (faultrules' vocabulary).
    hosts: dict = dataclasses.field(default_factory=dict)
    persistent: list = dataclasses.field(default_factory=list)
    running_on: list = dataclasses.field(default_factory=list)
    defined_on: list = dataclasses.field(default_factory=list)
    continuity: bool = False
    continuity_text: str = ""
    #: The guest ticked on the host it runs on after the run ended.
    ticked: bool = False
    #: None: not checked (runs recorded before the check existed).
    two_copies: bool = None
    two_copies_seen_by: list = dataclasses.field(default_factory=list)
    #: Faults in post-copy: their end (link back...) -> the stream moved again (s).
    recovery_s: float = None
    #: Unresolved migrations: the fault's end -> a settled verdict (s).
    settle_s: float = None
    resumed_by_hand: bool = False
    slots_held: list = dataclasses.field(default_factory=list)
    leftovers: list = dataclasses.field(default_factory=list)
    expected: str = None
    intact: bool = False
    verdict_true: bool = False
    problems: list = dataclasses.field(default_factory=list)
    error: str = None
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def kept(self):
        """Both halves of the guest are meant to stay (lost, post-copy paused)."""
        return self.expected in ("lost", "postcopy-paused")

    @property
    def missed(self):
        """Why this run missed a target (empty when it met them all)."""
        out = []
        if self.two_copies:
            out.append("two copies running")
        if not self.verdict_true:
            out.append("verdict not true")
        if not self.intact and not self.kept:
            out.append("guest not intact")
        if self.leftovers:
            out.append("leftovers")
        if self.cli_verdict == "unresolved" and not (
                self.settle_s is not None and self.settle_s <= rules.SETTLE_LIMIT_S):
            out.append("not settled within %.0f s" % rules.SETTLE_LIMIT_S)
        if self.error:
            out.append("error")
        return out


class Sampler:
    """Asks both hosts' libvirtd, in turn and all along a run, how the guest
    is (and the source for its job's statistics): a thread filling
    :attr:`samples` with :class:`faultrules.Sample`."""

    STATS = ("type", "data_total", "data_processed", "data_remaining",
             "memory_processed", "memory_remaining", "memory_iteration")

    def __init__(self, source, destination, name, period=0.1):
        self.hosts = (source, destination)
        self.name = name
        self.period = period
        self.samples = []
        self._conns = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="fault-sampler")

    def __enter__(self):
        import libvirt
        libvirt.registerErrorHandler(lambda *args: None, None)  # "not found" is an answer
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for conn in self._conns.values():
            _close(conn)

    def snapshot(self):
        with self._lock:
            return list(self.samples)

    def _loop(self):
        while not self._stop.is_set():
            t = time.monotonic()
            src, stats = self._look(self.hosts[0], stats=True)
            dst, _ = self._look(self.hosts[1])
            with self._lock:
                self.samples.append(rules.Sample(t, src, dst, stats))
            self._stop.wait(self.period)

    def _look(self, host, stats=False):
        import libvirt
        try:
            conn = self._conns.get(host.name)
            if conn is None:
                conn = self._conns[host.name] = libvirt.open(host.uri)
            try:
                dom = conn.lookupByName(self.name)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return "absent", {}
                raise
            state, reason = dom.state()
            found = {}
            if stats and state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED):
                found = {k: v for k, v in dom.jobStats().items() if k in self.STATS}
            return view(state, reason), found
        except libvirt.libvirtError:
            _close(self._conns.pop(host.name, None))
            return "unreachable", {}


def _close(conn):
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: S110 - a dead daemon's connection: nothing to close
            pass


def view(state, reason):
    """libvirt's (state, reason) in faultrules' words."""
    import libvirt
    reasons = {
        libvirt.VIR_DOMAIN_RUNNING: {
            libvirt.VIR_DOMAIN_RUNNING_POSTCOPY: "postcopy",
            libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED: "postcopy-failed",
            libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED: "migration-canceled",
            libvirt.VIR_DOMAIN_RUNNING_MIGRATED: "migrated"},
        libvirt.VIR_DOMAIN_PAUSED: {
            libvirt.VIR_DOMAIN_PAUSED_MIGRATION: "migration",
            libvirt.VIR_DOMAIN_PAUSED_POSTCOPY: "postcopy",
            libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "postcopy-failed",
            libvirt.VIR_DOMAIN_PAUSED_USER: "user",
            libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "starting-up"},
        # who stopped it: a destroy, or its QEMU dying on its own
        libvirt.VIR_DOMAIN_SHUTOFF: {
            libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
            libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
            libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed",
            libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated"},
    }
    names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_BLOCKED: "running",
             libvirt.VIR_DOMAIN_PAUSED: "paused", libvirt.VIR_DOMAIN_SHUTOFF: "shut-off",
             libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down",
             libvirt.VIR_DOMAIN_CRASHED: "crashed"}
    name = names.get(state, "state-%d" % state)
    why = reasons.get(state, {}).get(reason)
    return "%s:%s" % (name, why) if why else name


class FaultMatrix:
    """The lab, its agents, and one run at a time."""

    def __init__(self, lab, agents, kernel, rng, log=print, link_mib=None):
        self.lab = lab
        self.agents = agents
        self.kernel = kernel
        self.rng = rng
        self.log = log
        #: The migration plane's rate, when the lab shapes it (for predictions).
        self.link_mib = link_mib

    # -- helpers -------------------------------------------------------------------

    def host(self, name):
        return self.lab.host(name)

    def start_agent(self, host, **live_migration):
        self.agents.start(host, my_ip=host.mig_ip, live_migration=live_migration or None)

    def cli(self, *argv, timeout=120):
        return self.agents.run_cli(*argv, *self.agents.cli_args(), timeout=timeout)

    def record_of(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.cli("list", "--json")
            try:
                found = [m for m in json.loads(done.stdout)["migrations"]
                         if m["instance"] == name]
            except (ValueError, KeyError):
                found = []
            if found:
                return found[-1]
            time.sleep(0.3)
        return None

    def show(self, migration_id):
        done = self.cli("show", migration_id, "--json")
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout)
        except ValueError:
            return None

    def follow(self, migration_id, until, observations):
        """Read the record until its verdict settles or ``until`` (monotonic)
        passes; append (t, verdict) to ``observations``; return the last record."""
        record = None
        while True:
            shown = self.show(migration_id)
            if shown is not None:
                record = shown
                verdict = rules.verdict_of(shown)
                observations.append((time.monotonic(), verdict))
                if rules.settled(verdict):
                    return record
            if time.monotonic() > until:
                return record
            time.sleep(1.0)

    def domains(self, name):
        """({host: view}, [hosts holding a persistent definition]) at this moment."""
        import libvirt
        libvirt.registerErrorHandler(lambda *args: None, None)  # "not found" is an answer
        views, persistent = {}, []
        for host in self.lab.hosts:
            try:
                conn = libvirt.open(host.uri)
            except libvirt.libvirtError:
                views[host.name] = "unreachable"
                continue
            try:
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    views[host.name] = "absent"
                    continue
                views[host.name] = view(*dom.state())
                if dom.isPersistent():
                    persistent.append(host.name)
            finally:
                conn.close()
        return views, persistent

    def slots(self):
        urls = [self.agents.urls[h.name] for h in self.lab.hosts]
        done = self.lab.run_controller(
            [sys.executable, "-c", SLOT_PROBE, self.agents.token,
             self.agents.ca_file or "", *urls], check=False, timeout=60,
            env=agents_mod.agent_env())
        try:
            return json.loads(done.stdout)
        except ValueError:
            return {"error": done.stderr[-300:]}

    def held_slots(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            held = ["%s: %s" % (url, s) for url, s in self.slots().items()
                    if not isinstance(s, dict) or s.get("error") or s.get("running")
                    or s.get("incoming")]
            if not held or time.monotonic() > deadline:
                return held
            time.sleep(2)

    # -- faults --------------------------------------------------------------------

    def targets(self, kind, src, dst, hit=None):
        """The hosts a fault of ``kind`` hits: its sides, "either" drawn (or ``hit``)."""
        by_side = {"source": src, "destination": dst}
        if kind.sides == rules.EITHER:
            side = hit or self.rng.choice(["source", "destination"])
            return [by_side[side]]
        return [by_side[s] for s in kind.sides]

    def inject(self, run, kind, name, hosts):
        """Strike; return when the fault is over (monotonic): links back,
        daemons restarted, the agent continued."""
        if kind.fault == "link":
            for host in hosts:
                for plane in kind.planes:
                    host.set_link(plane, False)
            try:
                time.sleep(run.duration_s)
            finally:
                for host in hosts:
                    for plane in kind.planes:
                        host.set_link(plane, True)
        elif kind.fault == "reset":
            for host in hosts:
                host.set_tcp_reset(kind.planes[0], True)
            try:
                time.sleep(run.duration_s)
            finally:
                for host in hosts:
                    host.set_tcp_reset(kind.planes[0], False)
        elif kind.fault == "agent_stop":
            for host in hosts:
                self.agents.freeze(host)
            try:
                time.sleep(run.duration_s)
            finally:
                for host in hosts:
                    self.agents.thaw(host)
        elif kind.fault == "libvirtd":
            for host in hosts:
                host.kill_libvirtd()
            time.sleep(1.0)
            for host in hosts:
                host.start_libvirtd()
        elif kind.fault == "agent":
            for host in hosts:
                self.agents.kill(host)
                log = self.agents.log_path(host)
                if log.exists():  # start() begins a new log: keep the dead agent's
                    log.replace(log.with_name("agent.log.run%03d" % run.index))
            time.sleep(self.rng.uniform(0.5, 3.0))
            for host in hosts:
                self.start_agent(host)
        elif kind.fault == "qemu":
            for host in hosts:
                host.kill_qemu(name)
        elif kind.fault == "abort":
            if run.migration_id is not None:
                self.cli("abort", run.migration_id, "--on", run.source)
        elif kind.fault == "timeout":
            pass  # the source agent was started with a short timeout for this run
        return time.monotonic()

    # -- one run -------------------------------------------------------------------

    def run(self, index, kind, strike=rules.RANDOM, duration=None, hit=None):
        """One faulted migration, judged; ``duration`` (low, high) overrides
        the kind's, ``hit`` ("source"/"destination") the host a link fault hits."""
        from migplane.lab import guest
        from migplane.lab.console import ConsoleWatcher
        k = rules.KINDS[kind]
        profile = PROFILES[strike]
        a, b = self.lab.hosts
        src, dst = (a, b) if self.rng.random() < 0.5 else (b, a)
        name = "flt%03d" % index
        run = Run(index=index, kind=kind, strike=strike, source=src.name,
                  destination=dst.name)
        # every draw up front, so a seed replays the same schedule
        hosts = self.targets(k, src, dst, hit)
        run.target = ",".join(h.name for h in hosts)
        low, high = duration or k.durations or (0, 0)
        drawn = round(self.rng.uniform(low, high), 1)
        run.duration_s = drawn if k.durations else 0.0
        delay = round(self.rng.uniform(0.0, 6.0), 1)
        fraction = self.rng.random()
        started = self._fault_end = time.monotonic()
        source_conf = {}
        if k.fault == "timeout":
            source_conf.update(completion_timeout=2, timeout_action="abort")
        if profile.postcopy is False:
            source_conf["permit_post_copy"] = "false"
        if source_conf:
            self.start_agent(src, **source_conf)
        watcher = ConsoleWatcher.for_domain(self.lab.hosts, name)
        sampler = Sampler(src, dst, name)
        try:
            with watcher as w:
                guest.define_guest(src, name, self.kernel, memory_mib=profile.memory_mib,
                                   cmdline=guest.cmdline(tick_ms=50,
                                                         dirty_mib=profile.dirty_mib,
                                                         rate_mib_s=profile.rate_mib_s,
                                                         stamp_mib=16))
                w.wait_ready(ticks=3, timeout=90)
                if profile.dirty_mib and profile.postcopy:
                    # dirtying at full rate before the move: the first pass cannot catch up
                    w.wait_for(lambda w: w.last() is not None and w.last().passes >= 1,
                               90, "a whole pass over the working set")
                with sampler:
                    self.migrate(run, k, profile, name, hosts, delay, fraction, sampler)
                    self.conclude(run, k, name, w)
                samples = sampler.snapshot()
            run.continuity = bool(w.continuity())
            run.continuity_text = str(w.continuity())[:300]
            seen = []
            if rules.two_copies_by_state(rules.queries_of(samples, src.name, dst.name)):
                seen.append("libvirt states")
            if rules.two_copies_by_console([(t.host, t.t) for t in w.ticks()
                                            if not t.initial]):
                seen.append("consoles")
            run.two_copies_seen_by = seen
            run.two_copies = bool(seen)
            if run.phase == "postcopy" and k.fault in rules.RECOVERABLE:
                run.recovery_s = rules.recovery_s(samples, self._fault_end)
            run.slots_held = self.held_slots()
            self.judge(run)
        except Exception as err:  # one broken run must not stop the matrix
            LOG.exception("run %d (%s at %s) broke", index, kind, strike)
            run.error = "%s: %s" % (type(err).__name__, err)
        finally:
            run.seconds = round(time.monotonic() - started, 1)
            self.restore(src, source_conf)
            for host in self.lab.hosts:
                guest.destroy_guest(host, name)
        return run

    def migrate(self, run, k, profile, name, hosts, delay, fraction, sampler):
        """Start ``migplane migrate``, strike at the run's point, wait for the CLI."""
        argv = ["migrate", name, "--from", run.source, "--to", run.destination,
                "--bandwidth", str(profile.bandwidth), "--json", "--reconnect", "600"]
        if profile.postcopy:
            argv += ["--postcopy"]
        if profile.force_after is not None:
            argv += ["--force-complete-after", str(profile.force_after)]
        cli = self.agents.start_cli(*argv, *self.agents.cli_args())
        result = {}
        done = threading.Event()

        def wait():
            result["out"], result["err"] = cli.communicate()
            done.set()

        waiter = threading.Thread(target=wait, daemon=True, name="fault-cli")
        waiter.start()
        try:
            # the clock starts once the source agent accepted the migration:
            # the fault is for the migration, not for the CLI's first request
            record = self.record_of(name, timeout=60)
            run.migration_id = record["id"] if record else None
            armed = time.monotonic()
            rate = self.link_mib * units.MiB if self.link_mib else profile.bandwidth * units.MiB
            while True:
                now = time.monotonic()
                at = rules.strike_time(run.strike, sampler.snapshot(), armed, delay,
                                       fraction, rate)
                if (at is not None and now >= at) or now - armed > STRIKE_WAIT_S:
                    break
                if done.is_set() and run.strike != rules.RANDOM:
                    break  # the point never came: strike after the end, harmless too
                time.sleep(0.05)
            run.delay_s = round(now - armed, 1)
            run.during = not done.is_set()
            run.phase = rules.phase_at(sampler.snapshot(), now, not run.during)
            sampler.period = 0.25   # enough for the two-copies check and recovery times
            if k.fault == "qemu" and run.phase != "postcopy":
                # killing a guest that is not in post-copy proves nothing about post-copy
                run.error = "no post-copy to strike in (phase %s): QEMU not killed" % run.phase
                self._fault_end = time.monotonic()
            else:
                self._fault_end = self.inject(run, k, name, hosts)
            if not done.wait(900):
                raise TimeoutError("migplane migrate still runs 900 s after the fault")
        finally:
            if cli.poll() is None:
                cli.kill()
            waiter.join(30)
        run.cli_code = cli.returncode
        try:
            shown = json.loads(result.get("out") or "")
        except ValueError:
            run.error = "CLI: %s" % (result.get("err") or "").strip()[-300:]
            shown = {}
        run.cli_status = shown.get("status")
        run.cli_verdict = rules.verdict_of(shown) if shown else None
        run.cli_running_on = (shown.get("result") or {}).get("running_on")
        if run.migration_id is None and shown.get("id"):
            run.migration_id = shown["id"]

    def conclude(self, run, k, name, w):
        """After the CLI: follow the record until it settles (and resume a
        paused post-copy by hand), then look at where the guest is."""
        observations = []
        record = None
        if run.migration_id:
            until = max(time.monotonic(), self._fault_end) + SETTLE_WAIT_S
            record = self.follow(run.migration_id, until, observations)
            if rules.verdict_of(record) == "postcopy-paused":
                run.resumed_by_hand = self.resume(run)
                if run.resumed_by_hand:
                    record = self.follow(run.migration_id, time.monotonic() + SETTLE_WAIT_S,
                                         []) or record
        if run.cli_verdict == "unresolved" or any(v == "unresolved" for _, v in observations):
            run.settle_s = rules.settle_s(observations, self._fault_end)
        if record is not None:
            run.record_status = record.get("status")
            run.record_verdict = rules.verdict_of(record)
            run.record_running_on = (record.get("result") or {}).get("running_on")
        run.hosts, run.persistent = self.domains(name)
        run.running_on = [h for h, v in sorted(run.hosts.items()) if rules.running(v)]
        run.defined_on = [h for h, v in sorted(run.hosts.items()) if v != "absent"]
        # a guest still in post-copy (or lost in it) cannot be asked to tick
        if (len(run.running_on) == 1 and "postcopy" not in run.hosts[run.running_on[0]]
                and not (k.fault == "qemu" and run.phase == "postcopy")):
            try:
                w.wait_ticks(5, host=run.running_on[0], timeout=30)
                run.ticked = True
            except TimeoutError as e:
                run.error = "; ".join(filter(None, (run.error, "no ticks: %s" % e)))

    def resume(self, run):
        """``migplane resume`` of a paused post-copy; True when it was accepted."""
        done = self.cli("resume", run.migration_id, "--on", run.source, timeout=300)
        if done.returncode == 2:   # a resume that finds the migration's host itself
            done = self.cli("resume", run.migration_id, timeout=300)
        if done.returncode != 0:
            LOG.warning("migplane resume %s: exit %d: %s", run.migration_id,
                        done.returncode, (done.stderr or done.stdout).strip()[-300:])
        return done.returncode == 0

    def judge(self, run):
        judge(run)

    def restore(self, src, source_conf):
        """Leave the lab as the next run expects it: links up, no resets,
        daemons and agents up."""
        for host in self.lab.hosts:
            for plane in ("migration", "management"):
                if not host.link_up(plane):
                    host.set_link(plane, True)
            host.set_tcp_reset("migration", False)
            if not host.libvirtd_alive():
                host.start_libvirtd()
            if host.name in self.agents.frozen:
                self.agents.thaw(host)
            if host.name not in self.agents.pids:
                self.start_agent(host)
        if source_conf:   # the run's own settings
            self.start_agent(src)


# -- results ------------------------------------------------------------------------

class Results:
    """``faults.json``: every run, written again as each one finishes."""

    def __init__(self, path, data=None):
        self.path = Path(path)
        self.data = data or {"version": RESULTS_VERSION, "sessions": [], "runs": []}

    @classmethod
    def load(cls, path):
        data = json.loads(Path(path).read_text())
        if "sessions" not in data:   # one session's file (version 1)
            data = {"version": RESULTS_VERSION, "runs": data.get("runs", []),
                    "sessions": [{k: data.get(k) for k in ("command", "seed", "seconds")}]}
        return cls(path, data)

    @property
    def runs(self):
        return [Run.from_dict(r) for r in self.data["runs"]]

    def begin(self, command, seed):
        self.data["sessions"].append({
            "command": command, "seed": seed, "seconds": 0.0, "runs": 0,
            "started": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"), "code": code_version()})
        self.save()

    def add(self, run, seconds):
        self.data["runs"].append(dataclasses.asdict(run))
        session = self.data["sessions"][-1]
        session["runs"] = session.get("runs", 0) + 1
        session["seconds"] = round(seconds, 1)
        self.save()

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def code_version():
    """The commit of the migplane that runs (``git describe``), or None."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return done.stdout.strip() or None


def run_matrix(schedule, results, seed, lab_name="mpfaults", log=print, duration=None,
               hit=None):
    """Build a lab, run the (strike, kind) ``schedule``, add each run to
    ``results`` as it ends, tear the lab down."""
    from migplane.lab import Lab
    rng = random.Random(seed)  # noqa: S311 - a reproducible test schedule
    if Lab.exists(lab_name):
        Lab.load(lab_name).down()
    lab = Lab(lab_name, hosts=2)
    first = len(results.data["runs"])
    start = time.monotonic()
    try:
        lab.up()
        lab.shape("migration", rate="%dbit" % (LINK_MIB * units.MiB * 8))
        agents = agents_mod.LabAgents(lab)
        try:
            for host in lab.hosts:
                agents.start(host, my_ip=host.mig_ip)
            matrix = FaultMatrix(lab, agents, lab.build_guest(), rng, log=log,
                                 link_mib=LINK_MIB)
            for i, (strike, kind) in enumerate(schedule):
                run = matrix.run(first + i, kind, strike, duration, hit)
                results.add(run, time.monotonic() - start)
                log("run %d/%d %-16s %-22s %s -> %s  phase=%s verdict=%s(%s) "
                    "two-copies=%s intact=%s leftovers=%s  (%.0f s)%s" % (
                        i + 1, len(schedule), strike, kind, run.source, run.destination,
                        run.phase, run.cli_verdict, "true" if run.verdict_true else "FALSE",
                        run.two_copies, run.intact, len(run.leftovers), run.seconds,
                        "  " + run.error if run.error else ""))
                if run.missed:
                    log("  details: %s" % json.dumps(dataclasses.asdict(run)))
        finally:
            agents.stop_all()
    finally:
        lab.down()


# -- report -------------------------------------------------------------------------

COLUMNS = ("runs", "mid-migration", "in post-copy", "moved", "intact", "lost",
           "verdict true", "two copies running", "unresolved settled <= 30 s",
           "recovery s", "leftovers")


def summarize(runs):
    """One row of counts for ``runs`` (see :data:`COLUMNS`)."""
    unresolved = [r for r in runs if r.cli_verdict == "unresolved"]
    settled = [r for r in unresolved
               if r.settle_s is not None and r.settle_s <= rules.SETTLE_LIMIT_S]
    recoveries = [r.recovery_s for r in runs if r.recovery_s is not None]
    return {
        "runs": len(runs),
        "during": sum(r.during for r in runs),
        "postcopy": sum(r.phase == "postcopy" for r in runs),
        "moved": sum(r.running_on == [r.destination] and not r.kept for r in runs),
        "intact": sum(r.intact for r in runs),
        "lost": sum(r.expected == "lost" for r in runs),
        "verdict_true": sum(r.verdict_true for r in runs),
        "two_copies": sum(r.two_copies is True for r in runs),
        "unchecked": sum(r.two_copies is None for r in runs),
        "unresolved": len(unresolved),
        "settled": len(settled),
        "settle_max": max((r.settle_s for r in unresolved if r.settle_s is not None),
                          default=None),
        "recovery_median": statistics.median(recoveries) if recoveries else None,
        "recovery_max": max(recoveries, default=None),
        "leftovers": sum(bool(r.leftovers) for r in runs),
    }


def _row(label, s):
    settle = "%d/%d" % (s["settled"], s["unresolved"]) if s["unresolved"] else "-"
    if s["settle_max"] is not None:
        settle += " (max %.0f s)" % s["settle_max"]
    recovery = "-" if s["recovery_median"] is None else "%.1f (max %.1f)" % (
        s["recovery_median"], s["recovery_max"])
    two = "%d" % s["two_copies"]
    if s["unchecked"]:
        two += " (%d not checked)" % s["unchecked"]
    return "| %s | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %d |" % (
        label, s["runs"], s["during"], s["postcopy"], s["moved"], s["intact"], s["lost"],
        s["verdict_true"], two, settle, recovery, s["leftovers"])


def _table(first, groups):
    lines = ["| %s | %s |" % (first, " | ".join(COLUMNS)),
             "| --- |" + " ---: |" * len(COLUMNS)]
    lines += [_row(label, summarize(runs)) for label, runs in groups if runs]
    return lines


def report(runs, sessions):
    """FAULTS.md from every run and the sessions that made them."""
    seconds = sum(s.get("seconds") or 0 for s in sessions)
    lines = ["# Fault matrix", "",
             "%d live migrations on a two-host lab (real libvirtd + QEMU TCG guests that "
             "dirty memory), through the agents and `migplane migrate`, each with one "
             "real fault; %.0f min in total, generated by:" % (len(runs), seconds / 60), ""]
    for s in sessions:
        lines.append("- `%s` (seed %s%s%s)" % (
            s.get("command"), s.get("seed"),
            ", %s" % s["started"] if s.get("started") else "",
            ", code at %s" % s["code"] if s.get("code") else ""))
    lines += ["", "The fault strikes at one of these points:", ""]
    lines += ["- *%s*: %s" % (k, v.replace("%d", str(rules.SWITCHOVER_REMAINING // units.MiB)))
              for k, v in rules.STRIKE_HELP.items()]
    lines += ["", "Guests: %s." % "; ".join(
        "%s %d MiB rewriting %d MiB at %d MiB/s, capped at %d MiB/s%s" % (
            k, p.memory_mib, p.dirty_mib, p.rate_mib_s, p.bandwidth,
            " with `--postcopy` (the migration plane shaped to %d MiB/s)" % LINK_MIB
            if p.postcopy else ", post-copy forbidden" if p.postcopy is False else "")
        for k, p in PROFILES.items()
        if k != rules.POSTCOPY_RANDOM)]
    lines += ["", "*Two copies running* counts runs in which both hosts ran the guest at "
              "one moment, by libvirt's states asked all along the run or by both "
              "consoles printing ticks interleaved: it must be 0 in every row. A run is "
              "*intact* when the guest runs on exactly one host, is defined only there, "
              "and its console shows continuity; *lost* counts the runs whose fault the "
              "guest cannot survive (a QEMU killed in post-copy), which must end with the "
              "`lost` verdict and neither half destroyed or resumed. The *verdict* is true "
              "when the CLI's exit code matches the verdict it names and that verdict, "
              "the record's and the host they name match where the guest is. "
              "*Unresolved settled* counts unresolved migrations that settled within "
              "%.0f s of the fault's end. *Recovery* is, for faults in post-copy that end "
              "(a link back, a daemon restarted), the seconds from the fault's end to the "
              "stream moving again (median, max). *Leftovers* count runs that left a "
              "domain (even a shut-off definition) on a host that does not run the guest, "
              "or a slot held on an agent (but by a post-copy kept paused for a "
              "resume). *Mid-migration* counts faults that struck "
              "while the migration still ran; *moved*, runs that ended with the guest on "
              "the destination."
              % rules.SETTLE_LIMIT_S, "", "## By strike point", ""]
    strikes = list(rules.STRIKES) + sorted({r.strike for r in runs} - set(rules.STRIKES))
    lines += _table("strike point", [(s, [r for r in runs if r.strike == s])
                                     for s in strikes])
    lines.append(_row("**all**", summarize(runs)))
    lines += ["", "## By fault kind", ""]
    kinds = list(rules.KINDS) + sorted({r.kind for r in runs} - set(rules.KINDS))
    lines += _table("fault", [(k, [r for r in runs if r.kind == k]) for k in kinds])
    lines += ["", "Fault kinds: " + "; ".join(
        "*%s*: %s" % (k.name, k.help) for k in rules.KIND_LIST
        if any(r.kind == k.name for r in runs)) + "."]
    post = [r for r in runs if r.phase == "postcopy"]
    if post:
        lines += ["", "## Runs that struck in post-copy", "",
                  "| run | strike | fault | hit | lasted s | recovery s | verdict | "
                  "expected | two copies | intact |", "| ---: |" + " --- |" * 9]
        for r in post:
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r.index, r.strike, r.kind, r.target or "-",
                "%.1f" % r.duration_s if r.duration_s else "-",
                "-" if r.recovery_s is None else "%.1f" % r.recovery_s,
                r.cli_verdict, r.expected, "yes" if r.two_copies else "no",
                "yes" if r.intact else "no"))
    bad = [r for r in runs if r.missed]
    lines += ["", "## Runs that missed a target", ""]
    if not bad:
        lines.append("None.")
    for r in bad:
        lines.append(
            "- run %d, %s at %s (%s -> %s%s, %.1f s after the start, phase %s): %s. "
            "CLI %s/%s on %s, record %s on %s, hosts %s, continuity %s, two copies by %s, "
            "leftovers %s%s%s" % (
                r.index, r.kind, r.strike, r.source, r.destination,
                ", hit %s" % r.target if r.target else "", r.delay_s, r.phase or "-",
                ", ".join(r.missed), r.cli_code, r.cli_verdict or r.cli_status,
                r.cli_running_on, r.record_verdict or r.record_status, r.record_running_on,
                r.hosts or r.defined_on, r.continuity,
                ", ".join(r.two_copies_seen_by) or "none", r.leftovers or "none",
                "; " + "; ".join(r.problems) if r.problems else "",
                "; error: %s" % r.error if r.error else ""))
    return "\n".join(lines) + "\n"


def judge(run):
    """Set what ``run`` proved, by faultrules' current rules, from its facts."""
    verdict = rules.judge(dataclasses.asdict(run))
    run.intact = verdict.intact
    run.verdict_true = verdict.verdict_true
    run.expected = verdict.expected
    run.leftovers = list(verdict.leftovers)
    run.problems = list(verdict.problems)


def render(out):
    """FAULTS.md from ``out``/faults.json, every run judged again by the current
    rules; exit status 0 when every run met its targets."""
    results = Results.load(Path(out) / "faults.json")
    runs = results.runs
    for run in runs:
        judge(run)
    text = report(runs, results.data["sessions"])
    (Path(out) / "FAULTS.md").write_text(text)
    print(text)
    return 1 if any(r.missed for r in runs) else 0


def _duration(text):
    try:
        low, _, high = text.partition("-")
        low, high = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError("expected SECONDS or LOW-HIGH, got %r" % text)
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError("expected 0 < LOW <= HIGH, got %r" % text)
    return low, high


def _names(text):
    return tuple(n.strip() for n in text.split(",") if n.strip())


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m migplane.bench.faults", description=__doc__.split("\n\n")[0],
        epilog="fault kinds:\n" + "\n".join(
            "  %-22s %s (at: %s)" % (k.name, k.help, ", ".join(k.strikes))
            for k in rules.KIND_LIST),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("run", "render"), default="run",
                   help="run faulted migrations (default), or only render FAULTS.md "
                        "from the faults.json in --out")
    p.add_argument("--runs", "--faults", type=int, metavar="N",
                   help="faulted migrations to run (default: one per strike point and "
                        "kind selected)")
    p.add_argument("--seed", type=int, help="random seed (default: a random one)")
    p.add_argument("--kinds", type=_names, help="comma-separated fault kinds (default: all)")
    p.add_argument("--strike", type=_names, default=rules.STRIKES,
                   help="comma-separated strike points: %s (default: all)"
                        % ", ".join(rules.STRIKES))
    p.add_argument("--duration", type=_duration, metavar="LOW-HIGH",
                   help="seconds a link, reset or stopped-agent fault lasts, instead of "
                        "the kind's own range")
    p.add_argument("--hit", choices=("source", "destination"),
                   help="the host a fault of either host hits (default: drawn)")
    p.add_argument("--out", default="benchmarks",
                   help="directory for FAULTS.md and faults.json (default benchmarks)")
    p.add_argument("--append", action="store_true",
                   help="add the runs to the existing faults.json instead of starting "
                        "a new one")
    p.add_argument("--lab-name", default="mpfaults")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.action == "render":
        if not (out / "faults.json").exists():
            p.error("no results to render: %s does not exist" % (out / "faults.json"))
        return render(out)
    try:
        cell_list = rules.cells(args.strike, args.kinds)
    except ValueError as err:
        p.error(str(err))
    if not cell_list:
        p.error("no fault kind of %s strikes at %s" % (
            ", ".join(args.kinds), ", ".join(args.strike)))
    runs = len(cell_list) if args.runs is None else args.runs
    if runs < 1:
        p.error("--runs must be 1 or more, got %d" % runs)
    path = out / "faults.json"
    if args.append and path.exists():
        results = Results.load(path)
    else:
        results = Results(path)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)  # noqa: S311
    schedule = rules.schedule(runs, cell_list, random.Random(seed))  # noqa: S311
    command = " ".join(["python -m migplane.bench.faults", *(argv if argv is not None
                                                              else sys.argv[1:])])
    logging.basicConfig(level=logging.WARNING)
    results.begin(command, seed)
    run_matrix(schedule, results, seed, args.lab_name, lambda m: print(m, flush=True),
               args.duration, args.hit)
    return render(out)


if __name__ == "__main__":
    sys.exit(main())
