"""``migplane evacuate``: empty a host through its agent, at the speed of its link.

The source agent plans and runs the evacuation; this command starts it and
watches it (one live display: overall progress, a line per guest, the link's
utilisation), then prints a table of how each guest ended. Interrupting the
command stops the watching only; ``migplane list`` / ``show`` follow each
guest's migration, and ``migplane evacuate HOST --follow ID`` the whole.
"""

import argparse
import sys
import time

from migplane.agent import errors as agent_errors
from migplane.cli import argtypes
from migplane.cli import errors
from migplane.cli import output
from migplane.cli import progress as progress_mod


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "evacuate", parents=parents, help="live-migrate every guest off a host",
        description="Live-migrate every running guest of HOST to the destinations, "
                    "planned against HOST's migration link: enough streams to fill it, "
                    "the next guest prepared while the current one finishes. The "
                    "source agent runs it; interrupting this command does not stop it.",
        epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host", metavar="HOST", help="the host to empty")
    p.add_argument("--to", dest="destinations", metavar="HOST,...",
                   help="destinations, comma-separated (default: every other host of "
                        "the agent map)")
    p.add_argument("--only", metavar="DOMAIN,...",
                   help="move only these guests (default: every running guest)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and its prediction; move nothing")
    p.add_argument("--link-rate", type=argtypes.positive_number, metavar="MiB/s",
                   help="the migration link's rate (default: the bandwidth limit, the "
                        "interface speed, else 1 Gbit/s)")
    p.add_argument("--fixed-cost", type=argtypes.non_negative_number, metavar="SECONDS",
                   help="seconds from a migration's start to its first byte (default 2)")
    p.add_argument("--measure-dirty-rate", action="store_true",
                   help="measure each guest's dirty rate first (about a second) and plan "
                        "with it, when the source's driver can")
    p.add_argument("--detach", action="store_true",
                   help="print the evacuation ID and return at once")
    p.add_argument("--follow", metavar="ID",
                   help="watch the running evacuation ID of HOST instead of starting one")
    p.set_defaults(run=run)
    return p


def _split(text):
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def destinations(args, directory):
    """The destination host names, checked against the source."""
    names = _split(args.destinations)
    if not names:
        names = sorted(n for n in directory.agents if n != args.host)
        if not names:
            raise errors.CliError("no destination: give --to HOST,... (the agent map "
                                  "knows no host besides %s)" % args.host)
    source_url = directory.url(args.host, "HOST")
    for name in names:
        if name == args.host or directory.url(name, "--to") == source_url:
            raise errors.CliError("destination %s is the host being evacuated (%s)"
                                  % (name, args.host))
    if len(set(names)) != len(names):
        raise errors.CliError("--to names a destination twice: %s" % args.destinations)
    return names


def request_body(args, directory):
    body = {"destinations": [{"url": directory.url(name, "--to")}
                             for name in destinations(args, directory)]}
    if args.only:
        body["instances"] = _split(args.only)
    if args.link_rate:
        body["link_rate_mib"] = args.link_rate
    if args.fixed_cost is not None:
        body["fixed_cost_s"] = args.fixed_cost
    if args.measure_dirty_rate:
        body["measure_dirty_rate"] = True
    if args.dry_run:
        body["dry_run"] = True
    return body


def run(args, directory):
    source = directory.client(args.host, "HOST")
    if args.follow:
        record = source.get("/v1/evacuations/%s" % args.follow)
    else:
        record = source.post("/v1/evacuations", request_body(args, directory))
        if args.dry_run:
            if args.json:
                output.emit_json(record)
            else:
                print_plan(record)
            return errors.OK
        if args.detach:
            if args.json:
                output.emit_json(record)
            else:
                print(record["id"])
            return errors.OK
    display = None if args.json else Display()
    if display:
        display.message("Evacuation %s of %s: %d guest(s) to %s; %s" % (
            record["id"], record["source"], len(record["guests"]),
            ", ".join(d["name"] for d in record["destinations"]),
            _prediction(record["plan"])))
    try:
        record = watch(source, record["id"], display)
    except KeyboardInterrupt:
        if display:
            display.close()
        print("\nStopped watching; evacuation %s goes on. Follow it with: migplane "
              "evacuate %s --follow %s" % (record["id"], args.host, record["id"]),
              file=sys.stderr)
        return errors.INTERRUPTED
    traffic = _traffic(source, record)
    if args.json:
        record["migrations"] = traffic
        output.emit_json(record)
    else:
        final_table(record, traffic)
    return errors.OK if record["status"] == "completed" else errors.FAILED


