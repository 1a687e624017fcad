"""The lab-facing helpers that need no lab: counters, sampling, argv, records."""

import os
import time
import types

import pytest

from migplane.bench import labrun
from migplane.bench import scenarios


def test_read_net_dev_of_our_own_namespace():
    counts = labrun.read_net_dev(os.getpid(), {"lo", "no-such-if"})
    assert set(counts) == {"lo"} and counts["lo"] >= 0


def _sampler(samples, hosts=()):
    s = labrun.PlaneSampler(hosts)
    s.samples = samples
    return s


def test_sampler_rates_between_samples():
    s = _sampler([(0.0, {"management": 0, "migration": 0}),
                  (1.0, {"management": 1000, "migration": 125_000}),
                  (2.0, {"management": 2000, "migration": 250_000}),
                  (2.0, {"management": 2000, "migration": 250_000})])   # dt 0: skipped
    rates = s.rates()
    assert rates == [(0.0, 1.0, {"management": 8000.0, "migration": 1e6}),
                     (1.0, 2.0, {"management": 8000.0, "migration": 1e6})]
    assert s.rates(start=1.5) == rates[1:]
    assert s.rates(end=0.5) == rates[:1]


def test_sampler_reads_hosts_namespaces():
    me = types.SimpleNamespace(holder_pid=os.getpid())
    s = labrun.PlaneSampler([me, me], interval=0.01, planes={"management": "lo"})
    t, total = s.read()
    assert set(total) == {"management"}
    assert total["management"] >= 0 and t > 0
    s.start()
    try:
        deadline = time.monotonic() + 60
        while len(s.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        s.stop()
    assert len(s.samples) >= 3


def test_link_use_finds_the_sending_phase():
    bench = labrun.BenchLab("x", rate="8mbit")      # 1 MB/s
    t, total, samples = 0.0, 0, []
    # idle 2 s, then 3 s at the full rate, then 1 s at 1 %, then idle
    for rate in [0, 0] + [1_000_000] * 3 + [10_000] + [0, 0]:
        samples.append((t, {"management": 0, "migration": total}))
        t += 1.0
        total += rate
    samples.append((t, {"management": 0, "migration": total}))
    bench.sampler = _sampler(samples)
    use = bench.link_use(0.0, t)
    assert use["sending_s"] == 3.0
    assert use["bytes"] == 3_000_000
    assert use["share_of_link"] == pytest.approx(1.0)
    assert bench.link_use(6.5, 8.0) is None
    rows = bench.throughput(0.0, t, t0=0.0)
    assert rows[2] == [3.0, 0.0, 8.0]
    bench.sampler = None
    assert bench.link_use(0, 1) is None and bench.throughput(0, 1, 0) == []


def test_guest_spec_cmdline():
    spec = labrun.GuestSpec("g", 96, stamp_mib=64, dirty_mib=16, rate_mib_s=4)
    assert spec.cmdline == ("tick_ms=100 dirty_mib=16 rate_mib_s=4 stamp_mib=64 "
                            "disk_write=0 verify_mib_s=1")
    assert spec.to_dict()["memory_mib"] == 96


def _fake_lab_bench():
    bench = labrun.BenchLab("x")
    hosts = {n: types.SimpleNamespace(
        name=n, uri="qemu+unix:///system?socket=/r/%s/sock" % n,
        tcp_uri="qemu+tcp://%s/system" % n, mig_ip=ip)
        for n, ip in (("host-a", "198.51.100.11"), ("host-b", "198.51.100.12"))}
    bench.lab = types.SimpleNamespace(host=hosts.__getitem__, hosts=list(hosts.values()))
    return bench


def test_virsh_argv_is_what_an_operator_types():
    bench = _fake_lab_bench()
    assert bench.virsh_argv("vm1", "host-a", "host-b") == [
        "virsh", "-c", "qemu+unix:///system?socket=/r/host-a/sock", "migrate", "--live",
        "--p2p", "--persistent", "--undefinesource", "vm1", "qemu+tcp://host-b/system",
        "tcp://198.51.100.12"]
    assert bench.other("host-a") == "host-b" and bench.other("host-b") == "host-a"


def test_job_dict_keeps_the_figures():
    assert labrun._job_dict({}) is None
    job = labrun._job_dict({"time_elapsed": 1, "memory_processed": 2, "type": 3,
                            "downtime": 4, "memory_iteration": 5})
    assert job == {"time_elapsed": 1, "memory_processed": 2, "downtime": 4,
                   "memory_iteration": 5}


def test_realtime_prefix_is_cached():
    first = labrun.realtime_prefix()
    assert first in ([], ["chrt", "-f", "10"])
    first.append("mutated")
    assert labrun.realtime_prefix() != first


def test_clean_record_relative_times_and_goodput():
    rec = {"start": 100.0, "end": 110.0, "transfer_start": 101.0, "slot": 100.1,
           "job": {"time_elapsed": 8000, "memory_processed": 80_000_000}}
    out = scenarios._clean_record(rec, 90.0)
    assert (out["start"], out["end"], out["transfer_start"], out["slot"]) == (
        10.0, 20.0, 11.0, 10.1)
    assert out["goodput_Bps"] == 10_000_000
    assert scenarios._clean_record({"start": 1.0, "end": 2.0, "job": None},
                                   0.0)["goodput_Bps"] is None
    assert rec["start"] == 100.0          # the input is left alone
