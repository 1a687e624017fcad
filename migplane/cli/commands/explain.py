"""``migplane explain``: the dry run of a migration, and why each choice."""

import argparse
import sys

from migplane.cli import errors
from migplane.cli import output
from migplane.cli.commands import migrate

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
                    "and why each was chosen. Nothing is changed on either host.",
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    migrate.add_route_args(p)
    p.add_argument("--block", action="store_true", help="plan a block migration")
    p.add_argument("--postcopy", action="store_true", help="plan with post-copy permitted")
    p.add_argument("--bandwidth", type=int, metavar="MiB/s", help="plan with this limit")
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
