"""The four parts of the benchmark, each returning a JSON-able dict.

All times in the results are seconds relative to the benchmark's own start
(``t0``), so probe samples, migration windows and plots line up.
"""

import logging
import time

from migplane.bench import convergence
from migplane.bench import overhead
from migplane.bench import stats
from migplane.bench.labrun import MIGPLANE
from migplane.bench.labrun import VIRSH
from migplane.bench.labrun import GuestSpec
from migplane.bench.labrun import realtime_prefix

LOG = logging.getLogger(__name__)

BASELINE = "baseline"
SPLIT = "split"
UNSPLIT = "unsplit"
SCENARIOS = (BASELINE, SPLIT, UNSPLIT, VIRSH)
#: What each scenario runs: (tool, split)
SCENARIO_TOOL = {SPLIT: (MIGPLANE, True), UNSPLIT: (MIGPLANE, False), VIRSH: (VIRSH, True)}
#: Percentile value given to a lost probe round trip (the probe's time-out).
LOST_MS = 5000.0


def _rel(t, t0):
    return None if t is None else round(t - t0, 4)


def _clean_record(rec, t0):
    """A migration record with relative times and only JSON data."""
    out = dict(rec)
    for key in ("start", "slot", "end", "transfer_start", "transfer_end"):
        if key in out:
            out[key] = _rel(out[key], t0)
    job = out.get("job") or {}
    elapsed_ms = job.get("time_elapsed")
    moved = job.get("memory_processed")
    out["goodput_Bps"] = (moved / (elapsed_ms / 1000.0)) if moved and elapsed_ms else None
    return out


def _window(records):
    return min(r["start"] for r in records), max(r["end"] for r in records)


# -- 1. isolation -----------------------------------------------------------------

def isolation(bench, cfg, t0, log=print):
    """Probe latency on the management plane while guests migrate, per scenario."""
    a, b = bench.host("host-a"), bench.host("host-b")
    n = max(cfg.concurrency)
    specs = [GuestSpec("mpb-iso%d" % i, cfg.iso_memory_mib, stamp_mib=cfg.iso_stamp_mib)
             for i in range(n)]
    runs = []
    checks = []
    try:
        bench.start_guests(specs, a)
        bench.start_probe(a, b, interval=cfg.probe_interval, size=cfg.probe_size)
        t_begin = time.monotonic()
        for conc in cfg.concurrency:
            names = [s.name for s in specs[:conc]]
            _colocate(bench, names, "host-a", log)
            repeats = cfg.repeats_c1 if conc == 1 else cfg.repeats_cn
            for rep in range(repeats):
                movers = [SPLIT, UNSPLIT, VIRSH]
                shift = rep % len(movers)
                order = [BASELINE] + movers[shift:] + movers[:shift]
                for scenario in order:
                    run = _isolation_run(bench, cfg, scenario, conc, rep, names, t0)
                    runs.append(run)
                    log("  isolation c=%d rep=%d %-8s %5.1f s %s" % (
                        conc, rep, scenario, run["end"] - run["start"],
                        "ok" if run["ok"] else "FAILED: %s" % run.get("error")))
                    time.sleep(cfg.settle_s)
        checks = [bench.guest_check(s.name) for s in specs]
    finally:
        samples = bench.stop_probe()
        bench.destroy_guests([s.name for s in specs])
    t_finish = time.monotonic()
    _attach_probe(runs, samples, cfg)
    per_sample = _bytes_per_probe_sample(runs)
    for run in runs:
        _attribute_bytes(run, per_sample)
    rel = [[round(t - t0, 4), None if r is None else round(r, 3)] for t, r in samples]
    return {
        "guest": specs[0].to_dict(),
        "probe": {"interval_s": cfg.probe_interval, "size_bytes": cfg.probe_size,
                  "lost_counts_as_ms": LOST_MS, "client": "host-a", "server": "host-b",
                  "plane": "management", "realtime": bool(realtime_prefix())},
        "probe_bytes_per_sample": per_sample,
        "runs": runs,
        "summary": summarize_isolation(runs, cfg.concurrency, rel),
        "guest_checks": checks,
        "samples": rel,
        "throughput": bench.throughput(t_begin, t_finish, t0),
    }


def _colocate(bench, names, host, log):
    strays = [(n, host) for n in names if bench.where[n] != host]
    if strays:
        log("  moving %d guest(s) back to %s first" % (len(strays), host))
        recs = bench.migrate(VIRSH, strays)
        bad = [r for r in recs if r["status"] != "completed"]
        if bad:
            raise RuntimeError("could not move guests back: %s" % bad[0].get("error"))


