"""Benchmark part "evacuation": empty a host three ways, against its link.

The same guests (same sizes, a third of them dirtying) leave host-a for
host-b and host-c three ways in one run, each way with freshly booted guests:

* ``serial``: one migration at a time, like Nova's ``host-evacuate-live``;
* ``naive``: every migration requested at once through the shared per-host
  limit (``HostLimiter``, ``when_busy = wait``), as KubeVirt or oVirt do;
* ``planner``: migplane's :class:`~migplane.core.evacuation.Evacuation`,
  planned against the link (``core.evacuation_plan``), repeated
  ``evac_repeats`` times because its ratio to the link's limit is a target
  judged on the median of repeats.

For each: total time, total / (bytes host-a sent / link rate), the link's idle
time and gaps, downtime, the limiter's peak, whether every guest is intact.
This module also holds the part's summary, targets, report section and
schema check (pure functions of the results dict).
"""

import logging
import time

from migplane.bench import stats
from migplane.bench.labrun import MIGPLANE
from migplane.bench.labrun import GuestSpec
from migplane.core import units

LOG = logging.getLogger(__name__)
PART = "evacuation"
WAYS = ("serial", "naive", "planner")
#: The planner's target: total within this factor of bytes / link rate.
PLANNER_RATIO = 1.05
#: Below this share of the link rate the migration plane counts as idle.
IDLE_SHARE = 0.2
#: Idle runs shorter than this are sampling noise, not gaps.
MIN_GAP_S = 0.3
WAY_TEXT = {
    "serial": "serial (one at a time, like Nova's host-evacuate-live)",
    "naive": "naive parallel (all at once through the per-host limit)",
    "planner": "migplane's planner",
}


def guest_specs(cfg, prefix):
    """The evacuated guests: sizes cycling through ``cfg.evac_stamp_mib``, every
    third one dirtying memory."""
    specs = []
    for i in range(cfg.evac_guests):
        stamp = cfg.evac_stamp_mib[i % len(cfg.evac_stamp_mib)]
        dirty = i % 3 == 2
        specs.append(GuestSpec(
            "%s%02d" % (prefix, i), stamp + cfg.evac_headroom_mib, stamp_mib=stamp,
            dirty_mib=cfg.evac_dirty_mib if dirty else 0,
            rate_mib_s=cfg.evac_dirty_rate_mib_s if dirty else 0))
    return specs


# -- running ---------------------------------------------------------------------------

def run_part(bench, cfg, t0, log=print):
    """Run every way on ``bench``; return the part's results."""
    from migplane.bench import scenarios

    src = bench.host("host-a")
    dests = [h.name for h in bench.hosts if h.name != src.name][:2]
    order = ["serial", "naive"] + ["planner"] * max(1, cfg.evac_repeats)
    runs = []
    for index, way in enumerate(order):
        repeat = sum(1 for r in runs if r["way"] == way)
        specs = guest_specs(cfg, "ev%s%d-" % (way[0], repeat))
        log("  evacuation %s%s: %d guests" % (
            way, " #%d" % (repeat + 1) if way == "planner" else "", len(specs)))
        run = _run_way(bench, cfg, way, specs, src, dests, t0, scenarios)
        run.update(way=way, repeat=repeat, index=index)
        log("    %.1f s, x %s of bytes / link rate (x %s of interface bytes), link idle "
            "%.1f s in %d gap(s) (%s), downtime %s ms, peaks %s, %d/%d intact" % (
                run["total_s"] or -1, _f(run["ratio_to_ideal"], "%.3f"),
                _f(run["ratio_to_ideal_iface"], "%.3f"), run["idle_s"], len(run["gaps"]),
                _breakdown(run.get("idle_breakdown")), run["downtime_ms"], run["peaks"],
                sum(1 for c in run["guest_checks"] if c["intact"]), len(specs)))
        runs.append(run)
    return summarize(runs, cfg, dests, bench.rate_bps)


def _breakdown(b):
    if not b:
        return "n/a"
    return ("first fixed cost %.1f s, %.1f s in %d gap(s) between guests, last "
            "switch-over %.1f s, link underfilled %.1f s" % (
                b["head_s"], b["between_s"], b["between_gaps"], b["tail_s"],
                b["underfilled_s"]))


