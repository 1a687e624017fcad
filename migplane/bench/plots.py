"""PNG plots of a results dict (matplotlib, Agg backend: no display needed).

Every function takes the results dict and an output directory and returns
the file name it wrote, or None when the part has no data.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.patches import Patch  # noqa: E402

COLORS = {"baseline": "#7f7f7f", "split": "#1f77b4", "unsplit": "#d62728",
          "virsh": "#2ca02c", "migplane": "#1f77b4"}
LABELS = {"baseline": "no migration (baseline)", "split": "migplane, split planes",
          "unsplit": "migplane, my_live_migration_ip unset",
          "virsh": "bare virsh --p2p + migrateuri"}
MOVERS = ("split", "unsplit", "virsh")
PAD_S = 2.0
DPI = 110


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return name


def _samples_between(samples, start, end, lost_ms):
    xs, ys, lx = [], [], []
    for t, r in samples:
        if start <= t <= end:
            if r is None:
                lx.append(t)
            else:
                xs.append(t)
                ys.append(max(r, 0.01))
    return xs, ys, lx


def isolation_latency(results, out_dir):
    """Probe round trips around one window of each scenario, per concurrency."""
    iso = results.get("isolation")
    if not iso or not iso.get("runs"):
        return None
    samples = iso["samples"]
    lost_ms = iso["probe"]["lost_counts_as_ms"]
    concs = sorted({r["concurrency"] for r in iso["runs"]})
    fig, axes = plt.subplots(len(concs), 3, figsize=(13, 3.3 * len(concs)), sharey=True,
                             squeeze=False)
    base = {c: [r for r in iso["runs"] if r["concurrency"] == c
                and r["scenario"] == "baseline"] for c in concs}
    for row, conc in enumerate(concs):
        for col, scenario in enumerate(MOVERS):
            ax = axes[row][col]
            runs = [r for r in iso["runs"] if r["concurrency"] == conc
                    and r["scenario"] == scenario]
            if not runs:
                ax.set_visible(False)
                continue
            run = runs[0]
            lo, hi = _padded(iso["runs"], run)
            xs, ys, lx = _samples_between(samples, lo, hi, lost_ms)
            t0 = run["start"]
            ax.axvspan(0, run["end"] - t0, color=COLORS[scenario], alpha=0.12,
                       label="migration window")
            ax.plot([x - t0 for x in xs], ys, ".", ms=2.5, color=COLORS[scenario])
            if lx:
                ax.plot([x - t0 for x in lx], [lost_ms] * len(lx), "x", color="black",
                        label="lost")
            _throughput(ax, iso.get("throughput"), lo, hi, t0,
                        results["meta"].get("rate_bps"),
                        legend=(row == 0 and col == 2))
            if base[conc] and base[conc][0]["probe"]["p99_ms"]:
                ax.axhline(base[conc][0]["probe"]["p99_ms"], ls="--", lw=1,
                           color=COLORS["baseline"], label="baseline p99")
            summ = results["isolation"]["summary"]["c%d" % conc].get(scenario, {})
            ax.set_title("%d migration%s — %s\np99 %.1f ms, max %.1f ms" % (
                conc, "" if conc == 1 else "s", LABELS[scenario],
                summ.get("p99_ms") or 0, summ.get("max_ms") or 0), fontsize=9)
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.25)
            ax.set_xlabel("seconds since the migration started")
            if col == 0:
                ax.set_ylabel("management-plane RTT (ms)")
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("4 KiB request/response every %d ms on the management plane "
                 "(both planes shaped to %s)" % (
                     round(iso["probe"]["interval_s"] * 1000),
                     results["meta"]["rate"]), fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, "isolation_latency.png")


def _padded(runs, run):
    """``run``'s window widened by PAD_S, but never into its neighbours' windows."""
    lo, hi = run["start"] - PAD_S, run["end"] + PAD_S
    for other in runs:
        if other is run:
            continue
        if other["end"] <= run["start"]:
            lo = max(lo, other["end"])
        if other["start"] >= run["end"]:
            hi = min(hi, other["start"])
    return lo, hi


def _throughput(ax, series, start, end, t0, rate_bps, legend=False):
    """Both planes' throughput (Mbit/s) on a right-hand axis of ``ax``."""
    rows = [r for r in (series or []) if start <= r[0] <= end]
    if not rows:
        return
    tw = ax.twinx()
    xs = [r[0] - t0 for r in rows]
    tw.plot(xs, [r[1] for r in rows], "-", lw=0.8, color="#444444",
            label="management plane Mbit/s")
    tw.plot(xs, [r[2] for r in rows], ":", lw=1.0, color="#ff7f0e",
            label="migration plane Mbit/s")
    top = (rate_bps or 1e8) / 1e6
    tw.set_ylim(0, top * 1.25)
    tw.tick_params(axis="y", labelsize=7, colors="#666666")
    tw.set_ylabel("Mbit/s (lines)", fontsize=7, color="#666666")
    if legend:
        tw.legend(fontsize=7, loc="upper right")


