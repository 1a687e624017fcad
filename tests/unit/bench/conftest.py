"""Synthetic benchmark results, built through the same summarising code as a
real run, so the report, plots, targets and schema are tested without a lab."""

import copy
import random

import pytest

from migplane.bench import convergence
from migplane.bench import evacuation
from migplane.bench import main as bench_main
from migplane.bench import scenarios
from migplane.bench import schema

RATE_BPS = 100_000_000
MiB = 2 ** 20


def _probe_samples(start, end, level_ms, rng, interval=0.02):
    out = []
    t = start
    while t < end:
        out.append([round(t, 4), round(level_ms * (0.8 + 0.4 * rng.random()), 3)])
        t += interval
    return out


def _migration(tool, guest, start, wall, job_ms, moved, pair=None, mode="split",
               downtime=150, iterations=3, dest="host-b"):
    rec = {"guest": guest, "tool": tool, "mode": mode, "source": "host-a", "dest": dest,
           "start": start, "end": start + wall, "wall_s": wall, "status": "completed",
           "job": {"time_elapsed": job_ms, "memory_processed": moved, "data_processed": moved,
                   "downtime": downtime, "memory_iteration": iterations},
           "goodput_Bps": moved / (job_ms / 1000.0)}
    if tool == "migplane":
        rec.update(slot=start + 0.01, transfer_start=start + 0.3,
                   transfer_end=start + wall - 0.1,
                   monitor={"monitor_cpu_s": 0.003, "monitor_wall_s": wall - 0.4,
                            "monitor_cpu_share": 0.003 / (wall - 0.4), "polls": 10,
                            "cpu_ms_per_poll": 0.3})
    if pair is not None:
        rec["pair"] = pair
        rec["link_use"] = {"sending_s": wall - 1, "bytes": moved, "share_of_link": 0.95}
    return rec


EVAC_CFG = bench_main.Config.full(evac_guests=12, evac_repeats=3)


def _evacuation_run(way, repeat, total, guests=12):
    """One run of the evacuation part: ``guests`` migrations in ``total`` seconds."""
    each = total / guests
    migs = [_migration("migplane", "ev%s%d-%02d" % (way[0], repeat, i), i * each, each,
                       each * 900, 48 * MiB, dest="host-b" if i % 2 == 0 else "host-c")
            for i in range(guests)]
    sent = guests * 48 * MiB
    ideal = sent * 8.0 / RATE_BPS
    throughput = [[round(i * 0.1, 2), 0.1, 95.0 if i % 60 else 0.0]
                  for i in range(int(total * 10))]
    idle, gaps = evacuation.link_idle(throughput, RATE_BPS, total)
    return {"way": way, "repeat": repeat, "index": 0, "guests": guests,
            "completed": guests, "total_s": total, "source_migration_tx_bytes": sent,
            "ideal_s": ideal, "ratio_to_ideal": total / ideal, "idle_s": idle, "gaps": gaps,
            "source_migration_wire_bytes": int(sent * 1.045),
            "ratio_to_ideal_iface": total / ideal * 1.045,
            "idle_breakdown": evacuation.idle_breakdown(throughput, RATE_BPS, total, ideal),
            "downtime_ms": {"median": 150, "min": 100, "max": 300, "n": guests},
            "fixed_cost_s": {"median": 1.5, "min": 1.2, "max": 2.0, "n": guests},
            "peaks": {"host-a": 2 if way == "planner" else 1 if way == "serial" else 3,
                      "host-b": 1, "host-c": 1},
            "limit_respected": True,
            "guest_checks": [{"guest": m["guest"], "intact": True, "max_tick_gap_s": 0.3}
                             for m in migs],
            "all_intact": True, "cpu_busy": 0.6,
            "plane_bytes": {"management": 1e5, "migration": sent},
            "migrations": migs, "throughput": throughput,
            "plan": None if way != "planner" else {
                "streams": 1, "pipelined_lanes": 1, "max_running": 2,
                "predicted_s": 49.0, "ideal_s": 47.0, "overlapped_s": 22.0,
                "fixed_cost_s": 2.0, "guests": [{}] * guests, "reasons": ["one stream"]}}