def _prediction(plan):
    return ("%d stream(s), %s to send: ideal %s, predicted %s (%.2f x the link's limit)"
            % (plan["streams"], output.size(plan["total_bytes"]),
               output.duration(plan["ideal_s"]), output.duration(plan["predicted_s"]),
               plan["ratio"]))


def print_plan(answer, stream=None):
    """The dry run: where each guest goes, when, and why."""
    stream = stream or sys.stdout
    plan = answer["plan"]
    stream.write("Evacuation plan of %s (link %s, %s)\n" % (
        answer["source"], output.rate(answer["link_rate"]), answer["link_rate_source"]))
    output.table([(g["order"] + 1, g["name"], g["destination"], g["lane"] + 1,
                   output.size(g["memory_bytes"]), output.size(g["predicted_bytes"]),
                   "%.1f s" % g["start_s"], "%.1f s" % g["finish_s"],
                   "%.1f s" % g["overlap_s"]) for g in plan["guests"]],
                 ("#", "guest", "destination", "lane", "memory", "to send", "starts",
                  "done", "overlap"), stream)
    for lost in plan["unplaceable"]:
        stream.write("%s stays on %s: %s\n" % (lost["name"], answer["source"],
                                               lost["reason"]))
    stream.write("prediction: %s; %.1f of %.1f s of fixed costs overlapped\n" % (
        _prediction(plan), plan["overlapped_s"],
        plan["fixed_cost_s"] * len(plan["guests"])))
    stream.write("streams: %d, up to %d guest(s) prepared ahead: at most %d migrations at "
                 "once, each holding its slot of the per-host limit\n" % (
                     plan["streams"], plan.get("prepare_ahead", 0), plan["max_running"]))
    for dest in answer["destinations"]:
        stream.write("destination %s: %s free, %d running, limit %s\n" % (
            dest["name"], output.size(dest["free_memory_bytes"]), dest["load"],
            dest["max_concurrent"] or "none"))
    for reason in plan["reasons"]:
        stream.write("  - %s\n" % reason)


class Display:
    """One live view of the evacuation: a summary line and a line per guest.

    On a terminal it redraws in place; otherwise it prints a summary every few
    seconds and a line whenever a guest starts or ends.
    """

    def __init__(self, stream=None, clock=time.monotonic, every_s=5.0):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._clock = clock
        self._every = every_s
        self._drawn = 0
        self._last = None
        self._samples = []
        self._seen = {}

    def utilisation(self, record, now):
        """Share of the link the evacuation used over the last few seconds."""
        sent = sum(g.get("data_processed") or 0 for g in record["guests"])
        self._samples.append((now, sent))
        self._samples = [s for s in self._samples if now - s[0] <= 5.0]
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or not record.get("link_rate"):
            return None
        return max(0.0, (b1 - b0) / (t1 - t0) / record["link_rate"])

    def lines(self, record, utilisation):
        guests = record["guests"]
        done = sum(1 for g in guests if g.get("status") == "completed")
        failed = sum(1 for g in guests if g.get("status") not in
                     ("pending", "running", "completed"))
        total = sum(g.get("memory_bytes") or 0 for g in guests) or 1
        moved = sum((g.get("memory_bytes") or 0) * (g.get("percent") or 0) / 100.0
                    for g in guests)
        head = "%5.1f%%  %d/%d moved%s  link %s" % (
            100.0 * moved / total, done, len(guests),
            ", %d failed" % failed if failed else "",
            "-" if utilisation is None else "%3.0f%%" % (100 * utilisation))
        rows = [head]
        for g in guests:
            rows.append("  %-20s -> %-10s %-10s %5.1f%%  %s" % (
                g["name"], g.get("destination") or "-", g.get("status"),
                g.get("percent") or 0.0, g.get("step") or ""))
        return rows

    def update(self, record, force=False):
        now = self._clock()
        rows = self.lines(record, self.utilisation(record, now))
        if self.tty:
            if self._drawn:
                self.stream.write("\x1b[%dF" % self._drawn)
            for row in rows:
                self.stream.write("\x1b[2K" + row + "\n")
            self._drawn = len(rows)
        else:
            for g in record["guests"]:
                state = g.get("status")
                if self._seen.get(g["name"]) != state and state != "pending":
                    self.stream.write("  %s -> %s: %s%s\n" % (
                        g["name"], g.get("destination"), state,
                        " (%s)" % g["error"] if g.get("error") else ""))
                self._seen[g["name"]] = state
            if force or self._last is None or now - self._last >= self._every:
                self.stream.write(rows[0] + "\n")
                self._last = now
        self.stream.flush()

    def message(self, text):
        self.stream.write(text + "\n")
        self._drawn = 0
        self.stream.flush()

    def close(self):
        self._drawn = 0
        self.stream.flush()