def isolation_timeline(results, out_dir):
    """The whole isolation part: every probe sample, every window."""
    iso = results.get("isolation")
    if not iso or not iso.get("runs"):
        return None
    lost_ms = iso["probe"]["lost_counts_as_ms"]
    fig, ax = plt.subplots(figsize=(13, 3.8))
    seen = set()
    for run in iso["runs"]:
        sc = run["scenario"]
        ax.axvspan(run["start"], run["end"], color=COLORS[sc], alpha=0.18,
                   label=None if sc in seen else LABELS[sc])
        seen.add(sc)
        ax.text((run["start"] + run["end"]) / 2, 0.97, "c%d" % run["concurrency"],
                transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=6)
    xs = [t for t, r in iso["samples"] if r is not None]
    ys = [max(r, 0.01) for t, r in iso["samples"] if r is not None]
    ax.plot(xs, ys, ".", ms=1.2, color="black")
    lx = [t for t, r in iso["samples"] if r is None]
    if lx:
        ax.plot(lx, [lost_ms] * len(lx), "x", color="red", label="lost")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the benchmark started")
    ax.set_ylabel("management-plane RTT (ms)")
    ax.set_title("Probe round trips over the whole isolation part (c1/c4: concurrent "
                 "migrations)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=5)
    fig.tight_layout()
    return _save(fig, out_dir, "isolation_timeline.png")


def isolation_cdf(results, out_dir):
    """Distribution of the probe's round trips inside the windows of each scenario."""
    iso = results.get("isolation")
    if not iso or not iso.get("runs"):
        return None
    lost_ms = iso["probe"]["lost_counts_as_ms"]
    concs = sorted({r["concurrency"] for r in iso["runs"]})
    fig, axes = plt.subplots(1, len(concs), figsize=(6 * len(concs), 3.6), squeeze=False)
    for i, conc in enumerate(concs):
        ax = axes[0][i]
        for sc in ("baseline",) + MOVERS:
            vals = []
            for run in iso["runs"]:
                if run["concurrency"] == conc and run["scenario"] == sc:
                    vals += [lost_ms if r is None else r for t, r in iso["samples"]
                             if run["start"] <= t <= run["end"]]
            if not vals:
                continue
            vals.sort()
            ys = [(k + 1) / len(vals) for k in range(len(vals))]
            ax.plot([max(v, 0.01) for v in vals], ys, color=COLORS[sc], label=LABELS[sc])
        ax.set_xscale("log")
        ax.set_xlabel("management-plane RTT (ms)")
        ax.set_ylabel("share of round trips")
        ax.set_title("%d concurrent migration%s" % (conc, "" if conc == 1 else "s"),
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, out_dir, "isolation_cdf.png")


def efficiency(results, out_dir):
    """Wall time of each migration, migplane vs virsh, pair by pair."""
    eff = results.get("efficiency")
    kinds = [k for k in ("idle", "dirtying") if eff and k in eff.get("kinds", {})]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 3.8), squeeze=False)
    for i, kind in enumerate(kinds):
        ax = axes[0][i]
        data = eff["kinds"][kind]
        pairs = data["pairs"]
        xs = list(range(len(pairs)))
        w = 0.38
        ax.bar([x - w / 2 for x in xs], [p["migplane_wall_s"] for p in pairs], w,
               color=COLORS["migplane"], label="migplane (wall)")
        ax.bar([x + w / 2 for x in xs], [p["virsh_wall_s"] for p in pairs], w,
               color=COLORS["virsh"], label="bare virsh (wall)")
        for x, p in zip(xs, pairs, strict=False):
            if p["migplane_job_ms"]:
                ax.plot([x - w / 2], [p["migplane_job_ms"] / 1000], "_", color="black",
                        ms=16, mew=2)
            if p["virsh_job_ms"]:
                ax.plot([x + w / 2], [p["virsh_job_ms"] / 1000], "_", color="black",
                        ms=16, mew=2)
            top = max(p["migplane_wall_s"], p["virsh_wall_s"])
            ax.text(x, top * 1.02, "× %.3f" % p["ratio"], ha="center", fontsize=8)
        ax.plot([], [], "_", color="black", ms=12, mew=2, label="libvirt job time")
        g = data["guest"]
        ax.set_title("%s guest: %d MiB stamped%s — median ratio %.3f" % (
            kind, g["stamp_mib"],
            ", %d MiB dirtied at %d MiB/s" % (g["dirty_mib"], g["rate_mib_s"])
            if g["dirty_mib"] else "", data["ratio"]["median"] or 0), fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(["pair %d" % p["pair"] for p in pairs])
        ax.set_ylabel("seconds")
        ax.set_ylim(0, max([max(p["migplane_wall_s"], p["virsh_wall_s"]) for p in pairs]
                           or [1]) * 1.15)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, axis="y", alpha=0.25)
    fig.suptitle("End-to-end migration time on a link shaped to %s" % results["meta"]["rate"],
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, "efficiency.png")


