"""``python -m migplane.bench``: run the benchmark on a lab, write the report.

Writes ``results.json``, ``REPORT.md`` and PNG plots into ``--out``. Needs
root, QEMU and libvirtd (the lab); ``--render-only`` redoes the report and
plots from an existing ``results.json`` without any of them.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from migplane.bench import convergence
from migplane.bench import evacuation
from migplane.bench import scenarios
from migplane.bench import schema
from migplane.bench import targets

LOG = logging.getLogger("migplane.bench")
PARTS = schema.PARTS


@dataclasses.dataclass
class Config:
    """Sizes and counts of one run (``full()`` and ``quick()`` presets)."""

    quick: bool = False
    rate: str = "100mbit"
    delay: str = None
    lab_name: str = "mpbench"
    parts: tuple = PARTS
    # isolation
    concurrency: tuple = (1, 4)
    iso_memory_mib: int = 96
    iso_stamp_mib: int = 64
    repeats_c1: int = 3
    repeats_cn: int = 2
    baseline_s: float = 8.0
    probe_interval: float = 0.02
    probe_size: int = 4096
    settle_s: float = 1.0
    # efficiency
    eff_stamp_mib: int = 256
    pairs_idle: int = 5
    pairs_dirty: int = 3
    dirty_mib: int = 16
    dirty_rate_mib_s: int = 4
    # evacuation: 16 guests, 48-192 MiB stamped (1920 MiB, ~180 s of link at
    # 100 Mbit/s); serial ~250 s, naive ~190 s, the planner 2 x ~185 s, and each
    # way's boots and checks (~60 s): 15.7 minutes measured on a quiet machine
    evac_guests: int = 16
    evac_stamp_mib: tuple = (48, 96, 144, 192)
    evac_headroom_mib: int = 16
    evac_dirty_mib: int = 8
    evac_dirty_rate_mib_s: int = 4
    evac_limit: int = 3
    evac_repeats: int = 2
    evac_fixed_cost_s: float = 2.0
    # overhead
    micro_batch: int = 2000
    micro_batches: int = 5
    # convergence
    conv_memory_mib: int = 128
    conv_link_mib: int = 8
    conv_multiples: tuple = (0.25, 0.5, 1.0, 2.0, 4.0)

    @classmethod
    def full(cls, **kw):
        return cls(**kw)

    @classmethod
    def quick_preset(cls, **kw):
        base = dict(quick=True, iso_memory_mib=32, iso_stamp_mib=16, repeats_c1=1,
                    repeats_cn=1, baseline_s=2.0, settle_s=0.5, eff_stamp_mib=48,
                    pairs_idle=2, pairs_dirty=1, dirty_mib=8, evac_guests=6,
                    evac_stamp_mib=(16, 24, 32), evac_dirty_mib=4, evac_limit=3,
                    evac_repeats=1, micro_batch=500, micro_batches=3,
                    conv_memory_mib=32, conv_link_mib=16)
        base.update(kw)
        return cls(**base)


def _csv_ints(text):
    return tuple(int(x) for x in text.split(",") if x.strip())


def _csv_floats(text):
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of numbers"
                                         % text)


def _parts(text):
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise argparse.ArgumentTypeError("unknown part(s) %s; choose from %s" % (
            ", ".join(bad), ", ".join(PARTS)))
    return parts


def parser():
    p = argparse.ArgumentParser(
        prog="migplane bench",
        description="Benchmark migplane's migration plane on a lab, side by side with "
                    "bare virsh, and write results.json, REPORT.md and PNG plots (needs "
                    "root; also 'python -m migplane.bench').",
        epilog="examples:\n"
               "  migplane bench --out benchmarks                  # about 40 minutes\n"
               "  migplane bench --quick --out /tmp/b              # about 2-3 minutes\n"
               "  migplane bench --render-only --out benchmarks    # from results.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small guests, one repeat: a few minutes (CI runs an even shorter "
                        "variant, see tests/functional/bench)")
    p.add_argument("--out", default="benchmarks",
                   help="directory for results.json, REPORT.md and plots (default: "
                        "%(default)s)")
    p.add_argument("--rate", default="100mbit",
                   help="rate both planes are shaped to, in tc units (default: %(default)s)")
    p.add_argument("--delay", default=None, help="one-way delay added on both planes, e.g. 1ms")
    p.add_argument("--lab-name", default="mpbench", help="name of the lab to build")
    p.add_argument("--parts", type=_parts, default=PARTS,
                   help="comma-separated parts to run (default: %s)" % ",".join(PARTS))
    p.add_argument("--concurrency", type=_csv_ints, help="isolation concurrencies (1,4)")
    p.add_argument("--repeats", type=int, help="isolation repeats per concurrency")
    p.add_argument("--pairs", type=int, help="efficiency pairs per guest kind")
    p.add_argument("--stamp-mib", type=int, help="stamped MiB of the efficiency guest")
    p.add_argument("--evac-guests", type=int, help="guests to evacuate (16)")
    p.add_argument("--evac-limit", type=int, help="per-host concurrency limit (3)")
    p.add_argument("--evac-repeats", type=int,
                   help="runs of the planner way; its ratio is judged on their median, "
                        "or on the worst of fewer than 3 (2)")
    p.add_argument("--convergence-rates", type=_csv_floats,
                   help="dirty rates of the convergence part, as multiples of the link "
                        "(default 0.25,0.5,1,2,4)")
    p.add_argument("--render-only", action="store_true",
                   help="only redo REPORT.md and the plots from OUT/results.json")
    p.add_argument("-v", "--verbose", action="store_true", help="log migplane's own messages")
    return p


def config_from_args(args):
    kw = {"rate": args.rate, "delay": args.delay, "lab_name": args.lab_name,
          "parts": tuple(args.parts)}
    if args.concurrency:
        kw["concurrency"] = args.concurrency
    if args.repeats:
        kw["repeats_c1"] = kw["repeats_cn"] = args.repeats
    if args.pairs is not None:
        kw["pairs_idle"] = kw["pairs_dirty"] = args.pairs
    if args.stamp_mib:
        kw["eff_stamp_mib"] = args.stamp_mib
    if args.evac_guests:
        kw["evac_guests"] = args.evac_guests
    if args.evac_limit:
        kw["evac_limit"] = args.evac_limit
    if args.evac_repeats:
        kw["evac_repeats"] = args.evac_repeats
    if args.convergence_rates:
        kw["conv_multiples"] = args.convergence_rates
    return Config.quick_preset(**kw) if args.quick else Config.full(**kw)


def _scalar(value):
    return value is None or isinstance(value, (bool, int, float))


def dumps(obj, level=0):
    """JSON like ``json.dumps(indent=1, sort_keys=True)``, except that a list of
    plain numbers (a probe sample, a rate) stays on one line: a readable diff."""
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = ["%s%s: %s" % (inner, json.dumps(str(k)), dumps(obj[k], level + 1))
                 for k in sorted(obj, key=str)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(_scalar(v) for v in obj):
            return json.dumps(list(obj), allow_nan=False)
        return "[\n" + ",\n".join(inner + dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def _write_json(path, data):
    text = dumps(data)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".results.")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def render(results, out_dir, log=print):
    """(Re)compute the targets, write the plots, REPORT.md and results.json."""
    from migplane.bench import report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resummarize(results)
    results["targets"] = targets.evaluate(results)
    if not results["targets"]:
        results["targets"] = [{"id": "none", "part": "none", "what": "no part measured",
                               "target": "-", "value": None, "met": None,
                               "measured": "nothing was measured"}]
    for old in out_dir.glob("*.png"):
        if old.name in plots_names() | RETIRED_PLOTS:
            old.unlink()
    problems = []
    try:
        from migplane.bench import plots
    except ImportError as err:
        results["plots"] = []
        problems.append("no plots: %s (pip install matplotlib)" % err)
    else:
        results["plots"] = plots.render_all(results, str(out_dir))
    problems += schema.validate(results)
    if problems:
        log("results.json is not well formed: %s" % "; ".join(problems[:10]))
    _write_json(out_dir / "results.json", results)
    (out_dir / "REPORT.md").write_text(report.render(results))
    return problems


def resummarize(results):
    """Recompute the summaries from the raw records kept in ``results``, so that a
    ``--render-only`` always reports with the current code."""
    iso = results.get("isolation")
    if iso and iso.get("runs") is not None and iso.get("samples") is not None:
        concs = sorted({r["concurrency"] for r in iso["runs"]})
        iso["summary"] = scenarios.summarize_isolation(iso["runs"], concs, iso["samples"])
    conv = results.get("convergence")
    if conv and conv.get("runs") is not None:
        conv["summary"] = convergence.summarize(conv["runs"])
    eff = results.get("efficiency")
    for data in ((eff or {}).get("kinds") or {}).values():
        if data.get("migrations") is not None:
            data.update(scenarios.summarize_efficiency(data["migrations"],
                                                       eff["link_rate_bps"]))


def plots_names():
    return {"isolation_latency.png", "isolation_timeline.png", "isolation_cdf.png",
            "efficiency.png", "convergence.png"} | evacuation.plot_names()


#: Plots of earlier versions, removed from --out when the report is written again.
RETIRED_PLOTS = {"scale.png"}


def _finite(obj):
    """JSON cannot hold NaN/inf: make them null."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def run(cfg, out_dir, log=print, command=None):
    """Run the parts of ``cfg`` on a fresh lab; return the results dict."""
    from migplane.bench import labrun

    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    t0 = time.monotonic()
    results = {"schema": schema.SCHEMA, "errors": [], "plots": [], "targets": []}
    meta = {
        "started_at": started.isoformat(), "quick": cfg.quick, "rate": cfg.rate,
        "delay": cfg.delay, "lab": cfg.lab_name, "hosts": 3,
        "parts": list(cfg.parts), "config": dataclasses.asdict(cfg),
        "command": command or "python -m migplane.bench" + (" --quick" if cfg.quick else ""),
        "versions": labrun.versions(), "noise": {}, "duration_s": None,
    }
    results["meta"] = meta
    lab_parts = [p for p in cfg.parts if p != "overhead"]
    bench = labrun.BenchLab(cfg.lab_name, hosts=3, rate=cfg.rate, delay=cfg.delay)
    meta["rate_bps"] = bench.rate_bps
    meta["noise"]["before"] = bench.noise()
    all_migrations = []
    try:
        if lab_parts:
            log("lab %s: 3 hosts, both planes shaped to %s" % (cfg.lab_name, cfg.rate))
            try:
                bench.up()
                meta["lab_up_s"] = round(time.monotonic() - t0, 2)
            except Exception as err:
                LOG.exception("The lab did not come up")
                results["errors"].append({"part": "lab", "error": "%s: %s" % (
                    type(err).__name__, err)})
                log("lab FAILED: %s" % err)
                lab_parts = []
        for part in lab_parts:
            log("%s ..." % part)
            p0 = time.monotonic()
            try:
                fn = {"isolation": scenarios.isolation, "efficiency": scenarios.efficiency,
                      "evacuation": evacuation.run_part, "convergence": convergence.run}[part]
                results[part] = fn(bench, cfg, t0, log=lambda m: log(m))
                results[part]["part_s"] = round(time.monotonic() - p0, 1)
            except Exception as err:
                LOG.exception("Part %s failed", part)
                results["errors"].append({"part": part, "error": "%s: %s" % (
                    type(err).__name__, err)})
                log("%s FAILED: %s" % (part, err))
        meta["noise"]["after"] = bench.noise()
    finally:
        if bench.lab is not None or bench.workdir is not None:
            try:
                errors = bench.down()
                if errors:
                    results["errors"].append({"part": "teardown", "error": "; ".join(errors)})
            except Exception as err:
                results["errors"].append({"part": "teardown", "error": str(err)})
    if "overhead" in cfg.parts:
        log("overhead ...")
        try:
            ov = scenarios.overhead_part(cfg)
            for run_ in (results.get("isolation") or {}).get("runs", []):
                all_migrations += run_["migrations"]
            for data in ((results.get("efficiency") or {}).get("kinds") or {}).values():
                all_migrations += data["migrations"]
            for run_ in (results.get("evacuation") or {}).get("runs", []):
                all_migrations += run_["migrations"]
            ov["monitor"] = scenarios.monitor_overhead(all_migrations)
            results["overhead"] = ov
        except Exception as err:
            LOG.exception("Part overhead failed")
            results["errors"].append({"part": "overhead", "error": str(err)})
    meta["duration_s"] = round(time.monotonic() - t0, 1)
    if "after" not in meta["noise"]:
        meta["noise"]["after"] = bench.noise()
    return _finite(results)