def _limiter(cfg):
    from migplane.core import limiter as limiter_mod
    from migplane.core import settings as settings_mod

    return limiter_mod.HostLimiter(settings_mod.ConcurrencySettings(
        max_concurrent=cfg.evac_limit, when_busy="wait", busy_timeout=3600))


def shaped_bytes(host):
    """Bytes the shaper of ``host``'s migration interface charged to the link rate.

    A veth counts a GSO packet's headers once; the shaper (like a wire)
    charges them for every frame, about 4.4 % more at a 1500-byte MTU: the
    interface's count never reaches the link rate. None when not shaped.
    """
    import re

    from migplane.lab.proc import run

    out = run(["tc", "-s", "-n", host.netns, "class", "show", "dev",
               host.ifname("migration")], check=False).stdout
    found = re.search(r"class htb 1:10 .*?\n\s*Sent (\d+) bytes", out)
    return int(found.group(1)) if found else None


def _run_way(bench, cfg, way, specs, src, dests, t0, scenarios):
    limiter = _limiter(cfg)
    moves = [(s.name, dests[i % len(dests)]) for i, s in enumerate(specs)]
    plan = None
    try:
        bench.start_guests(specs, src, poll_s=0.2)
        snap0 = bench.snapshot()
        before = src.counters()
        wire0 = shaped_bytes(src)
        t_start = time.monotonic()
        if way == "serial":
            records = []
            for move in moves:
                records += bench.migrate(MIGPLANE, [move], split=True, limiter=limiter,
                                         max_concurrent=cfg.evac_limit)
        elif way == "naive":
            records = bench.migrate(MIGPLANE, moves, split=True, limiter=limiter,
                                    max_concurrent=cfg.evac_limit)
        else:
            records, plan = _planner(bench, cfg, specs, src, dests, limiter)
        t_end = time.monotonic()
        snap1 = bench.snapshot()
        after = src.counters()
        wire1 = shaped_bytes(src)
        checks = [bench.guest_check(s.name) for s in specs]
    finally:
        bench.destroy_guests([s.name for s in specs])
    sent = after["migration"]["tx_bytes"] - before["migration"]["tx_bytes"]
    ok = [r for r in records if r["status"] == "completed"]
    total = (max(r["end"] for r in ok) - t_start) if ok else None
    wire = (wire1 - wire0) if wire0 is not None and wire1 is not None else None
    # The ideal: the bytes the link carried (as its shaper charges them) at its rate.
    ideal = (wire or sent) * 8.0 / bench.rate_bps
    ideal_iface = sent * 8.0 / bench.rate_bps
    throughput = [[round(t - t_start, 3), mg, mi]
                  for t, mg, mi in bench.throughput(t_start, t_end, 0.0)]
    idle, gaps = link_idle(throughput, bench.rate_bps, total)
    peaks = {h.name: limiter.peak(h.name) for h in bench.hosts}
    delta = bench.delta(snap0, snap1)
    return {
        "guests": len(specs), "completed": len(ok), "total_s": total,
        "source_migration_tx_bytes": sent, "source_migration_wire_bytes": wire,
        "ideal_s": ideal, "ratio_to_ideal": stats.ratio(total, ideal),
        "ideal_iface_s": ideal_iface, "ratio_to_ideal_iface": stats.ratio(total, ideal_iface),
        "idle_s": idle, "gaps": gaps,
        "idle_breakdown": idle_breakdown(throughput, bench.rate_bps, total, ideal),
        "downtime_ms": stats.spread([(r.get("job") or {}).get("downtime") for r in ok]),
        "fixed_cost_s": stats.spread([r["transfer_start"] - (r.get("slot") or r["start"])
                                      for r in ok if r.get("transfer_start")]),
        "peaks": peaks, "limit_respected": all(p <= cfg.evac_limit for p in peaks.values()),
        "guest_checks": checks,
        "all_intact": all(c["intact"] for c in checks) and len(ok) == len(specs),
        "cpu_busy": delta["cpu_busy"], "plane_bytes": delta["plane_bytes"],
        "migrations": [scenarios._clean_record(r, t_start) for r in records],
        "throughput": throughput, "plan": plan,
    }


