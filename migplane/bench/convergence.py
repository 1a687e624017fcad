"""Benchmark part "convergence": busy guests, bare virsh vs migplane static vs default.

One guest of ``memory`` MiB rewrites half of it at ``rate x link`` MiB/s, for
each rate multiple (0.25x ... 4x the link); the link is capped by the
bandwidth limit, the same for every tool (virsh ``--bandwidth``, migplane
``[live_migration] bandwidth``). Each cell migrates the guest with bare
``virsh migrate --live --p2p`` (defaults), migplane ``strategy = static``
(Nova's algorithm) and migplane's default (adaptive). A run not finished
within ``TIME_LIMIT x RAM/link`` is aborted and counted as not converged.

The tools of a cell move the same guest one after the other, so each must
find it in the same state: the guest writes its working set front to back,
and a page it has not written yet is a zero page QEMU sends as a few bytes.
A cell therefore starts only once the guest has written its whole working set
(its first pass, ``pass=1`` on the console): before that, each later run had
more memory to send than the one before it (measured: 10 MiB in the first pass
of a run 10 s after boot, 67 MiB once the working set is written), which made
the tool that ran last look slow. Each run records the MiB it sent.

What the guest feels is measured too: the test guest reports on its console
how far it got through its writes (``pass`` and ``pos``), so each run records
the MiB/s the guest wrote while it moved against the same guest at rest just
before (``work_share``): auto-converge's throttle, post-copy's page faults and
the switch-over's pause all show there, beside time and downtime. At 1x a
fourth tool, migplane's default with post-copy forbidden (auto-converge
only), puts the cost of throttling on the same table.

This module holds the part's runner (:func:`run`, on a
:class:`~migplane.bench.labrun.BenchLab`), its summary, targets, report
section and plot, so that the part is one unit next to the others.
"""

import logging
import subprocess
import threading
import time

from migplane.core import units

LOG = logging.getLogger(__name__)
TOOLS = ("virsh", "static", "default", "no-postcopy")
#: ``no-postcopy`` (the default with permit_post_copy = False) runs only here.
NO_POST_COPY_AT = (1.0,)
MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Seconds of the guest at rest, before each run, its work is compared with.
REST_S = 3.0
#: Seconds a run waits, once it ended, for the guest's next tick where it runs.
TICK_WAIT_S = 10.0
#: A run is aborted after this many times RAM/link.
TIME_LIMIT = 5.0
#: Targets of the issue: default converges up to 2x within 1.5 x RAM/link, at
#: 4x within 3 x; pre-copy downtime <= 500 ms; never 5 % slower than static.
WITHIN = {0.25: 1.5, 0.5: 1.5, 1.0: 1.5, 2.0: 1.5, 4.0: 3.0}
MAX_PRECOPY_DOWNTIME_MS = 500
NOT_SLOWER = 1.05


_drivers = {}


def _conf_driver(bench, host_name, strategy, link_mib, permit_post_copy=None):
    """A libvirt driver for one lab host with the strategy and the link cap; one
    per combination for the whole part, as an agent keeps its driver (a fresh
    connection per run would count its setup into the migration's time)."""
    key = (id(bench), host_name, strategy, link_mib, permit_post_copy)
    if key not in _drivers:
        _drivers[key] = _new_driver(bench, host_name, strategy, link_mib,
                                    permit_post_copy)
        _drivers[key].describe()  # opens the connection: not counted into a run
    return _drivers[key]


def _new_driver(bench, host_name, strategy, link_mib, permit_post_copy=None):
    from oslo_config import cfg

    from migplane import opts as migplane_opts
    from migplane.core import loader

    host = bench.host(host_name)
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[])
    migplane_opts.register_opts(conf)
    conf.set_override("hostname", host.name, "live_migration")
    conf.set_override("strategy", strategy, "live_migration")
    conf.set_override("bandwidth", link_mib, "live_migration")
    conf.set_override("completion_timeout", 0, "live_migration")  # our own limit
    if permit_post_copy is not None:
        conf.set_override("permit_post_copy", permit_post_copy, "live_migration")
    conf.set_override("connection_uri", host.uri, "driver_libvirt")
    conf.set_override("netns", host.netns, "driver_libvirt")
    conf.set_override("my_live_migration_ip", host.mig_ip)
    return loader.load_driver(conf, "libvirt")


