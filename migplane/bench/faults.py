"""``python -m migplane.bench.faults``: the fault matrix, on a lab, through the CLI.

Runs N live migrations of small dirtying guests between the two hosts of a
lab, through the agents and ``migplane migrate``, each with one real fault
at a random moment:

========================  ===================================================
kind                      fault
========================  ===================================================
``migration_link``        the migration link of the source or destination
                          down for 2-8 s
``management_link``       the management link of the source or destination
                          down for 2-6 s
``libvirtd_source|_dest`` that host's libvirtd SIGKILLed, then restarted
``agent_source|_dest``    that host's agent SIGKILLed, then restarted
``abort``                 ``migplane abort``
``completion_timeout``    the source agent's completion timeout (with
                          ``timeout_action = abort``) passes
========================  ===================================================

After each run it checks: the guest runs on exactly one host and is defined
only there; the console's continuity check passes; the CLI's verdict and
the agent's record match where the guest is; nothing is left over (a domain
on the other host, a slot held on either agent). It writes ``FAULTS.md``
and ``faults.json`` (default into ``benchmarks/``). Needs root, QEMU and
libvirtd; about 40 s per run.
"""

import argparse
import dataclasses
import json
import logging
import random
import subprocess
import sys
import time
from pathlib import Path

LOG = logging.getLogger("migplane.bench.faults")

KINDS = ("migration_link", "management_link", "libvirtd_source", "libvirtd_dest",
         "agent_source", "agent_dest", "abort", "completion_timeout")
#: Per-migration bandwidth cap (MiB/s): a 48 MiB guest takes ~15 s to move.
BANDWIDTH = 4
MEMORY_MIB = 48
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


@dataclasses.dataclass
class Run:
    index: int
    kind: str
    source: str
    destination: str
    target: str = ""           # which host the fault hit (links)
    delay_s: float = 0.0       # after the migration started
    duration_s: float = 0.0    # of the fault (links, daemon downtime)
    cli_code: int = None
    cli_status: str = None
    cli_running_on: str = None
    record_status: str = None
    record_running_on: str = None
    running_on: list = dataclasses.field(default_factory=list)
    defined_on: list = dataclasses.field(default_factory=list)
    continuity: bool = False
    continuity_text: str = ""
    leftovers: list = dataclasses.field(default_factory=list)
    intact: bool = False
    verdict_true: bool = False
    #: The CLI was still following the migration when the fault struck.
    during: bool = False
    error: str = None
    seconds: float = 0.0