def _planner(bench, cfg, specs, src, dests, limiter):
    """Run migplane's Evacuation; return per-guest records like the other ways'."""
    from migplane.core import evacuation as evac_mod
    from migplane.core import evacuation_plan as plan_mod

    source = bench.driver(src.name, True, cfg.evac_limit)
    drivers = {d: bench.driver(d, True, cfg.evac_limit) for d in dests}
    guests = [plan_mod.GuestSpec(s.name, s.memory_mib * units.MiB,
                                 dirty_rate=s.rate_mib_s * units.MiB if s.dirty_mib else None)
              for s in specs]
    dest_specs = []
    for name, drv in drivers.items():
        free = drv.host_resources().memory_free_bytes
        dest_specs.append(plan_mod.DestinationSpec(name, free, 0, cfg.evac_limit))
    evacuation = evac_mod.Evacuation(
        source, drivers, guests, dest_specs, bench.rate_bps / 8.0,
        source.settings.migration,
        plan_settings=plan_mod.PlanSettings(fixed_cost_s=cfg.evac_fixed_cost_s,
                                            source_max_concurrent=cfg.evac_limit),
        limiter=limiter, poll_interval=0.2)
    records, decisions = {}, []

    def follow(event):
        now = time.monotonic()
        if event.kind != evac_mod.MIGRATION:
            decisions.append([round(event.elapsed, 2), event.kind, event.message])
        if event.instance is None:
            return
        rec = records.setdefault(event.instance, {
            "guest": event.instance, "tool": MIGPLANE, "mode": "split",
            "source": src.name, "dest": None, "start": now})
        if event.kind == evac_mod.MIGRATION_STARTED:
            rec["start"] = now
        migration = event.migration
        if migration is not None:
            if migration.kind == "step" and "slot" not in rec:
                rec["slot"] = now
            elif migration.kind == "transfer_started":
                rec["transfer_start"] = now
            if migration.kind == "step" and migration.message == \
                    "post_live_migration_at_destination":
                rec["transfer_end"] = now
        if event.kind == evac_mod.MIGRATION_FINISHED:
            rec["end"] = now

    evacuation.subscribe(follow)
    result = evacuation.run()
    out = []
    for outcome in result.guests:
        rec = records.setdefault(outcome.name, {"guest": outcome.name, "tool": MIGPLANE,
                                                "mode": "split", "source": src.name,
                                                "start": time.monotonic()})
        rec.setdefault("end", time.monotonic())
        rec.update(dest=outcome.destination or src.name, status=outcome.status,
                   wall_s=rec["end"] - rec["start"], error=outcome.error)
        out.append(rec)
    plan = dict(result.plan.to_dict(), decisions=decisions)
    return bench._finish(out), plan


# -- summarising (pure) -------------------------------------------------------------------

def link_idle(throughput, rate_bps, total_s=None):
    """Idle seconds of the migration plane and its gaps ``[[start, length]]``.

    ``throughput`` rows are ``[t, management Mbit/s, migration Mbit/s]`` from
    the evacuation's start; idle is below :data:`IDLE_SHARE` of the link rate,
    counted from the start to ``total_s`` (the last guest's arrival).
    """
    end = total_s if total_s is not None else (throughput[-1][0] if throughput else 0.0)
    idle, gaps, run_start, prev = 0.0, [], None, 0.0
    for t, _, mig in throughput:
        if t > end + 1e-9:
            break
        dt = t - prev
        low = mig * 1e6 < IDLE_SHARE * rate_bps
        if low:
            idle += dt
            if run_start is None:
                run_start = prev
        elif run_start is not None:
            if prev - run_start >= MIN_GAP_S:
                gaps.append([round(run_start, 2), round(prev - run_start, 2)])
            run_start = None
        prev = t
    if run_start is not None and prev - run_start >= MIN_GAP_S:
        gaps.append([round(run_start, 2), round(prev - run_start, 2)])
    return round(idle, 2), gaps


