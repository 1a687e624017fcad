"""``migplane migrate``: start a migration on the source agent and watch it."""

import argparse
import sys
import time

from migplane.cli import argtypes
from migplane.cli import errors
from migplane.cli import output
from migplane.cli import progress as progress_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import settle

FINISHED = events.FINISHED


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "migrate", parents=parents, help="live-migrate a guest between two hosts",
        description="Live-migrate DOMAIN from one host to another through their "
                    "agents. The source agent runs the migration; the destination's "
                    "my_live_migration_ip decides whether the data rides the "
                    "migration plane. Shows a progress bar, then a summary. By "
                    "default the adaptive strategy measures the guest and uses "
                    "pre-copy, raising the downtime within its budget and "
                    "auto-converge as needed; post-copy only when pre-copy would not "
                    "converge or take post_copy_min_gain times as long (see "
                    "--postcopy).",
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_route_args(p)
    p.add_argument("--block", action="store_true",
                   help="block migration: copy the local disks too")
    post = p.add_mutually_exclusive_group()
    post.add_argument("--postcopy", action="store_true", default=None,
                      help="permit_post_copy = True for this migration: post-copy "
                           "whenever it is predicted faster, and for force-complete. "
                           "By default ([live_migration] permit_post_copy unset) the "
                           "adaptive strategy uses post-copy only when pre-copy, even "
                           "with auto-converge, is predicted not to converge or to take "
                           "post_copy_min_gain (2.0) times as long, and, when the "
                           "driver cannot recover a broken post-copy (libvirt with QEMU "
                           "before 8.2), only when it is predicted not to converge. In "
                           "post-copy the guest needs both hosts and the migration link "
                           "until its last page arrives: a broken link is recovered "
                           "where the driver can, a host or QEMU crash loses the guest")
    post.add_argument("--no-postcopy", dest="postcopy", action="store_false",
                      default=None,
                      help="permit_post_copy = False for this migration: never "
                           "post-copy (auto-converge and the completion timeout only)")
    p.add_argument("--force-complete-after", type=argtypes.seconds_or_now, metavar="SECONDS",
                   help="force the migration to complete after SECONDS of transfer")
    p.add_argument("--bandwidth", type=argtypes.at_least(0), metavar="MiB/s",
                   help="bandwidth limit of this migration in MiB/s (0: unlimited)")
    add_strategy_arg(p)
    p.add_argument("--detach", action="store_true",
                   help="print the migration ID and return at once")
    p.add_argument("--reconnect", type=argtypes.at_least(0), default=int(progress_mod.RECONNECT_S),
                   metavar="SECONDS",
                   help="while watching, keep trying this long to reach a source agent "
                        "that went away (it restarts and finishes the migration) "
                        "(default: %(default)s)")
    p.set_defaults(run=run)
    return p


def add_strategy_arg(p):
    p.add_argument("--strategy", choices=("adaptive", "static"),
                   help="override the source's [live_migration] strategy for this "
                        "migration: adaptive (measure, plan, escalate) or static "
                        "(Nova's algorithm exactly)")


def add_route_args(p):
    p.add_argument("domain", metavar="DOMAIN", help="name of the guest (libvirt domain)")
    p.add_argument("--from", dest="source", required=True, metavar="HOST",
                   help="source host (a name from the agent map, or an agent URL)")
    p.add_argument("--to", dest="destination", required=True, metavar="HOST",
                   help="destination host (a name from the agent map, or an agent URL)")


def request_body(args, directory):
    options = {}
    if getattr(args, "bandwidth", None) is not None:
        options["bandwidth_mib"] = args.bandwidth
    if getattr(args, "postcopy", None) is not None:
        options["permit_post_copy"] = bool(args.postcopy)
    if getattr(args, "strategy", None):
        options["strategy"] = args.strategy
    body = {"instance": args.domain,
            "destination": {"url": directory.url(args.destination, "--to")},
            "block_migration": bool(getattr(args, "block", False))}
    if options:
        body["options"] = options
    return body


def unapplied(body, record):
    """The overrides sent in ``body`` that the source agent's ``record`` does not
    list as applied: an agent of an older release ignores (and logs) one its
    version of the settings does not have, and the operator must hear of it."""
    applied = record.get("options") or {}
    return sorted(k for k in body.get("options") or {} if k not in applied)