def _migplane(bench, name, src, dest, strategy, link_mib, limit_s, permit_post_copy=None):
    from migplane.core import exception
    from migplane.core import flow

    source = _conf_driver(bench, src, strategy, link_mib, permit_post_copy)
    destination = _conf_driver(bench, dest, strategy, link_mib, permit_post_copy)
    mig = flow.LiveMigration(name, source, destination, source.settings.migration)
    timer = threading.Timer(limit_s, mig.abort)
    rec = {"start": time.monotonic()}
    timer.start()
    try:
        result = mig.run()
    except exception.MigplaneError as err:
        result = getattr(err, "result", None)
        rec["error"] = str(err)[:500]
    finally:
        timer.cancel()
    rec["end"] = time.monotonic()
    rec["status"] = result.status if result is not None else "failed"
    progress = result.progress if result is not None else None
    rec["downtime_ms"] = progress.downtime_ms if progress else None
    rec["iterations"] = progress.iteration if progress else None
    rec["sent_mib"] = round(progress.memory_processed / units.MiB, 1) if progress else None
    rec["postcopy"] = bool(progress and progress.postcopy)
    rec["escalations"] = [e for e, _ in (result.escalations if result else ())]
    plan = result.plan if result is not None else None
    rec["plan"] = ({"method": plan.method, "predicted_time_s": plan.predicted_time_s,
                    "dirty_rate_source": plan.dirty_rate_source,
                    "link_rate_source": plan.link_rate_source} if plan else None)
    return rec


def _virsh(bench, name, src, dest, link_mib, limit_s):
    argv = bench.virsh_argv(name, src, dest)
    argv.insert(argv.index("migrate") + 1, "--bandwidth")
    argv.insert(argv.index("--bandwidth") + 1, str(link_mib))
    rec = {"argv": argv, "start": time.monotonic(), "escalations": [],
           "downtime_ms": None, "iterations": None, "postcopy": False, "sent_mib": None}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        subprocess.run(["virsh", "-c", bench.host(src).uri, "domjobabort", name],
                       capture_output=True, timeout=60, check=False)
        out, err = proc.communicate(timeout=120)
    rec["end"] = time.monotonic()
    rec["status"] = "completed" if proc.returncode == 0 else "aborted"
    if proc.returncode:
        rec["error"] = (err or out).strip()[-300:]
    return rec