class FaultMatrix:
    """The lab, its agents, and one run at a time."""

    def __init__(self, lab, agents, kernel, rng, log=print):
        self.lab = lab
        self.agents = agents
        self.kernel = kernel
        self.rng = rng
        self.log = log

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

    def settled(self, migration_id, timeout=180):
        deadline = time.monotonic() + timeout
        record = None
        while time.monotonic() < deadline:
            done = self.cli("show", migration_id, "--json")
            if done.returncode == 0:
                record = json.loads(done.stdout)
                if record["status"] not in ("pending", "queued", "running"):
                    return record
            time.sleep(1.0)
        return record

    def domains(self, name):
        import libvirt
        libvirt.registerErrorHandler(lambda *args: None, None)  # "not found" is an answer
        running, defined = [], []
        for host in self.lab.hosts:
            conn = libvirt.open(host.uri)
            try:
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue
                defined.append((host.name, dom.isPersistent(), dom.state()[0]))
                if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                    running.append(host.name)
            finally:
                conn.close()
        return running, defined

    def slots(self):
        urls = [self.agents.urls[h.name] for h in self.lab.hosts]
        done = self.lab.run_controller(
            [sys.executable, "-c", SLOT_PROBE, self.agents.token,
             self.agents.ca_file or "", *urls], check=False, timeout=60,
            env=_env())
        try:
            return json.loads(done.stdout)
        except ValueError:
            return {"error": done.stderr[-300:]}

    # -- faults --------------------------------------------------------------------

    def inject(self, run, name, src, dst):
        kind = run.kind
        if kind in ("migration_link", "management_link"):
            plane = "migration" if kind == "migration_link" else "management"
            host = self.rng.choice([src, dst])
            run.target = host.name
            run.duration_s = round(self.rng.uniform(2, 8 if plane == "migration" else 6), 1)
            host.set_link(plane, False)
            try:
                time.sleep(run.duration_s)
            finally:
                host.set_link(plane, True)
        elif kind.startswith("libvirtd_"):
            host = src if kind.endswith("source") else dst
            run.target = host.name
            host.kill_libvirtd()
            time.sleep(1.0)
            host.start_libvirtd()
        elif kind.startswith("agent_"):
            host = src if kind.endswith("source") else dst
            run.target = host.name
            self.agents.kill(host)
            log = self.agents.log_path(host)
            if log.exists():  # start() begins a new log: keep the dead agent's
                log.replace(log.with_name("agent.log.run%03d" % run.index))
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.start_agent(host)
        elif kind == "abort":
            record = self.record_of(name)
            if record is not None:
                self.cli("abort", record["id"], "--on", src.name)
        elif kind == "completion_timeout":
            pass  # the source agent was started with a short timeout for this run

    # -- one run -------------------------------------------------------------------

    def run(self, index, kind):
        from migplane.lab import guest
        from migplane.lab.console import ConsoleWatcher
        a, b = self.lab.hosts
        src, dst = (a, b) if self.rng.random() < 0.5 else (b, a)
        name = "flt%03d" % index
        run = Run(index=index, kind=kind, source=src.name, destination=dst.name)
        started = time.monotonic()
        if kind == "completion_timeout":
            self.start_agent(src, completion_timeout=2, timeout_action="abort")
        watcher = ConsoleWatcher.for_domain(self.lab.hosts, name)
        try:
            with watcher as w:
                guest.define_guest(src, name, self.kernel, memory_mib=MEMORY_MIB,
                                   cmdline=guest.cmdline(tick_ms=50, dirty_mib=8,
                                                         rate_mib_s=1, stamp_mib=16))
                w.wait_for(lambda w: w.stamped(), 90, "MPSTAMPED")
                w.wait_ticks(3, timeout=30)
                cli = subprocess.Popen(
                    ["ip", "netns", "exec", self.lab.controller_netns,
                     *self.agents.cli_argv("migrate", name, "--from", src.name, "--to",
                                           dst.name, "--bandwidth", str(BANDWIDTH),
                                           "--json", "--reconnect", "180",
                                           *self.agents.cli_args())],
                    env=_cli_env(self.agents), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
                try:
                    # the clock starts once the source agent accepted the migration:
                    # the fault is for the migration, not for the CLI's first request
                    self.record_of(name, timeout=60)
                    run.delay_s = round(self.rng.uniform(0.0, 6.0), 1)
                    time.sleep(run.delay_s)
                    run.during = cli.poll() is None
                    self.inject(run, name, src, dst)
                    out, err = cli.communicate(timeout=400)
                finally:
                    if cli.poll() is None:
                        cli.kill()
                        cli.communicate()
                run.cli_code = cli.returncode
                try:
                    shown = json.loads(out)
                    run.cli_status = shown.get("status")
                    run.cli_running_on = (shown.get("result") or {}).get("running_on")
                except ValueError:
                    run.error = "CLI: %s" % err.strip()[-300:]
                record = self.record_of(name, timeout=30)
                if record is not None:
                    record = self.settled(record["id"]) or record
                    run.record_status = record["status"]
                    run.record_running_on = (record.get("result") or {}).get("running_on")
                running, defined = self.domains(name)
                run.running_on = running
                run.defined_on = [d[0] for d in defined]
                if len(running) == 1:
                    try:
                        w.wait_ticks(5, host=running[0], timeout=30)
                    except TimeoutError as e:
                        run.error = (run.error or "") + " no ticks: %s" % e
            continuity = w.continuity()
            run.continuity = bool(continuity)
            run.continuity_text = str(continuity)[:300]
            self.judge(run, defined)
        except Exception as err:  # one broken run must not stop the matrix
            LOG.exception("run %d (%s) broke", index, kind)
            run.error = "%s: %s" % (type(err).__name__, err)
        finally:
            run.seconds = round(time.monotonic() - started, 1)
            self.restore(src, kind)
            for host in self.lab.hosts:
                guest.destroy_guest(host, name)
        return run

    def judge(self, run, defined):
        where = run.running_on[0] if len(run.running_on) == 1 else None
        persistent = [h for h, persistent_, _ in defined if persistent_]
        run.intact = bool(where and run.defined_on == [where] and persistent == [where]
                          and run.continuity)
        moved = where == run.destination
        run.verdict_true = bool(
            where
            and run.cli_running_on == where and run.record_running_on == where
            and (run.cli_code == 0) == moved
            and (run.cli_status == "completed") == moved
            and (run.record_status == "completed") == moved)
        leftovers = ["domain on %s" % h for h, _, _ in defined if h != where]
        deadline = time.monotonic() + 30
        while True:
            slots = self.slots()
            held = ["%s: %s" % (url, s) for url, s in slots.items()
                    if not isinstance(s, dict) or s.get("error") or s.get("running")
                    or s.get("incoming")]
            if not held or time.monotonic() > deadline:
                break
            time.sleep(2)
        run.leftovers = leftovers + ["slot " + h for h in held]

    def restore(self, src, kind):
        """Leave the lab as the next run expects it: links up, daemons and agents up."""
        for host in self.lab.hosts:
            for plane in ("migration", "management"):
                if not host.link_up(plane):
                    host.set_link(plane, True)
            if not host.libvirtd_alive():
                host.start_libvirtd()
            if host.name not in self.agents.pids:
                self.start_agent(host)
        if kind == "completion_timeout":
            self.start_agent(src)


def _env():
    from migplane.agent import inlab
    return inlab._env()


def _cli_env(agents):
    env = _env()
    env["MIGPLANE_TOKEN"] = agents.token
    return env


def summarize(runs):
    table = {}
    for run in runs:
        row = table.setdefault(run.kind, {"runs": 0, "during": 0, "moved": 0,
                                          "intact": 0, "verdict_true": 0,
                                          "leftovers": 0})
        row["runs"] += 1
        row["during"] += run.during
        row["moved"] += run.running_on == [run.destination]
        row["intact"] += run.intact
        row["verdict_true"] += run.verdict_true
        row["leftovers"] += bool(run.leftovers)
    total = {k: sum(r[k] for r in table.values())
             for k in ("runs", "during", "moved", "intact", "verdict_true", "leftovers")}
    return table, total


def report(runs, seconds, command, seed):
    table, total = summarize(runs)
    lines = ["# Fault matrix", "",
             "Generated by `%s` (seed %s): %d live migrations on a two-host lab (real "
             "libvirtd + QEMU TCG guests of %d MiB that dirty memory, capped at %d MiB/s), "
             "through the agents and `migplane migrate`, each with one real fault at a "
             "random moment; %.0f min in total." % (command, seed, len(runs), MEMORY_MIB,
                                                    BANDWIDTH, seconds / 60), "",
             "A run is *intact* when the guest runs on exactly one host, is defined only "
             "there, and the console's continuity check passes; the *verdict* is true "
             "when the CLI's exit code, status and host and the agent's record all match "
             "where the guest is; *leftovers* count runs that left a domain on the other "
             "host or a slot held on an agent; *mid-migration* counts the runs whose "
             "fault struck while the migration was still running (the others hit it "
             "just after it ended, which must be harmless too); *moved* counts the runs "
             "that ended with the guest on the destination (the others kept it on the "
             "source).", "",
             "| fault | runs | mid-migration | moved | intact | verdict true | leftovers |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind in KINDS:
        if kind in table:
            r = table[kind]
            lines.append("| %s | %d | %d | %d | %d | %d | %d |" % (
                kind, r["runs"], r["during"], r["moved"], r["intact"], r["verdict_true"],
                r["leftovers"]))
    lines.append("| **all** | %d | %d | %d | %d (%.0f %%) | %d (%.0f %%) | %d |" % (
        total["runs"], total["during"], total["moved"], total["intact"],
        100.0 * total["intact"] / max(1, total["runs"]),
        total["verdict_true"], 100.0 * total["verdict_true"] / max(1, total["runs"]),
        total["leftovers"]))
    bad = [r for r in runs if not (r.intact and r.verdict_true and not r.leftovers)]
    lines += ["", "## Runs that missed a target", ""]
    if not bad:
        lines.append("None.")
    for r in bad:
        lines.append("- run %d, %s (%s -> %s%s, at %.1f s): CLI %s/%s on %s, record %s "
                     "on %s, running on %s, defined on %s, continuity %s, leftovers %s%s"
                     % (r.index, r.kind, r.source, r.destination,
                        ", hit %s" % r.target if r.target else "", r.delay_s, r.cli_code,
                        r.cli_status, r.cli_running_on, r.record_status,
                        r.record_running_on, r.running_on, r.defined_on, r.continuity,
                        r.leftovers or "none", "; error: %s" % r.error if r.error else ""))
    return "\n".join(lines) + "\n"


def run_matrix(runs, seed=None, kinds=KINDS, lab_name="mpfaults", log=print):
    """Build a lab, run ``runs`` faulted migrations, tear it down; return the Runs."""
    from migplane.agent import inlab
    from migplane.lab import Lab
    seed = seed if seed is not None else random.randrange(1 << 30)  # noqa: S311
    rng = random.Random(seed)  # noqa: S311 - a reproducible test schedule
    if Lab.exists(lab_name):
        Lab.load(lab_name).down()
    lab = Lab(lab_name, hosts=2)
    results = []
    try:
        lab.up()
        agents = inlab.LabAgents(lab)
        try:
            for host in lab.hosts:
                agents.start(host, my_ip=host.mig_ip)
            matrix = FaultMatrix(lab, agents, lab.build_guest(), rng, log=log)
            order = [kinds[i % len(kinds)] for i in range(runs)]
            rng.shuffle(order)
            for i, kind in enumerate(order):
                run = matrix.run(i, kind)
                results.append(run)
                log("run %d/%d %-18s %s -> %s  intact=%s verdict=%s leftovers=%s  "
                    "(%.0f s)%s" % (i + 1, runs, kind, run.source, run.destination,
                                    run.intact, run.verdict_true, run.leftovers or 0,
                                    run.seconds, "  " + run.error if run.error else ""))
                if not (run.intact and run.verdict_true and not run.leftovers):
                    log("  details: %s" % json.dumps(dataclasses.asdict(run)))
        finally:
            agents.stop_all()
    finally:
        lab.down()
    return results, seed


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m migplane.bench.faults",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", "--faults", type=int, default=8, metavar="N",
                   help="faulted migrations to run (default 8: one per kind)")
    p.add_argument("--seed", type=int, help="random seed (default: a random one)")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="comma-separated fault kinds (default: all)")
    p.add_argument("--out", default="benchmarks",
                   help="directory for FAULTS.md and faults.json (default benchmarks)")
    p.add_argument("--lab-name", default="mpfaults")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite FAULTS.md from the faults.json in --out; run nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        return render(out)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or args.runs < 1:
        p.error("unknown fault kind(s) %s; known: %s" % (unknown, ", ".join(KINDS))
                if unknown else "--runs must be 1 or more, got %d" % args.runs)
    logging.basicConfig(level=logging.WARNING)
    start = time.monotonic()
    runs, seed = run_matrix(args.runs, args.seed, kinds, args.lab_name,
                            log=lambda m: print(m, flush=True))
    seconds = time.monotonic() - start
    command = "python -m migplane.bench.faults --runs %d" % args.runs
    out.mkdir(parents=True, exist_ok=True)
    table, total = summarize(runs)
    (out / "faults.json").write_text(json.dumps({
        "seed": seed, "seconds": round(seconds, 1), "command": command, "kinds": table,
        "total": total, "runs": [dataclasses.asdict(r) for r in runs]}, indent=1) + "\n")
    return render(out)


def render(out):
    """FAULTS.md from ``out``/faults.json; exit status 0 when every target is met."""
    data = json.loads((out / "faults.json").read_text())
    runs = [Run(**r) for r in data["runs"]]
    command = data.get("command") or "python -m migplane.bench.faults --runs %d" % len(runs)
    text = report(runs, data["seconds"], command, data["seed"])
    (out / "FAULTS.md").write_text(text)
    print(text)
    _, total = summarize(runs)
    ok = total["intact"] == total["verdict_true"] == total["runs"] and not total["leftovers"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