def run(args, directory):
    source = directory.client(args.source, "--from")
    body = request_body(args, directory)
    record = source.post("/v1/migrations", body)
    ignored = unapplied(body, record)
    if ignored:
        print("warning: the agent of %s did not apply %s (an older release that does "
              "not know %s); the migration goes on without %s" % (
                  args.source, ", ".join(ignored), "them" if len(ignored) > 1 else "it",
                  "them" if len(ignored) > 1 else "it"), file=sys.stderr)
    if args.detach:
        if args.json:
            output.emit_json(record)
        else:
            print(record["id"])
        return errors.OK
    bar = None if args.json else progress_mod.ProgressBar()
    if bar:
        bar.message("Migration %s: %s from %s to %s" % (
            record["id"], args.domain, record["source"], record["destination"]))
    try:
        record = watch(source, record["id"], bar, args.force_complete_after,
                       reconnect_s=getattr(args, "reconnect", progress_mod.RECONNECT_S))
    except KeyboardInterrupt:
        if bar:
            bar.close()
        print("\nStopped watching; migration %s goes on. Abort it with: migplane abort "
              "%s --on %s" % (record["id"], record["id"], args.source), file=sys.stderr)
        return errors.INTERRUPTED
    if args.json:
        output.emit_json(record)
    else:
        summary(record)
    return errors.for_verdict(record)


def watch(client, migration_id, bar=None, force_after=None, sleep=time.sleep,
          reconnect_s=progress_mod.RECONNECT_S, clock=time.monotonic):
    """Poll the source agent until the migration ends; return its record.

    An agent that goes away (restarts) is asked again for up to ``reconnect_s``:
    it keeps its records on disk and settles the migration when it is back.
    """
    transfer_started = None
    forced = False
    seen = []
    for record in progress_mod.follow(
            client, "/v1/migrations/%s" % migration_id,
            lambda r: r["status"] in FINISHED, say=bar.message if bar else None,
            sleep=sleep, clock=clock, reconnect_s=reconnect_s):
        seen.extend(record.get("events", []))
        progress = record.get("progress") or {}
        if bar and progress.get("data_total"):
            bar.update(progress, record.get("uris"), force=record["status"] in FINISHED)
        for event in record.get("events", []):
            if event["kind"] == "transfer_started":
                transfer_started = time.monotonic()
            if bar and event["kind"] not in ("progress",):
                bar.message("  %6.1f s  %s" % (event["elapsed"], describe(event)))
        if record["status"] in FINISHED:
            if bar:
                bar.close()
            return dict(record, events=seen)
        if (force_after is not None and not forced and transfer_started is not None
                and time.monotonic() - transfer_started >= force_after):
            forced = True
            try:
                client.post("/v1/migrations/%s/force-complete" % migration_id)
            except exception.MigplaneError as err:
                # e.g. an agent back from a restart reconciles it (only abort is
                # possible then): the migration goes on, and its end is what this
                # command reports
                message = "force-complete not done (%s); following the migration" % err
                if bar:
                    bar.message(message)
                else:
                    print(message, file=sys.stderr)
    raise AssertionError("unreachable: follow() ends only with a finished record")


def describe(event):
    kind = event["kind"]
    if kind == "step":
        return "step: %s" % event.get("message")
    return "%s%s" % (kind.replace("_", " "),
                     ": %s" % event["message"] if event.get("message") else "")


def _plan_line(plan):
    if not plan:
        return None
    return "%s: %s (dirty rate from %s, link rate from %s)" % (
        plan["strategy"], plan["method"], plan["dirty_rate_source"],
        plan["link_rate_source"])


def _predicted(result, progress):
    """Predicted against actual time and downtime."""
    plan = result.get("plan") or {}
    if plan.get("predicted_time_s") is None:
        return None
    actual = progress.get("downtime_ms")
    return "%s, downtime %.0f ms (actual: %s, downtime %s)" % (
        output.duration(plan["predicted_time_s"]), plan["predicted_downtime_ms"],
        output.duration(result.get("duration_s")),
        "%d ms" % actual if actual is not None else "-")


