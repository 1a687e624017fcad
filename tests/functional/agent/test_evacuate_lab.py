"""``migplane evacuate`` on the 3-host lab: real libvirtd + QEMU, agents, the CLI.

Six guests of mixed sizes, two of them dirtying memory, leave host-a for
host-b and host-c through the agents. One guest meets a real fault: a domain
of its name is already defined on both destinations, so its migration fails
at the destination check; it must stay running on host-a while the others
move, every guest passing the lab's continuity check, and no host running
more migrations than its limit.
"""

import json
import re

import pytest

from migplane.lab import agents as agents_mod
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

LIMIT = 3
GUESTS = {  # name: (memory MiB, dirty MiB, dirty rate MiB/s)
    "ev-1": (64, 16, 24), "ev-2": (56, 0, 0), "ev-3": (48, 8, 16),
    "ev-4": (40, 0, 0), "ev-5": (32, 0, 0), "ev-6": (24, 0, 0),
}
VICTIM = "ev-4"
SLOT_RE = re.compile(r"Slot taken for incoming migration \S+ of \S+ from \S+ "
                     r"\((\d+)/(\d+)\)")


@pytest.fixture(scope="module")
def agents3(lab3):
    lab_agents = agents_mod.LabAgents(lab3)
    try:
        for host in lab3.hosts:
            lab_agents.start(host, my_ip=host.mig_ip,
                             live_migration={"max_concurrent": LIMIT})
        yield lab_agents
    finally:
        lab_agents.stop_all()


@pytest.fixture
def guests(lab3):
    kernel = lab3.build_guest()
    a = lab3.hosts[0]
    watchers = {}
    try:
        for name, (mib, dirty, rate) in GUESTS.items():
            watchers[name] = ConsoleWatcher.for_domain(lab3.hosts, name, poll_s=0.05)
            watchers[name].start()
            guest.define_guest(a, name, kernel, memory_mib=mib, cmdline=guest.cmdline(
                tick_ms=50, dirty_mib=dirty, rate_mib_s=rate, stamp_mib=8))
        for w in watchers.values():
            w.wait_ready(ticks=3, timeout=120)
        # the fault: a (shut off) domain of the victim's name on both destinations
        for host in lab3.hosts[1:]:
            guest.define_guest(host, VICTIM, kernel, start=False, fresh_console=False,
                               memory_mib=24, console_log="/var/log/libvirt/blocker.log")
        yield watchers
    finally:
        for w in watchers.values():
            w.stop()
        for host in lab3.hosts:
            for name in GUESTS:
                guest.destroy_guest(host, name)


def _peak(intervals):
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = count = 0
    for _, delta in points:
        count += delta
        peak = max(peak, count)
    return peak


def test_evacuate_a_host_of_mixed_guests_to_two_destinations(lab3, agents3, guests):
    a, b, c = lab3.hosts
    cli_args = agents3.cli_args()

    done = agents3.run_cli("evacuate", "host-a", "--to", "host-b,host-c", "--dry-run",
                           "--json", *cli_args, timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert {g["name"] for g in plan["plan"]["guests"]} == set(GUESTS)
    assert set(guest.domains(a)) >= set(GUESTS)  # the dry run moved nothing

    done = agents3.run_cli("evacuate", "host-a", "--to", "host-b,host-c", "--fixed-cost",
                           "1", *cli_args, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # one guest failed
    # what the operator sees: the live display, then the table
    evacuation_id = re.search(r"Evacuation (\w+) of host-a: 6 guest\(s\)",
                              done.stderr).group(1)
    assert "moved" in done.stderr and "link" in done.stderr
    assert "partial, 5 of 6 guest(s) moved" in done.stdout
    rows = {line.split()[0]: line for line in done.stdout.splitlines()
            if line.split() and line.split()[0] in GUESTS}
    assert sorted(rows) == sorted(GUESTS)
    assert "failed" in rows[VICTIM] and "host-a" in rows[VICTIM]
    assert "%s: " % VICTIM in done.stdout and "already defined here" in done.stdout
    assert all("completed" in rows[n] and "migration" in rows[n]
               for n in GUESTS if n != VICTIM), done.stdout
    # and the same as JSON, from the agent that ran it
    done = agents3.run_cli("evacuate", "host-a", "--follow", evacuation_id, "--json",
                           *cli_args, timeout=120)
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "partial"
    outcomes = {g["name"]: g for g in record["guests"]}
    assert set(outcomes) == set(GUESTS)

    # the victim failed at the destination check and runs on host-a, untouched
    victim = outcomes[VICTIM]
    assert victim["status"] == "failed" and victim["running_on"] == "host-a"
    assert "already defined here" in victim["error"]
    assert guest.state_of(a, VICTIM) == libvirt.VIR_DOMAIN_RUNNING
    for host in (b, c):
        assert guest.state_of(host, VICTIM) == libvirt.VIR_DOMAIN_SHUTOFF  # the blocker only

    # every other guest runs on exactly one host, its destination
    where = {h.name: guest.domains(h) for h in lab3.hosts}
    for name, outcome in outcomes.items():
        running = [h for h, doms in where.items()
                   if doms.get(name, (None,))[0] == libvirt.VIR_DOMAIN_RUNNING]
        if name == VICTIM:
            assert running == ["host-a"]
            continue
        assert outcome["status"] == "completed", outcome
        assert running == [outcome["destination"]] != ["host-a"], (name, running)
        assert outcome["data_bytes"] >= 8 << 20  # its stamped memory at least
        assert outcome["destination"] in ("host-b", "host-c")
        # the data rode the migration plane (the final table's bytes per plane)
        planes = record["migrations"][outcome["migration_id"]]["traffic"]["planes"]
        assert planes["migration"]["tx_bytes"] >= 8 << 20, (name, planes)
    assert {o["destination"] for n, o in outcomes.items() if n != VICTIM} <= {"host-b",
                                                                            "host-c"}

    # each guest: same boot, its counter continuous across the handover, memory intact
    for name, w in guests.items():
        host = "host-a" if name == VICTIM else outcomes[name]["destination"]
        w.wait_ticks(3, host=host, timeout=30)
        assert len(w.boot_ids()) == 1 and w.max_bad() == 0, name
        continuity = w.continuity()
        assert continuity, (name, continuity)
        expected = [] if name == VICTIM else [("host-a", host)]
        assert [(h.frm, h.to) for h in continuity.handovers] == expected, name

    # no host ran more migrations than its limit (destinations by their own count;
    # every host by the migrations' lifetimes, which contain their slots)
    for host in (b, c):
        counts = [(int(n), int(limit)) for n, limit in SLOT_RE.findall(agents3.tail(host,
                                                                                    10**6))]
        assert counts and all(n <= limit == LIMIT for n, limit in counts), counts
    # `migplane list` follows the evacuation's migrations like any other
    done = agents3.run_cli("list", "--json", "--on", "host-a", *cli_args, timeout=60)
    assert done.returncode == 0, done.stderr
    migrations = [m for m in json.loads(done.stdout)["migrations"]
                  if m["instance"] in GUESTS and m["id"] in
                  {o["migration_id"] for o in outcomes.values()}]
    assert len(migrations) == len(GUESTS)
    for name in ("host-a", "host-b", "host-c"):
        mine = [(m["created"], m["finished"]) for m in migrations
                if name in (m["source"], m["destination"])]
        assert _peak(mine) <= LIMIT, name