def idle_breakdown(throughput, rate_bps, total_s, ideal_s):
    """Where a run's time beyond the ideal went, in seconds.

    ``head``: before the first byte (the first guest's fixed cost); ``between``:
    idle gaps between the first and the last byte (the link waiting for a
    guest's fixed costs); ``tail``: after the last byte (the last guest's
    switch-over); ``underfilled``: the rest, the link busy below its rate.
    """
    if total_s is None or not throughput:
        return None
    busy = [t for t, _, mig in throughput
            if t <= total_s + 1e-9 and mig * 1e6 >= IDLE_SHARE * rate_bps]
    if not busy:
        return None
    first = max(0.0, busy[0] - _sample(throughput))  # where the first busy sample began
    last = busy[-1]
    inner = [[t - first, mg, mig] for t, mg, mig in throughput if first < t <= last]
    between, gaps = link_idle(inner, rate_bps, last - first)
    tail = max(0.0, total_s - last)
    return {"head_s": round(first, 2), "between_s": between, "between_gaps": len(gaps),
            "tail_s": round(tail, 2),
            "underfilled_s": round(total_s - ideal_s - first - between - tail, 2)}


def _sample(throughput):
    """The sampling interval of a throughput series."""
    if len(throughput) < 2:
        return 0.0
    return (throughput[-1][0] - throughput[0][0]) / (len(throughput) - 1)


def summarize(runs, cfg, dests, rate_bps):
    ways = {}
    for way in WAYS:
        mine = [r for r in runs if r["way"] == way]
        if not mine:
            continue
        ways[way] = {
            "runs": len(mine),
            "total_s": stats.spread([r["total_s"] for r in mine]),
            "ratio_to_ideal": stats.spread([r["ratio_to_ideal"] for r in mine]),
            "ratio_to_ideal_iface": stats.spread([r.get("ratio_to_ideal_iface")
                                                  for r in mine]),
            "between_s": stats.spread([(r.get("idle_breakdown") or {}).get("between_s")
                                       for r in mine]),
            "idle_s": stats.spread([r["idle_s"] for r in mine]),
            "gaps": stats.spread([len(r["gaps"]) for r in mine]),
            "downtime_median_ms": stats.spread([r["downtime_ms"]["median"] for r in mine]),
            "downtime_max_ms": stats.spread([r["downtime_ms"]["max"] for r in mine]),
            "peak": max(max(r["peaks"].values()) for r in mine),
            "limit_respected": all(r["limit_respected"] for r in mine),
            "all_intact": all(r["all_intact"] for r in mine),
        }
    specs = guest_specs(cfg, "ev")
    return {"guests": cfg.evac_guests, "specs": [s.to_dict() for s in specs],
            "limit": cfg.evac_limit, "destinations": dests, "repeats": cfg.evac_repeats,
            "link_rate_bps": rate_bps, "runs": runs, "ways": ways}


# -- targets (pure) -------------------------------------------------------------------------

def _f(value, fmt="%.2f"):
    return "n/a" if value is None else fmt % value


def _target(tid, what, target, value, ok, measured):
    return {"id": tid, "part": PART, "what": what, "target": target, "value": value,
            "met": None if value is None else bool(ok), "measured": measured}