def hands_off(record, result):
    """What an operator must know of a migration that did not settle."""
    held = {"unresolved": "a host could not be asked; the guest is left paused where it "
                          "is (or running on %s if it never stopped) and the agent of %s "
                          "goes on settling it" % (record["source"], record["source"]),
            "postcopy-paused": "post-copy recovery gave up; both halves are kept paused",
            "lost": "a QEMU died in post-copy; the guest's memory is split between the "
                    "hosts and neither half can be resumed",
            "split": "the guest was found running on BOTH hosts; the detector paused what "
                     "it could and further migrations of it are refused"}
    verdict = result.get("verdict")
    return ("\n  %s: %s.\n  %s\n  Do NOT start %s by hand on %s or %s; follow it with: "
            "migplane show %s --on %s\n\n" % (
                verdict.upper(), held.get(verdict, verdict),
                result.get("verdict_reason") or "", record["instance"], record["source"],
                record["destination"], record["id"], record["source"]))


def post_copy_line(record, result, progress):
    """The guest's exposure in post-copy: from when, for how long (predicted, then
    actual), how often its stream broke, and what it meant."""
    seen = {}
    recoveries = 0
    for event in record.get("events") or ():
        if event["kind"] in (events.POST_COPY_STARTED, events.POST_COPY_ENDED):
            seen.setdefault(event["kind"], event["elapsed"])
        recoveries += event["kind"] == events.POST_COPY_RECOVERED
    plan = result.get("plan") or {}
    if events.POST_COPY_STARTED not in seen and not progress.get("postcopy"):
        if plan.get("post_copy"):
            return "armed, not used"
        return None
    start = seen.get(events.POST_COPY_STARTED)
    end = seen.get(events.POST_COPY_ENDED)
    parts = ["from %s" % output.duration(start) if start is not None else "taken"]
    if start is not None and end is not None:
        parts.append("for %s" % output.duration(end - start))
    if plan.get("post_copy_for_s") is not None:
        parts.append("predicted %s" % output.duration(plan["post_copy_for_s"]))
    if recoveries:
        parts.append("the stream broke and was recovered %d time(s)" % recoveries)
    what = ("the guest depended on both hosts and the link meanwhile"
            if record["status"] == events.COMPLETED else
            "until the last page arrives the guest needs both hosts, both QEMUs and the "
            "link: a host or QEMU crash loses it")
    return "%s; %s" % (", ".join(parts), what)


def summary(record, stream=None):
    stream = stream or sys.stdout
    result = record.get("result") or {}
    progress = record.get("progress") or {}
    uris = record.get("uris") or {}
    stream.write("Migration %s of %s: %s%s\n" % (
        record["id"], record["instance"], record["status"],
        " (guest running on %s)" % result["running_on"] if result.get("running_on")
        else ""))
    verdict = result.get("verdict")
    if verdict in settle.HANDS_OFF:
        stream.write(hands_off(record, result))
    downtime = progress.get("downtime_ms")
    output.field_lines([
        ("verdict", "%s (exit %d): %s" % (verdict, settle.exit_code(verdict),
                                          result.get("verdict_reason") or "")
         if verdict else None),
        ("from -> to", "%s -> %s" % (record["source"], record["destination"])),
        ("total time", output.duration(result.get("duration_s"))),
        ("downtime", "%d ms" % downtime if downtime is not None else None),
        ("data sent", "%s in %s iteration(s)%s" % (
            output.size(progress.get("data_processed")), progress.get("iteration", 0),
            ", post-copy" if progress.get("postcopy") else "")),
        ("bytes per plane", output.plane_bytes(record.get("traffic"))),
        ("plan", _plan_line(result.get("plan"))),
        ("predicted", _predicted(result, progress)),
        ("post-copy", post_copy_line(record, result, progress)),
        ("escalations", "; ".join("%s (%s)" % (e["escalation"], e["reason"])
                                  for e in result.get("escalations") or ()) or None),
        ("plane", "%s (bulk stream to %s)" % (uris.get("plane"), uris.get("bulk_host"))
         if uris else None),
        ("control URI", uris.get("control_uri")),
        ("data URI", uris.get("data_uri")),
        ("listen address", uris.get("listen_address")),
        ("disks URI", uris.get("disks_uri")),
        ("TLS name", uris.get("tls_destination")),
        ("error", record.get("error")),
    ], stream)