def _isolation_run(bench, cfg, scenario, conc, rep, names, t0):
    run = {"id": "c%d-r%d-%s" % (conc, rep, scenario), "scenario": scenario,
           "concurrency": conc, "repeat": rep, "ok": True}
    before = bench.snapshot()
    if scenario == BASELINE:
        time.sleep(cfg.baseline_s)
        after = bench.snapshot()
        start, end = before["t"], after["t"]
        records = []
    else:
        tool, split = SCENARIO_TOOL[scenario]
        moves = [(n, bench.other(bench.where[n])) for n in names]
        records = bench.migrate(tool, moves, split=split, max_concurrent=conc)
        after = bench.snapshot()
        start, end = _window(records)
        failed = [r for r in records if r["status"] != "completed"]
        if failed:
            run["ok"] = False
            run["error"] = failed[0].get("error") or failed[0]["status"]
    run.update(bench.delta(before, after))
    run["start"], run["end"] = _rel(start, t0), _rel(end, t0)
    run["_abs"] = (start, end)
    run["migrations"] = [_clean_record(r, t0) for r in records]
    return run


def _attach_probe(runs, samples, cfg):
    for run in runs:
        start, end = run.pop("_abs")
        window = stats.in_window(samples, start, end)
        run["probe"] = stats.latency_summary(window, lost_ms=LOST_MS)


def _bytes_per_probe_sample(runs):
    """Management-plane bytes per probe round trip, learnt from the baselines."""
    base = [r for r in runs if r["scenario"] == BASELINE and r["probe"]["n"]]
    total = sum(r["plane_bytes"]["management"] for r in base)
    count = sum(r["probe"]["n"] for r in base)
    return (total / count) if count else None


def _attribute_bytes(run, per_sample):
    """Bytes each plane carried because of the migration (the probe's removed)."""
    mgmt = run["plane_bytes"]["management"]
    if per_sample is not None:
        mgmt = max(0.0, mgmt - per_sample * run["probe"]["n"])
    mig = run["plane_bytes"]["migration"]
    run["migration_bytes"] = {"management": mgmt, "migration": mig}
    total = mgmt + mig
    run["migration_plane_share"] = (mig / total) if total and run["scenario"] != BASELINE \
        else None


def summarize_isolation(runs, concurrency, samples):
    """Per (concurrency, scenario): p50/p99/max of the probe samples of every window
    pooled, and the spread of the per-window p99s.

    :param samples: ``[[t, rtt_ms or None]]`` on the runs' time base.
    """
    out = {}
    for conc in concurrency:
        per = {}
        for scenario in SCENARIOS:
            sel = [r for r in runs if r["concurrency"] == conc and r["scenario"] == scenario]
            if not sel:
                continue
            pooled = []
            for r in sel:
                pooled += stats.in_window(samples, r["start"], r["end"])
            summary = stats.latency_summary(pooled, lost_ms=LOST_MS)
            p99s = [r["probe"]["p99_ms"] for r in sel]
            mb = {p: sum(r["migration_bytes"][p] for r in sel) for p in
                  ("management", "migration")}
            tot = mb["management"] + mb["migration"]
            per[scenario] = {
                "runs": len(sel),
                "failed_runs": sum(1 for r in sel if not r["ok"]),
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "p99_ms_min": stats.spread(p99s)["min"],
                "p99_ms_max": stats.spread(p99s)["max"],
                "max_ms": summary["max_ms"],
                "lost": summary["lost"],
                "samples": summary["n"],
                "window_s": stats.median([r["end"] - r["start"] for r in sel]),
                "migration_bytes": mb,
                "migration_plane_share": (mb["migration"] / tot)
                if tot and scenario != BASELINE else None,
                "cpu_busy": stats.median([r["cpu_busy"] for r in sel]),
            }
        out["c%d" % conc] = per
    return out


# -- 2. efficiency ------------------------------------------------------------------

def efficiency(bench, cfg, t0, log=print):
    """migplane vs bare virsh on the same guest and link, alternated in pairs."""
    out = {"kinds": {}}
    for kind in ("idle", "dirtying"):
        pairs = cfg.pairs_idle if kind == "idle" else cfg.pairs_dirty
        if pairs <= 0:
            continue
        spec = GuestSpec(
            "mpb-eff-%s" % kind,
            cfg.eff_stamp_mib + (cfg.dirty_mib if kind == "dirtying" else 0) + 32,
            stamp_mib=cfg.eff_stamp_mib,
            dirty_mib=cfg.dirty_mib if kind == "dirtying" else 0,
            rate_mib_s=cfg.dirty_rate_mib_s if kind == "dirtying" else 0)
        migrations = []
        try:
            bench.start_guests([spec], bench.host("host-a"))
            for pair in range(pairs):
                order = (MIGPLANE, VIRSH) if pair % 2 == 0 else (VIRSH, MIGPLANE)
                for tool in order:
                    dest = bench.other(bench.where[spec.name])
                    before = bench.snapshot()
                    rec = bench.migrate(tool, [(spec.name, dest)], split=True)[0]
                    after = bench.snapshot()
                    link = bench.link_use(rec["start"], rec["end"])
                    felt = convergence.felt_pause_ms(bench.watchers[spec.name], rec["start"])
                    rec = _clean_record(rec, t0)
                    rec["felt_pause_ms"] = felt
                    rec["link_use"] = link
                    rec["pair"] = pair
                    rec.update(bench.delta(before, after))
                    migrations.append(rec)
                    log("  efficiency %-8s pair %d %-8s %6.2f s %s" % (
                        kind, pair, tool, rec["wall_s"], rec["status"]))
                    time.sleep(cfg.settle_s)
            check = bench.guest_check(spec.name)
        finally:
            bench.destroy_guests([spec.name])
        out["kinds"][kind] = summarize_efficiency(migrations, bench.rate_bps)
        out["kinds"][kind]["guest"] = spec.to_dict()
        out["kinds"][kind]["guest_check"] = check
        out["kinds"][kind]["migrations"] = migrations
    out["link_rate_bps"] = bench.rate_bps
    return out