def targets(ev):
    if not ev or not ev.get("ways"):
        return []
    ways = ev["ways"]
    out = []
    planner = ways.get("planner")
    if planner:
        r = planner["ratio_to_ideal"]
        # The median of three or more repeats; of fewer, the worst.
        judged = r["median"] if r["n"] >= 3 else r["max"]
        iface = planner.get("ratio_to_ideal_iface") or {}
        out.append(_target(
            "evacuation_planner", "Evacuation of %d guests by migplane's planner: total "
            "time / (bytes the link carried / link rate), %s of %d repeat(s)"
            % (ev["guests"], "median" if r["n"] >= 3 else "worst", r["n"]),
            "≤ %.2f" % PLANNER_RATIO, judged,
            judged is not None and judged <= PLANNER_RATIO,
            "× %s (repeats %s–%s; × %s of the bytes the interface counted)" % (
                _f(judged, "%.3f"), _f(r["min"], "%.3f"), _f(r["max"], "%.3f"),
                _f(iface.get("median"), "%.3f"))))
        others = {w: ways[w]["total_s"]["median"] for w in ("serial", "naive") if w in ways}
        totals = planner["total_s"]
        mine = totals["median"] if totals["n"] >= 3 else totals["max"]
        known = mine is not None and others and all(v is not None for v in others.values())
        out.append(_target(
            "evacuation_fastest", "The planner evacuates faster than serial and naive "
            "parallel in the same run", "faster than both",
            (mine / min(others.values())) if known else None,
            known and all(mine < v for v in others.values()),
            "planner %s s (%s) vs %s" % (_f(mine, "%.1f"), "median" if totals["n"] >= 3
                                         else "worst", ", ".join(
                "%s %s s" % (w, _f(v, "%.1f")) for w, v in sorted(others.items())))))
    peak = max(w["peak"] for w in ways.values())
    out.append(_target(
        "evacuation_limit", "Per-host concurrency limit never exceeded, every way "
        "(limiter.peak)", "≤ %d" % ev["limit"], peak,
        all(w["limit_respected"] for w in ways.values()),
        ", ".join("%s %d" % (w, ways[w]["peak"]) for w in WAYS if w in ways)))
    checks = [c for r in ev["runs"] for c in r["guest_checks"]]
    intact = sum(1 for c in checks if c["intact"])
    completed = sum(r["completed"] for r in ev["runs"])
    moved = sum(r["guests"] for r in ev["runs"])
    out.append(_target(
        "evacuation_intact", "Every evacuated guest intact, every way (one boot id, "
        "counter continuous, no bad word)", "%d / %d" % (len(checks), len(checks)), intact,
        all(w["all_intact"] for w in ways.values()),
        "%d / %d intact, %d / %d migrations completed" % (intact, len(checks), completed,
                                                          moved)))
    return out


# -- report (pure) ----------------------------------------------------------------------------

def sentence(results):
    """One sentence for the report's summary."""
    ev = results.get(PART)
    if not ev or not ev.get("ways"):
        return None
    ways = ev["ways"]
    parts = []
    for way in WAYS:
        if way in ways:
            w = ways[way]
            parts.append("%s %s s (× %s, link idle %s s)" % (
                way, _f(w["total_s"]["median"], "%.1f"),
                _f(w["ratio_to_ideal"]["median"], "%.2f"), _f(w["idle_s"]["median"], "%.1f")))
    return ("Evacuating %d guests of mixed sizes to two hosts (section 3), total time and "
            "its ratio to the bytes sent at the link rate: %s." % (ev["guests"],
                                                                   "; ".join(parts)))