def make_results(seed=1):
    rng = random.Random(seed)
    levels = {"baseline": 0.3, "split": 0.32, "unsplit": 25.0, "virsh": 0.31}
    runs, samples, t = [], [], 2.0
    for conc in (1, 4):
        for rep in range(2):
            for sc in scenarios.SCENARIOS:
                length = 5.0 * (conc if sc != "baseline" else 1)
                samples += _probe_samples(t, t + length, levels[sc], rng)
                mig = [] if sc == "baseline" else [
                    _migration("virsh" if sc == "virsh" else "migplane", "g%d" % i, t,
                               length, length * 800, 64 * MiB,
                               mode="unsplit" if sc == "unsplit" else "split")
                    for i in range(conc)]
                mgmt_extra = 64 * MiB * conc if sc == "unsplit" else 40_000
                mig_bytes = 0 if sc in ("unsplit", "baseline") else 64 * MiB * conc
                run = {"id": "c%d-r%d-%s" % (conc, rep, sc), "scenario": sc,
                       "concurrency": conc, "repeat": rep, "ok": True,
                       "start": t, "end": t + length, "duration_s": length,
                       "cpu_busy": 0.5,
                       "plane_bytes": {"management": 250 * 8200 + (
                           0 if sc == "baseline" else mgmt_extra), "migration": mig_bytes},
                       "migrations": mig,
                       "probe": {"n": 250, "lost": 0, "p50_ms": levels[sc],
                                 "p99_ms": levels[sc] * 1.2, "max_ms": levels[sc] * 1.4,
                                 "mean_ms": levels[sc]}}
                runs.append(run)
                t += length + 1.0
    per_sample = scenarios._bytes_per_probe_sample(runs)
    for run in runs:
        scenarios._attribute_bytes(run, per_sample)
    isolation = {
        "guest": {"name": "g0", "memory_mib": 96, "stamp_mib": 64, "dirty_mib": 0,
                  "rate_mib_s": 0, "verify_mib_s": 1, "tick_ms": 100},
        "probe": {"interval_s": 0.02, "size_bytes": 4096, "lost_counts_as_ms": 5000.0,
                  "client": "host-a", "server": "host-b", "plane": "management"},
        "probe_bytes_per_sample": per_sample, "runs": runs,
        "summary": scenarios.summarize_isolation(runs, (1, 4), samples),
        "guest_checks": [{"guest": "g0", "intact": True}],
        "samples": samples,
        "throughput": [[round(2.0 + i * 0.1, 3), 3.2, 95.0 if i % 3 else 0.0]
                       for i in range(int((t - 2.0) * 10))],
    }
    kinds = {}
    for kind, virsh_wall in (("idle", 24.0), ("dirtying", 25.0)):
        migs = []
        for pair in range(3):
            migs.append(_migration("migplane", "e", 200.0 + pair * 60, 24.2 + pair * 0.1,
                                   22500, 258 * MiB, pair=pair))
            migs.append(_migration("virsh", "e", 230.0 + pair * 60, virsh_wall, 22600,
                                   258 * MiB, pair=pair))
        summary = scenarios.summarize_efficiency(migs, RATE_BPS)
        summary.update(guest={"name": "e", "memory_mib": 288, "stamp_mib": 256,
                              "dirty_mib": 16 if kind == "dirtying" else 0,
                              "rate_mib_s": 4 if kind == "dirtying" else 0,
                              "verify_mib_s": 1, "tick_ms": 100},
                       guest_check={"intact": True}, migrations=migs)
        kinds[kind] = summary
    evac_runs = [_evacuation_run(way, repeat, total)
                 for way, repeat, total in (("serial", 0, 70.0), ("naive", 0, 58.0),
                                            ("planner", 0, 49.8), ("planner", 1, 50.2),
                                            ("planner", 2, 51.5))]
    evac = [m for run in evac_runs for m in run["migrations"]]
    every = [m for r in runs for m in r["migrations"]] + evac
    for k in kinds.values():
        every += k["migrations"]
    results = {
        "schema": schema.SCHEMA, "errors": [], "plots": [], "targets": [],
        "meta": {"started_at": "2026-01-01T00:00:00+00:00", "duration_s": 900.0,
                 "quick": False, "rate": "100mbit", "rate_bps": RATE_BPS, "delay": None,
                 "lab": "mpbench", "hosts": 3, "parts": list(schema.PARTS),
                 "command": "python -m migplane.bench",
                 "versions": {"qemu": "QEMU 7.2", "libvirtd": "libvirtd 9.0.0"},
                 "noise": {"before": {"loadavg": [1.0, 1.0, 1.0], "other_labs": ["x"],
                                      "other_qemu_processes": 2, "cpus": 2},
                           "after": {"loadavg": [2.0, 1.0, 1.0], "other_labs": [],
                                     "other_qemu_processes": 0, "cpus": 2}}},
        "isolation": isolation,
        "efficiency": {"kinds": kinds, "link_rate_bps": RATE_BPS},
        "evacuation": evacuation.summarize(evac_runs, EVAC_CFG, ["host-b", "host-c"],
                                           RATE_BPS),
        "overhead": {"micro": {"uri_resolve_split": {
            "ops_per_s": 50000.0, "min_ops_per_s": 45000.0, "max_ops_per_s": 52000.0,
            "batches": 3, "batch": 100}},
            "monitor": scenarios.monitor_overhead(every)},
        "convergence": convergence_part(),
    }
    return results


def convergence_part():
    """The convergence part of a full run: virsh and static stop converging at 1x."""
    runs = []
    for mult in convergence.MULTIPLES:
        for tool in convergence.tools_at(mult):
            converged = tool == "default" or mult < 1.0
            wall = (1.2 + 0.1 * mult) * 16.0 if converged else 80.0
            runs.append({
                "tool": tool, "multiple": mult, "status": "completed" if converged
                else "aborted", "converged": converged, "wall_s": wall,
                "ratio": wall / 16.0, "downtime_ms": 300 if converged else None,
                "iterations": 4 if converged else 12, "postcopy": tool == "default"
                and mult >= 1.0, "escalations": ["post-copy"] if tool == "default"
                and mult >= 1.0 else [], "intact": True})
    return {"link_mib_s": 8, "memory_mib": 128, "time_limit_s": 80.0,
            "ram_over_link_s": 16.0, "multiples": list(convergence.MULTIPLES),
            "runs": runs, "summary": convergence.summarize(runs)}


@pytest.fixture
def synthetic_results():
    """A complete results dict, as a full run would produce it (targets not yet set)."""
    return copy.deepcopy(make_results())