def run(bench, cfg, t0, log=print):
    """Migrate one busy guest per rate multiple with each tool; return the part."""
    from migplane.bench.labrun import GuestSpec

    link = cfg.conv_link_mib
    memory = cfg.conv_memory_mib
    base_s = memory / link
    limit_s = TIME_LIMIT * base_s
    runs = []
    for mult in cfg.conv_multiples:
        spec = GuestSpec("mpb-conv-%s" % str(mult).replace(".", "p"), memory,
                         dirty_mib=memory // 2, rate_mib_s=max(1, round(mult * link)),
                         tick_ms=50)
        try:
            bench.start_guests([spec], bench.host("host-a"))
            for strategy in ("static", "adaptive"):
                for host_name in ("host-a", "host-b"):
                    _conf_driver(bench, host_name, strategy, link)
            fill_s = spec.dirty_mib / spec.rate_mib_s
            bench.watchers[spec.name].wait_for(
                lambda w: w.last() is not None and w.last().passes >= 1,
                timeout=3 * fill_s + 60, what="a whole pass over the working set")
            for tool in tools_at(mult):
                src = bench.where[spec.name]
                dest = bench.other(src)
                time.sleep(max(0.0, REST_S - cfg.settle_s))   # the guest at rest
                if tool == "virsh":
                    rec = _virsh(bench, spec.name, src, dest, link, limit_s)
                else:
                    rec = _migplane(bench, spec.name, src, dest,
                                    "static" if tool == "static" else "adaptive", link,
                                    limit_s, False if tool == "no-postcopy" else None)
                rec.update(what_the_guest_felt(
                    bench.watchers[spec.name], spec.dirty_mib, rec["start"], rec["end"],
                    dest if rec["status"] == "completed" else src))
                if rec["status"] == "completed":
                    bench.where[spec.name] = dest
                    job = bench.completed_job(dest, spec.name) or {}
                    if rec.get("downtime_ms") is None:
                        rec["downtime_ms"] = job.get("downtime")
                    if rec.get("iterations") is None:
                        rec["iterations"] = job.get("memory_iteration")
                    if rec.get("sent_mib") is None and job.get("memory_processed"):
                        rec["sent_mib"] = round(job["memory_processed"] / units.MiB, 1)
                check = bench.guest_check(spec.name, since=rec["start"])   # this run's gaps
                rec.update(tool=tool, multiple=mult, guest=spec.name, source=src,
                           dest=dest, wall_s=round(rec["end"] - rec["start"], 2),
                           start=round(rec["start"] - t0, 2), end=round(rec["end"] - t0, 2),
                           converged=rec["status"] == "completed",
                           ratio=round((rec["end"] - rec["start"]) / base_s, 3),
                           intact=check["intact"], guest_check=check)
                runs.append(rec)
                log("  convergence %4sx %-11s %-9s %6.1f s (%.2f x RAM/link), guest "
                    "work %s%s" % (
                    mult, tool, rec["status"], rec["wall_s"], rec["ratio"],
                    "-" if rec.get("work_share") is None else
                    "%.0f %%" % (100 * rec["work_share"]),
                    " escalations: " + ",".join(rec["escalations"])
                    if rec.get("escalations") else ""))
                time.sleep(cfg.settle_s)
        finally:
            bench.destroy_guests([spec.name])
    for key in [k for k in _drivers if k[0] == id(bench)]:
        _drivers.pop(key).close()
    return {"link_mib_s": link, "memory_mib": memory, "time_limit_s": limit_s,
            "ram_over_link_s": base_s, "multiples": list(cfg.conv_multiples),
            "runs": runs, "summary": summarize(runs)}


def tools_at(multiple):
    """The tools a cell runs: every one, ``no-postcopy`` only at :data:`NO_POST_COPY_AT`."""
    return tuple(t for t in TOOLS if t != "no-postcopy" or multiple in NO_POST_COPY_AT)


def what_the_guest_felt(watcher, dirty_mib, start, end, host, wait_s=TICK_WAIT_S):
    """:func:`guest_work` and ``felt_pause_ms`` of a run from ``start`` to ``end``,
    once the watcher has read a tick from ``host`` (where the guest should run)
    after ``end``: the guest's work is measured up to such a tick, and migplane's
    flow returns a few ms after its paused handover resumed the destination, before
    the first tick there is printed and read. Waits at most ``wait_s``; a guest
    that does not tick then gets None (its check says why)."""
    try:
        watcher.wait_for(lambda w: any(t.t >= end for t in w.ticks(host)), wait_s,
                         "tick on %s after the run" % host)
    except TimeoutError:
        pass
    found = guest_work(watcher, dirty_mib, start, end)
    found["felt_pause_ms"] = felt_pause_ms(watcher, start)
    return found


def felt_pause_ms(watcher, start):
    """The guest's console gap where it changed host after ``start`` (ms), or
    None: its pause at the switch-over as the guest felt it, migplane's paused
    handover included (QEMU's downtime figure stops before the resume)."""
    found = watcher.handover(since=start)
    return None if found is None else round(1000 * found[2])


def guest_work(watcher, dirty_mib, start, end):
    """What the guest got done while it moved, against itself at rest just before:
    ``{"work_mib_s", "rest_mib_s", "work_share"}`` (None where its console does
    not tell)."""
    during = watcher.work_rate(dirty_mib, start, end)
    rest = watcher.work_rate(dirty_mib, start - REST_S, start)
    share = round(during / rest, 3) if during is not None and rest else None
    return {"work_mib_s": None if during is None else round(during, 2),
            "rest_mib_s": None if rest is None else round(rest, 2), "work_share": share}