def _job(rec, key):
    job = rec.get("job") or {}
    return job.get(key)


def summarize_efficiency(migrations, rate_bps):
    ok = [m for m in migrations if m["status"] == "completed"]
    pairs = []
    for pair in sorted({m["pair"] for m in migrations}):
        mp = [m for m in ok if m["pair"] == pair and m["tool"] == MIGPLANE]
        vs = [m for m in ok if m["pair"] == pair and m["tool"] == VIRSH]
        if mp and vs:
            pairs.append({"pair": pair, "migplane_wall_s": mp[0]["wall_s"],
                          "virsh_wall_s": vs[0]["wall_s"],
                          "ratio": stats.ratio(mp[0]["wall_s"], vs[0]["wall_s"]),
                          "migplane_job_ms": _job(mp[0], "time_elapsed"),
                          "virsh_job_ms": _job(vs[0], "time_elapsed")})
    ratios = [p["ratio"] for p in pairs]
    job_ratios = [stats.ratio(p["migplane_job_ms"], p["virsh_job_ms"]) for p in pairs]
    per_tool = {}
    link_Bps = rate_bps / 8.0
    for tool in (MIGPLANE, VIRSH):
        sel = [m for m in ok if m["tool"] == tool]
        goodputs = [m["goodput_Bps"] for m in sel]
        per_tool[tool] = {
            "migrations": len(sel),
            "failed": sum(1 for m in migrations if m["tool"] == tool
                          and m["status"] != "completed"),
            "wall_s": stats.spread([m["wall_s"] for m in sel]),
            "job_ms": stats.spread([_job(m, "time_elapsed") for m in sel]),
            "downtime_ms": stats.spread([_job(m, "downtime") for m in sel]),
            "felt_pause_ms": stats.spread([m.get("felt_pause_ms") for m in sel]),
            "iterations": stats.spread([_job(m, "memory_iteration") for m in sel]),
            "memory_processed": stats.spread([_job(m, "memory_processed") for m in sel]),
            "goodput_Bps": stats.spread(goodputs),
            "goodput_share_of_link": stats.spread(
                [g / link_Bps if g else None for g in goodputs]),
            "sending_share_of_link": stats.spread(
                [(m.get("link_use") or {}).get("share_of_link") for m in sel]),
        }
        if tool == MIGPLANE:
            # migplane's own steps around the libvirt call
            per_tool[tool]["pre_s"] = stats.spread(
                [m["transfer_start"] - m["start"] for m in sel
                 if m.get("transfer_start") is not None])
            per_tool[tool]["post_s"] = stats.spread(
                [m["end"] - m["transfer_end"] for m in sel
                 if m.get("transfer_end") is not None])
    return {"pairs": pairs, "ratio": stats.spread(ratios),
            "job_ratio": stats.spread(job_ratios), "tools": per_tool}


# -- 4. overhead ------------------------------------------------------------------------

def monitor_overhead(all_migrations):
    """CPU of migplane's monitor loop per running migration, from every migplane run."""
    mons = [m["monitor"] for m in all_migrations
            if m.get("tool") == MIGPLANE and m.get("monitor")]
    shares = [m["monitor_cpu_share"] for m in mons]
    per_poll = [m["cpu_ms_per_poll"] for m in mons]
    return {"migrations": len(mons),
            "cpu_share": stats.spread(shares),
            "cpu_ms_per_poll": stats.spread(per_poll),
            "cpu_s_total": sum(m["monitor_cpu_s"] for m in mons),
            "wall_s_total": sum(m["monitor_wall_s"] for m in mons)}


def overhead_part(cfg):
    return {"micro": overhead.micro(batch=cfg.micro_batch, batches=cfg.micro_batches)}