def evacuation(results, out_dir):
    """One timeline per way of the evacuation: a lane per guest, the link under it."""
    from migplane.bench import evacuation as evac

    ev = results.get(evac.PART)
    if not ev:
        return []
    return [name for name in (_evacuation_run(results, ev, run, out_dir)
                              for run in ev["runs"] if evac.plot_name(run)) if name]


def _evacuation_run(results, ev, run, out_dir):
    from migplane.bench import evacuation as evac

    migs = sorted(run.get("migrations") or [], key=lambda m: m["start"])
    if not migs:
        return None
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(13, 2 + 0.28 * len(migs) + 1.6),
                                  sharex=True,
                                  gridspec_kw={"height_ratios": [max(3, len(migs) / 3), 1]})
    palette = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]
    dest_color = {d: palette[i % len(palette)] for i, d in enumerate(ev["destinations"])}
    for y, m in enumerate(migs):
        slot = m.get("slot") or m["start"]
        ts = m.get("transfer_start") or slot
        te = m.get("transfer_end") or m["end"]
        ax.barh(y, slot - m["start"], left=m["start"], color="#eeeeee", height=0.7,
                edgecolor="#cccccc", lw=0.5)
        ax.barh(y, ts - slot, left=slot, color="#aaaaaa", height=0.7)
        ax.barh(y, te - ts, left=ts, color=dest_color.get(m["dest"], "gray"), height=0.7)
        ax.barh(y, m["end"] - te, left=te, color="#555555", height=0.7)
        if m["status"] != "completed":
            ax.text(m["end"], y, " %s" % m["status"], va="center", fontsize=7, color="red")
    ax.set_yticks(range(len(migs)))
    ax.set_yticklabels([m["guest"] for m in migs], fontsize=7)
    ax.invert_yaxis()
    handles = [Patch(color=c, label="libvirt job, to %s" % d) for d, c in dest_color.items()]
    handles += [Patch(facecolor="#eeeeee", edgecolor="#cccccc", label="queued (limiter)"),
                Patch(color="#aaaaaa", label="checks, pre_live_migration"),
                Patch(color="#555555", label="post steps")]
    if run.get("ideal_s"):
        ax.axvline(run["ideal_s"], ls="--", color="black", lw=1)
        handles.append(plt.Line2D([], [], ls="--", color="black", lw=1,
                                  label="bytes / link rate"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Evacuation, %s: %d guests (limit %d per host), %.1f s, × %.3f of bytes / "
                 "link rate, link idle %.1f s" % (
                     evac.WAY_TEXT[run["way"]], run["guests"], ev["limit"],
                     run["total_s"] or 0, run["ratio_to_ideal"] or 0, run["idle_s"] or 0),
                 fontsize=10)
    series = run.get("throughput") or []
    lines = ax2.plot([r[0] for r in series], [r[2] for r in series], lw=0.8,
                     color="#ff7f0e", label="migration plane Mbit/s")
    rate = results["meta"]["rate_bps"] / 1e6
    lines.append(ax2.axhline(rate, ls="--", color="black", lw=1, label="link rate"))
    for start, length in run.get("gaps") or []:
        ax2.axvspan(start, start + length, color="red", alpha=0.15, lw=0)
    lines.append(Patch(color="red", alpha=0.15, label="link idle"))
    ax2.set_ylim(0, rate * 1.3)
    ax2.set_ylabel("Mbit/s")
    ax2.set_xlabel("seconds since the evacuation started")
    ax2.legend(handles=lines, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax2.grid(True, alpha=0.25)
    fig.tight_layout()
    return _save(fig, out_dir, evac.plot_name(run))


def convergence(results, out_dir):
    from migplane.bench import convergence as part

    return part.plot(results, out_dir, plt)


ALL = (isolation_latency, isolation_timeline, isolation_cdf, efficiency, evacuation,
       convergence)


def render_all(results, out_dir):
    """Write every plot that has data; return the file names written."""
    written = []
    for fn in ALL:
        name = fn(results, out_dir)
        if isinstance(name, list):  # a part with one plot per run
            written += name
        elif name:
            written.append(name)
    return written