def summarize(runs):
    """Per multiple and tool: converged, ratio, downtime, iterations, escalations,
    the guest's work against itself at rest."""
    cells = {}
    for r in runs:
        cells.setdefault(str(r["multiple"]), {})[r["tool"]] = {
            k: r.get(k) for k in ("converged", "ratio", "wall_s", "downtime_ms",
                                  "felt_pause_ms", "iterations", "escalations", "intact",
                                  "postcopy", "sent_mib", "work_share")}
    return cells


# -- targets, report, plot ------------------------------------------------------------


def targets(part, make):
    """The issue's targets for this part; ``make`` is targets._target."""
    runs = part.get("runs") or []
    if not runs:
        return []
    out = []
    default = {r["multiple"]: r for r in runs if r["tool"] == "default"}
    static = {r["multiple"]: r for r in runs if r["tool"] == "static"}
    misses = ["%sx: %s" % (m, "not converged" if not r["converged"] else
                           "%.2f x > %.1f x" % (r["ratio"], WITHIN.get(m, 3.0)))
              for m, r in sorted(default.items())
              if not r["converged"] or r["ratio"] > WITHIN.get(m, 3.0)]
    out.append(make("convergence_default", "convergence",
                    "migplane default converges in every cell (up to 2x within 1.5 x "
                    "RAM/link, at 4x within 3 x)", "all cells", len(default) - len(misses),
                    not misses, "; ".join(misses) or "%d of %d cells" % (len(default),
                                                                          len(default))))
    pre = [r for r in default.values() if r["converged"] and not r.get("postcopy")]
    worst = max((r["downtime_ms"] or 0 for r in pre), default=None)
    out.append(make("convergence_downtime", "convergence",
                    "downtime of pre-copy completions (migplane default)",
                    "<= %d ms" % MAX_PRECOPY_DOWNTIME_MS, worst,
                    None if worst is None else worst <= MAX_PRECOPY_DOWNTIME_MS,
                    "max %s ms over %d pre-copy completions" % (worst, len(pre))))
    intact = [r for r in runs if not r["intact"]]
    out.append(make("convergence_intact", "convergence", "every guest intact", "all",
                    len(runs) - len(intact), not intact,
                    "%d of %d runs" % (len(runs) - len(intact), len(runs))))
    slower = ["%sx: %.2f vs %.2f" % (m, default[m]["wall_s"], s["wall_s"])
              for m, s in sorted(static.items())
              if s["converged"] and m in default
              and default[m]["wall_s"] > NOT_SLOWER * s["wall_s"]]
    ratios = [default[m]["wall_s"] / s["wall_s"] for m, s in static.items()
              if s["converged"] and m in default and s["wall_s"]]
    worst_ratio = round(max(ratios), 3) if ratios else None
    out.append(make("convergence_vs_static", "convergence",
                    "never slower than static by more than 5 % where static converges",
                    "<= %.2f x" % NOT_SLOWER, worst_ratio, not slower,
                    "; ".join(slower) or "worst %s x over %d cells" % (
                        worst_ratio, len(ratios))))
    return out


def handover_cost(runs, tools=("virsh", "static", "default")):
    """The paused handover's cost, in the same run: the pause the guest felt
    at pre-copy completions by each tool (bare virsh has no handover)."""
    felt = {t: sorted(r["felt_pause_ms"] for r in runs if r["tool"] == t
                      and r.get("converged") and not r.get("postcopy")
                      and r.get("felt_pause_ms") is not None) for t in tools}
    if not felt.get("virsh") or not any(felt[t] for t in tools if t != "virsh"):
        return []
    parts = ["%s %s ms (%d)" % (t, "/".join(str(v) for v in felt[t]), len(felt[t]))
             for t in tools if felt[t]]
    return ["**The paused handover's cost.** The pause the guest felt at each pre-copy "
            "completion, by tool (bare virsh resumes the destination itself; migplane "
            "holds it paused until it saw the source's copy stop): %s." % "; ".join(parts),
            ""]