_MAIN_PID = os.getpid()


def _terminate(signum, frame):
    if os.getpid() != _MAIN_PID:
        # a forked helper (pyroute2 forks to enter namespaces) inherits this
        # handler: it must just end, never unwind our stack
        os._exit(128 + signum)
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out)

    def log(msg):
        print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)

    if args.render_only:
        path = out_dir / "results.json"
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            print("cannot read %s: %s" % (path, err), file=sys.stderr)
            return 2
        problems = render(results, out_dir, log)
        log("wrote %s" % ", ".join(["REPORT.md", "results.json"] + results["plots"]))
        return 1 if problems else 0

    if os.geteuid() != 0 and any(p != "overhead" for p in args.parts):
        print("the benchmark builds a lab: run it as root (or --parts overhead)",
              file=sys.stderr)
        return 2
    try:
        import libvirt
        libvirt.registerErrorHandler(lambda ctx, err: None, None)  # we report errors
    except ImportError:
        pass
    cfg = config_from_args(args)
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        results = run(cfg, out_dir, log, command=" ".join(
            ["python -m migplane.bench"] + [shlex.quote(a) for a in argv]))
    finally:
        signal.signal(signal.SIGTERM, old)
    problems = render(results, out_dir, log)
    for t in results["targets"]:
        log("target %-26s %-10s %s" % (t["id"], {True: "met", False: "NOT MET",
                                                  None: "n/a"}[t["met"]], t["measured"]))
    log("wrote %s in %s (%.0f s)" % (", ".join(["REPORT.md", "results.json"]
                                              + results["plots"]), out_dir,
                                     results["meta"]["duration_s"]))
    return 1 if (results["errors"] or problems) else 0


if __name__ == "__main__":
    sys.exit(main())
