"""``migplane demo``: the README's one-command tour, end to end, then clean.

A two-host lab; an agent in each host; a guest on host-a that dirties its
memory and prints a counter; ``migplane check`` and ``explain``; a live
migration to host-b over the migration plane with the progress bar and the
summary; the guest shown running on host-b with its counter continuing;
everything torn down (unless ``--keep``).
"""

import argparse
import os
import sys
import time

from migplane.cli import argtypes
from migplane.cli import errors
from migplane.core import units

#: MiB of guest memory the demo's guest fills before it dirties some.
STAMP_MIB = 64


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "demo", help="build a two-host lab and migrate a live guest across it (root)",
        description=__doc__, epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="mpdemo", help="lab name (default %(default)s)")
    p.add_argument("--memory", type=argtypes.at_least(STAMP_MIB + 32), default=128,
                   metavar="MiB",
                   help="guest memory (default %(default)s)")
    p.add_argument("--bandwidth", type=argtypes.at_least(0), default=16, metavar="MiB/s",
                   help="migration bandwidth, so the progress is visible (default "
                        "%(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="leave the lab, agents and guest running (migplane lab down "
                        "--name NAME removes them)")
    p.set_defaults(run=run, needs_agents=False)
    return p


def say(text):
    print("\n\033[1m==> %s\033[0m" % text if sys.stdout.isatty() else "\n==> %s" % text,
          flush=True)


def run(args, directory=None):
    if os.geteuid() != 0:
        raise errors.CliError("the demo builds network namespaces and runs libvirtd: "
                              "run it as root")
    from migplane.lab import Lab
    from migplane.lab import agents as inlab
    from migplane.lab import guest as lab_guest
    from migplane.lab.console import ConsoleWatcher

    if Lab.exists(args.name):
        say("Removing the leftovers of an earlier lab %r" % args.name)
        Lab.load(args.name).down()
    say("Building a two-host lab %r: management 192.0.2.0/24, migration "
        "198.51.100.0/24" % args.name)
    lab = Lab(args.name, hosts=2).up()
    agents = watcher = None
    name = "demo-guest"
    ok = False
    try:
        a, b = lab.hosts
        kernel = lab.build_guest()
        say("Starting migplane-agent on both hosts (HTTPS on the management address, "
            "my_live_migration_ip = the host's migration address)")
        agents = inlab.LabAgents(lab)
        for host in lab.hosts:
            print("  %s: %s (my_live_migration_ip %s)" % (
                host.name, agents.start(host, my_ip=host.mig_ip), host.mig_ip))
        say("Booting a %d MiB guest on host-a that fills %d MiB, then dirties 8 MiB/s "
            "and prints a counter every 100 ms" % (args.memory, STAMP_MIB))
        watcher = ConsoleWatcher.for_domain(lab.hosts, name).start()
        lab_guest.define_guest(a, name, kernel, memory_mib=args.memory,
                               cmdline=lab_guest.cmdline(tick_ms=100, dirty_mib=24,
                                                         rate_mib_s=8, stamp_mib=STAMP_MIB))
        watcher.wait_ready(timeout=60)
        print("  guest counter on host-a: %s" % watcher.last_counter())
        cli_args = agents.cli_args()
        say("migplane check --from host-a --to host-b")
        agents.run_cli_attached("check", "--from", "host-a", "--to", "host-b", *cli_args)
        say("migplane explain %s --from host-a --to host-b" % name)
        agents.run_cli_attached("explain", name, "--from", "host-a", "--to", "host-b",
                                *cli_args)
        before = {h.name: h.counters() for h in lab.hosts}
        say("migplane migrate %s --from host-a --to host-b --bandwidth %d"
            % (name, args.bandwidth))
        code = agents.run_cli_attached("migrate", name, "--from", "host-a", "--to",
                                       "host-b", "--bandwidth", str(args.bandwidth),
                                       *cli_args)
        after = {h.name: h.counters() for h in lab.hosts}
        say("The lab's own interface counters on host-a during the migration")
        for plane in ("migration", "management"):
            sent = after["host-a"][plane]["tx_bytes"] - before["host-a"][plane]["tx_bytes"]
            print("  %-10s plane (%s): %7.1f MiB sent" % (plane, a.ifname(plane),
                                                          sent / units.MiB))
        say("The guest now runs on host-b; its counter goes on")
        first = watcher.wait_ticks(1, host="host-b", timeout=30).n
        time.sleep(2)
        last = watcher.wait_ticks(1, host="host-b", timeout=30).n
        frm, to, gap = watcher.handover() or (None, None, 0)
        continuous = watcher.counter_continuous() and len(watcher.boot_ids()) == 1
        print("  counter on host-b: %d -> %d; handover %s -> %s after a %.0f ms gap; "
              "same boot, no tick lost: %s" % (first, last, frm, to, gap * 1000,
                                               "yes" if continuous else "NO"))
        ok = code == 0 and continuous and to == "host-b"
    finally:
        if watcher is not None:
            watcher.stop()
        if args.keep:
            say("Kept: lab %r with its agents and guest; remove with: migplane lab down "
                "--name %s" % (args.name, args.name))
        else:
            say("Tearing everything down")
            if agents is not None:
                agents.stop_all()
            for host in lab.hosts:
                lab_guest.destroy_guest(host, name)
            lab.down()
            print("  done: no namespace, process or file of the lab is left")
    return errors.OK if ok else errors.FAILED
