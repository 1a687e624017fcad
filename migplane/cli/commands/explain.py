"""``migplane explain``: the dry run of a migration, and why each choice."""

import argparse
import sys

from migplane.agent import wire
from migplane.cli import errors
from migplane.cli import output
from migplane.cli.commands import migrate
from migplane.core import units

FIELDS = (("control_uri", "control URI"), ("data_uri", "data URI"),
          ("listen_address", "listen address"), ("disks_uri", "disks URI"),
          ("tls_destination", "TLS name"))


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "explain", parents=parents, help="show how a migration would run, change nothing",
        description="Dry run: ask the destination for its inbound address (as "
                    "pre_live_migration would, preparing nothing) and the source to "
                    "resolve the URIs, then show the control URI, data URI, listen "
                    "address, disks URI, TLS name, the driver's flags and parameters, "
                    "the guest's measured dirty rate, the link rate and the migration "
                    "plan (method, escalations, predicted time and downtime), and why "
                    "each was chosen. Nothing is changed on either host (sampling the "
                    "dirty rate takes [live_migration] dirty_rate_window seconds).",
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    migrate.add_route_args(p)
    p.add_argument("--block", action="store_true", help="plan a block migration")
    post = p.add_mutually_exclusive_group()
    post.add_argument("--postcopy", action="store_true", default=None,
                      help="plan with permit_post_copy = True (post-copy whenever faster)")
    post.add_argument("--no-postcopy", dest="postcopy", action="store_false", default=None,
                      help="plan with permit_post_copy = False (never post-copy)")
    p.add_argument("--bandwidth", type=int, metavar="MiB/s", help="plan with this limit")
    migrate.add_strategy_arg(p)
    p.set_defaults(run=run)
    return p


def run(args, directory):
    source = directory.client(args.source, "--from")
    plan = source.post("/v1/plans", migrate.request_body(args, directory))
    if args.json:
        output.emit_json(plan)
    else:
        show(plan)
    return errors.OK


def show(plan, stream=None):
    stream = stream or sys.stdout
    uris = plan["uris"]
    reasons = uris.get("reasons") or {}
    data = plan["migrate_data"].get("migplane.data", {})
    stream.write("Plan: %s from %s to %s (dry run: nothing was changed)\n" % (
        plan["instance"]["name"], plan["source"], plan["destination"]))
    stream.write("  destination inbound address: %s (from %s)\n" % (
        data.get("target_connect_addr") or "none", data.get("inbound_addr_source")))
    stream.write("  bulk stream: %s plane, to %s\n\n" % (uris["plane"], uris["bulk_host"]))
    for key, label in FIELDS:
        stream.write("  %-15s %s\n" % (label, uris.get(key) or "-"))
        if reasons.get(key):
            stream.write("  %-15s   why: %s\n" % ("", reasons[key]))
    hypervisor = plan.get("hypervisor")
    if hypervisor:
        stream.write("\n  driver %s:\n" % plan["driver"]["name"])
        flags = hypervisor.get("flags")
        if flags:
            stream.write("  %-15s %s\n" % ("flags", " | ".join(flags)))
        for key, value in sorted((hypervisor.get("params") or {}).items()):
            stream.write("  %-15s %s = %s\n" % ("param", key, value))
        for key, value in sorted((hypervisor.get("reasons") or {}).items()):
            stream.write("  %-15s   why %s: %s\n" % ("", key, value))
    else:
        stream.write("\n  (driver %s does not describe its flags and parameters)\n"
                     % plan["driver"]["name"])
    if plan.get("convergence"):
        show_convergence(plan["convergence"], stream)


def show_convergence(conv, stream):
    """The measurement and the plan, as the strategy sees them before the move."""
    measured, link, plan = (obj.to_dict() for obj in wire.load_convergence(conv))
    stream.write("\n  convergence (strategy %s):\n" % plan["strategy"])
    stream.write("  %-15s %s (%s)%s\n" % (
        "dirty rate", units.mib_s(measured.get("dirty_rate")), measured["source"],
        ": " + measured["reason"] if measured.get("reason") else ""))
    stream.write("  %-15s %s (%s)%s\n" % (
        "link rate", units.mib_s(link.get("rate")), link["source"],
        ": " + link["reason"] if link.get("reason") else ""))
    stream.write("  %-15s %s\n" % ("method", plan["method"]))
    armed = [name for name, on in (("auto-converge", plan["auto_converge"]),
                                   ("post-copy", plan["post_copy"])) if on]
    armed += list(plan.get("compression") or ())
    stream.write("  %-15s %s\n" % ("armed", ", ".join(armed) or "nothing"))
    stream.write("  %-15s %d\n" % ("connections", plan.get("parallel_connections") or 1))
    stream.write("  %-15s %s\n" % ("escalations", " -> ".join(plan["escalations"])
                                    or "none (static)"))
    stream.write("  %-15s %d ms\n" % ("downtime budget", plan["downtime_budget_ms"]))
    if plan.get("predicted_time_s") is not None:
        stream.write("  %-15s %.1f s, downtime %.0f ms\n" % (
            "predicted", plan["predicted_time_s"], plan["predicted_downtime_ms"]))
    if plan.get("post_copy_for_s") is not None:
        stream.write("  %-15s from %.1f s for about %.1f s (both hosts and the link "
                     "needed; a host or QEMU crash then loses the guest)\n" % (
                         "post-copy", plan["post_copy_from_s"], plan["post_copy_for_s"]))
    else:
        stream.write("  %-15s none (needs a dirty rate and a link rate)\n" % "predicted")
    for key, value in sorted((plan.get("reasons") or {}).items()):
        stream.write("  %-15s   why %s: %s\n" % ("", key, value))