def _cell(c):
    if c is None:
        return "-"
    if not c["converged"]:
        return "not converged%s" % ("" if c["intact"] else ", NOT INTACT")
    text = "%.2f x, %s ms, %s it." % (c["ratio"], c["downtime_ms"] if c["downtime_ms"]
                                      is not None else "?", c["iterations"] or "?")
    if c.get("felt_pause_ms") is not None:
        text += ", felt %d ms" % c["felt_pause_ms"]
    if c.get("sent_mib") is not None:
        text += ", %.0f MiB sent" % c["sent_mib"]
    if c.get("escalations"):
        text += ", " + " -> ".join(c["escalations"])
    if c.get("work_share") is not None:
        text += ", guest work %.0f %%" % (100 * c["work_share"])
    return text + ("" if c["intact"] else ", NOT INTACT")


def report(results):
    part = results.get("convergence")
    if not part:
        return []
    lines = ["## Convergence", "",
             "A %d MiB guest rewriting half its memory at a multiple of the link rate; "
             "link capped at %d MiB/s for every tool (RAM/link = %.1f s); each run "
             "aborted after %.0f s (%.0f x RAM/link) and then counted as not converged. "
             "Each cell starts once the guest has written its whole working set, so "
             "that every tool moves the same memory. "
             "Cells: total time / (RAM/link), downtime (QEMU's), iterations, the "
             "pause the guest felt (its console's gap at the switch-over, to within a "
             "50 ms tick and a 50 ms poll: migplane's paused handover included, "
             "which QEMU's figure leaves out), MiB sent, "
             "escalations, and the guest's work while it moved (MiB/s it wrote, from "
             "its console) against the same guest at rest just before. The last "
             "column, at 1x only, is the default with post-copy forbidden "
             "(auto-converge only)." % (
                 part["memory_mib"], part["link_mib_s"], part["ram_over_link_s"],
                 part["time_limit_s"], TIME_LIMIT), "",
             "| dirty rate | bare virsh | migplane static | migplane default | "
             "default, no post-copy |",
             "| --- | --- | --- | --- | --- |"]
    for mult in part["multiples"]:
        cells = part["summary"].get(str(mult), {})
        lines.append("| %sx | %s |" % (mult, " | ".join(_cell(cells.get(t))
                                                       for t in TOOLS)))
    lines.append("")
    lines += handover_cost(part["runs"])
    if "convergence.png" in results.get("plots", []):
        lines += ["![Time to converge vs dirty rate](convergence.png)", ""]
    return lines


def plot(results, out_dir, plt):
    part = results.get("convergence")
    if not part or not part.get("runs"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (tool, marker) in enumerate(zip(TOOLS, ("s", "^", "o", "D"), strict=False)):
        mults = part["multiples"]
        ys, failed = [], []
        for m in mults:
            c = part["summary"].get(str(m), {}).get(tool)
            if c is None:
                ys.append(None)
            elif c["converged"]:
                ys.append(c["ratio"])
            else:
                ys.append(None)
                failed.append(m)
        ax.plot([m for m, y in zip(mults, ys, strict=False) if y is not None],
                [y for y in ys if y is not None], marker=marker, label=tool)
        if failed:
            # one row per tool, so that the crosses do not hide each other
            ax.scatter(failed, [TIME_LIMIT + 0.15 * (1 - i)] * len(failed), marker="x", s=80,
                       label="%s: not converged" % tool)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dirty rate / link rate")
    ax.set_ylabel("time to converge / (RAM / link)")
    ax.axhline(TIME_LIMIT, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
    ax.set_title("Convergence: time vs dirty rate")
    name = "convergence.png"
    fig.tight_layout()
    fig.savefig("%s/%s" % (out_dir, name), dpi=100)
    plt.close(fig)
    return name
