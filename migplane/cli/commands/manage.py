"""``migplane list|show|abort|force-complete|resume|release``: migrations the agents run."""

import argparse
import re
import sys
import time

from migplane.agent import errors as agent_errors
from migplane.agent import schemas
from migplane.cli import errors
from migplane.cli import output
from migplane.cli.commands import migrate
from migplane.core import driver as driver_mod


def add_parsers(subparsers, parents):
    p = subparsers.add_parser(
        "list", parents=parents, help="list the migrations the agents know",
        description="List the migrations coordinated by every configured agent (or "
                    "only HOST's with --on).", epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--on", metavar="HOST", help="ask only this host's agent")
    p.set_defaults(run=run_list)
    for name, func, what in (("show", run_show, "show one migration with its events"),
                             ("abort", run_abort, "abort a running migration; the guest "
                                                  "stays on the source"),
                             ("force-complete", run_force,
                              "make a running migration converge (post-copy if "
                              "permitted, else pause the guest)"),
                             ("resume", run_resume,
                              "resume a post-copy migration left paused after its "
                              "stream broke (exit code of migrate: postcopy-paused): "
                              "the source's driver recovers the stream again once both "
                              "hosts and the migration link answer; nothing else "
                              "may resume either half"),
                             ("release", run_release,
                              "let a guest found running on both hosts (exit code of "
                              "migrate: split) migrate again, once you have stopped "
                              "and undefined one copy by hand: the agent checks that "
                              "both hosts answer and at most one holds the guest")):
        p = subparsers.add_parser(name, parents=parents, help=what, description=what,
                                  epilog=errors.EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("migration_id", metavar="ID", type=migration_id,
                       help="migration ID (from list)")
        p.add_argument("--on", metavar="HOST",
                       help="the source host's agent (default: ask every agent)")
        p.set_defaults(run=func)


def migration_id(text):
    """An ID as the agents make them; anything else could walk their URL paths."""
    if not re.fullmatch(schemas.MIGRATION_ID["pattern"], text):
        raise argparse.ArgumentTypeError(
            "%r is not a migration ID (letters, digits, '-' and '_', as 'migplane list' "
            "shows them)" % text)
    return text


def _hosts(args, directory):
    if args.on:
        return [args.on]
    if not directory.agents:
        raise errors.CliError("no agents configured: use --on HOST, --agent NAME=URL or "
                              "an [agents] section in the CLI file")
    return sorted(directory.agents)


def find(args, directory):
    """``(host, client, record)`` of migration ``args.migration_id``."""
    unreachable = []
    for host in _hosts(args, directory):
        client = directory.client(host, "--on")
        try:
            return host, client, client.get("/v1/migrations/%s" % args.migration_id)
        except agent_errors.NotFound:
            continue
        except agent_errors.AgentUnreachable as err:
            unreachable.append(str(err))
    raise errors.CliError("migration %r not found on %s%s" % (
        args.migration_id, ", ".join(_hosts(args, directory)),
        "; " + "; ".join(unreachable) if unreachable else ""),
        code=errors.AGENT if unreachable else errors.NOT_FOUND)


def run_list(args, directory):
    """Every agent's migrations; an agent that does not answer is named (in the JSON
    too) and makes the exit code 3, whatever the others said."""
    rows, everything, failures = [], [], []
    hosts = _hosts(args, directory)
    for host in hosts:
        try:
            found = directory.client(host, "--on").get("/v1/migrations")["migrations"]
        except agent_errors.AgentError as err:
            failures.append({"agent": host, "error": str(err),
                             "kind": type(err).__name__})
            print("migplane: %s: %s" % (host, err), file=sys.stderr)
            continue
        for m in found:
            everything.append(dict(m, agent=host))
            percent = "%.0f%%" % _percent(m.get("progress")) if m.get("progress") else "-"
            rows.append((m["id"], m["instance"], "%s -> %s" % (m["source"],
                                                               m["destination"]),
                         m["status"], m.get("step") or "-", percent,
                         output.duration(time.time() - m["created"]) + " ago"))
    if args.json:
        output.emit_json({"migrations": everything, "errors": failures})
    elif rows:
        output.table(rows, ("ID", "DOMAIN", "FROM -> TO", "STATUS", "STEP", "DONE",
                            "STARTED"))
    else:
        print("No migrations%s." % (" on the agents that answered" if failures else ""))
    if failures:
        print("migplane: %d of %d agents did not answer (%s): the list is incomplete"
              % (len(failures), len(hosts), ", ".join(f["agent"] for f in failures)),
              file=sys.stderr)
    return errors.AGENT if failures else errors.OK


def _percent(progress):
    """Percent done of a progress record, by the one rule (JobProgress.percent)."""
    return driver_mod.JobProgress.from_dict(progress).percent


def run_show(args, directory):
    host, _, record = find(args, directory)
    if args.json:
        output.emit_json(dict(record, agent=host))
        return errors.OK
    migrate.summary(record)
    print("  %-17s %s" % ("step", record.get("step") or "-"))
    print("\nEvents:")
    for event in record.get("events", []):
        print("  %6.1f s  %s" % (event["elapsed"], migrate.describe(event)))
    return errors.OK


def _act(args, directory, path, verb):
    host, client, record = find(args, directory)
    answer = client.post("/v1/migrations/%s/%s" % (record["id"], path))
    if args.json:
        output.emit_json(dict(answer, agent=host))
    else:
        print("%s requested for migration %s of %s (on %s); follow it with: migplane show "
              "%s" % (verb, record["id"], record["instance"], host, record["id"]))
    return errors.OK


def run_abort(args, directory):
    return _act(args, directory, "abort", "Abort")


def run_force(args, directory):
    return _act(args, directory, "force-complete", "Force-complete")


def run_resume(args, directory):
    return _act(args, directory, "resume", "Resume")


def run_release(args, directory):
    host, client, record = find(args, directory)
    answer = client.post("/v1/migrations/%s/release" % record["id"])
    if args.json:
        output.emit_json(dict(answer, agent=host))
    else:
        print("Released: %s may migrate again (the split of migration %s, on %s)"
              % (record["instance"], record["id"], host))
    return errors.OK