def section(results):
    ev = results.get(PART)
    if not ev:
        return []
    sizes = sorted({s["stamp_mib"] for s in ev["specs"]})
    dirty = [s for s in ev["specs"] if s["dirty_mib"]]
    lines = [
        "## 3. Evacuation: emptying a host at the speed of its link", "",
        "%d guests on host-a (%s MiB stamped, each with %d MiB more memory; %d of them "
        "rewriting %d MiB at %d MiB/s) leave for host-b and host-c three ways, each way "
        "with freshly booted guests of the same sizes, every migration through one shared "
        "`HostLimiter` with `max_concurrent = %d`: %s. The ideal is the bytes host-a's "
        "migration link carried, as its shaper charges them (every frame's headers), "
        "at the link rate; total is from the request to the last guest's arrival. The "
        "planner ran %d time(s); its ratio is judged on the median of three or more, on "
        "the worst of fewer. The interface's own byte counter sees a GSO packet's "
        "headers once (about 4.4 %% fewer bytes: it can never reach the link rate); "
        "the ratio to it is shown in parentheses. "
        "Idle time splits into the first guest's fixed cost, gaps between guests and the "
        "last guest's switch-over." % (
            ev["guests"], "–".join(str(s) for s in (sizes[0], sizes[-1])) if sizes else "?",
            ev["specs"][0]["memory_mib"] - ev["specs"][0]["stamp_mib"], len(dirty),
            dirty[0]["dirty_mib"] if dirty else 0, dirty[0]["rate_mib_s"] if dirty else 0,
            ev["limit"], "; ".join(WAY_TEXT[w] for w in WAYS), ev["repeats"]), "",
        "| way | runs | total | total / ideal (interface bytes) | link idle (gaps) "
        "| first fixed cost / between guests / last switch-over "
        "| fixed cost per guest | downtime median / max | limiter peak | guests intact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for way in WAYS:
        runs = [r for r in ev["runs"] if r["way"] == way]
        if not runs:
            continue
        w = ev["ways"][way]
        intact = sum(1 for r in runs for c in r["guest_checks"] if c["intact"])
        parts = [r.get("idle_breakdown") or {} for r in runs]
        split = " / ".join(_f(stats.median([p.get(k) for p in parts if p.get(k) is not None]),
                              "%.1f") for k in ("head_s", "between_s", "tail_s"))
        lines.append("| %s | %d | %s s | %s (%s) | %s s (%s) | %s s | %s s | %s / %s ms "
                     "| %d | %d / %d |"
                     % (way, w["runs"], _spread(w["total_s"], "%.1f"),
                        _spread(w["ratio_to_ideal"], "%.3f"),
                        _spread(w.get("ratio_to_ideal_iface"), "%.3f"),
                        _spread(w["idle_s"], "%.1f"), _spread(w["gaps"], "%.0f"), split,
                        _f(stats.median([r["fixed_cost_s"]["median"] for r in runs]), "%.1f"),
                        _f(w["downtime_median_ms"]["median"], "%.0f"),
                        _f(w["downtime_max_ms"]["max"], "%.0f"), w["peak"], intact,
                        sum(r["guests"] for r in runs)))
    lines.append("")
    plans = [r["plan"] for r in ev["runs"] if r.get("plan")]
    if plans:
        p = plans[0]
        lines += [
            "The planner's plan: %d stream(s) on the link, up to %d guest(s) prepared "
            "ahead during the transfers (at most %d migrations at once, the ones being "
            "prepared included: each holds its limiter slot); predicted %s s "
            "against an ideal of %s s for its predicted bytes, %s of %s s of fixed costs "
            "overlapped. Its reasons: %s." % (
                p["streams"], p.get("prepare_ahead", p["pipelined_lanes"]),
                p["max_running"],
                _f(p["predicted_s"], "%.1f"), _f(p["ideal_s"], "%.1f"),
                _f(p["overlapped_s"], "%.1f"),
                _f(p["fixed_cost_s"] * len(p["guests"]), "%.1f"),
                "; ".join(p["reasons"])), ""]
    lines += [
        "Serial leaves the link idle during every guest's fixed costs (checks, "
        "`pre_live_migration`, starting QEMU on the destination). Naive parallel keeps "
        "several streams sharing the link, and when they end together the next ones are "
        "all still in their fixed costs. The planner runs one stream when one fills the "
        "link and, at every poll (0.2 s), starts the next guest when the link will be free "
        "(the running transfers' remaining bytes, then the prepared guests' predicted "
        "bytes) within the fixed cost measured so far: its checks, `pre_live_migration` "
        "and the destination's QEMU start run while the link is busy, and when transfers "
        "are shorter than a fixed cost more than one guest is prepared ahead, within the "
        "limit. Only the first guest's fixed cost and the last one's switch-over should "
        "remain.", ""]
    for run in ev["runs"]:
        name = plot_name(run)
        if name in results.get("plots", []):
            lines += ["![Evacuation, %s%s](%s)" % (
                run["way"], " #%d" % (run["repeat"] + 1) if run["way"] == "planner" else "",
                name), ""]
    return lines


def _spread(s, fmt):
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] > 1 and s["min"] != s["max"]:
        return "%s (%s–%s)" % (fmt % s["median"], fmt % s["min"], fmt % s["max"])
    return fmt % s["median"]


def plot_name(run):
    """The timeline plot of one run: every way's first run is plotted."""
    return "evacuation_%s.png" % run["way"] if run["repeat"] == 0 else None


def plot_names():
    return {"evacuation_%s.png" % w for w in WAYS}


def cpu_busy(results):
    return [r.get("cpu_busy") for r in (results.get(PART) or {}).get("runs", [])]