def watch(client, evacuation_id, display=None, sleep=time.sleep):
    """Poll the source agent until the evacuation ends; return its record. An
    agent that stops answering for a while is asked again, as for a migration."""
    for record in progress_mod.follow(
            client, "/v1/evacuations/%s" % evacuation_id,
            lambda r: r["status"] != "running",
            say=display.message if display else None, sleep=sleep):
        finished = record["status"] != "running"
        if display:
            display.update(record, force=finished)
        if finished:
            if display:
                display.close()
            return record
    raise AssertionError("unreachable: follow() ends only with a finished record")


def _traffic(client, record):
    """Each guest's migration record (bytes per plane), by migration ID."""
    found = {}
    for guest in record["guests"]:
        migration_id = guest.get("migration_id")
        if not migration_id:
            continue
        try:
            found[migration_id] = client.get("/v1/migrations/%s" % migration_id,
                                             params={"since": "1000000"})
        except agent_errors.NotFound:  # forgotten by a busy agent: the table says "-"
            found[migration_id] = None
    return found


def final_table(record, migrations, stream=None):
    stream = stream or sys.stdout
    rows = []
    for g in record["guests"]:
        traffic = (migrations.get(g.get("migration_id")) or {}).get("traffic")
        rows.append((g["name"], g.get("destination") or "-",
                     output.duration(g.get("duration_s")),
                     "-" if g.get("downtime_ms") is None else "%d ms" % g["downtime_ms"],
                     output.size(g.get("data_bytes") or g.get("data_processed")),
                     output.plane_bytes(traffic, interfaces=False), g.get("status"),
                     g.get("running_on") or "-"))
    result = record.get("result") or {}
    moved = sum(1 for g in record["guests"] if g.get("status") == "completed")
    stream.write("Evacuation %s of %s: %s, %d of %d guest(s) moved in %s\n" % (
        record["id"], record["source"], record["status"], moved, len(record["guests"]),
        output.duration(result.get("duration_s"))))
    output.table(rows, ("guest", "destination", "time", "downtime", "sent",
                        "bytes per plane", "result", "running on"), stream)
    sent = sum(g.get("data_bytes") or 0 for g in record["guests"])
    if sent and record.get("link_rate") and result.get("duration_s"):
        ideal = sent / record["link_rate"]
        stream.write("total %s; bytes sent / link rate %s: %.2f x the link's limit\n" % (
            output.duration(result["duration_s"]), output.duration(ideal),
            result["duration_s"] / ideal))
    for g in record["guests"]:
        if g.get("error"):
            stream.write("%s: %s\n" % (g["name"], g["error"]))
    if record.get("error"):
        stream.write("error: %s\n" % record["error"])
