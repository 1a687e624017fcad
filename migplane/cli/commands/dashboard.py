"""``migplane dashboard``: serve a live page of the agents' migrations and evacuations.

The page is served on this workstation (127.0.0.1 by default) and talks to
no agent itself: this command asks the agents, with the CLI's credentials,
and hands the page what they said (see :mod:`migplane.cli.dashboard`).
"""

import argparse
import sys

from migplane.cli import argtypes
from migplane.cli import errors

DEFAULT_PORT = 7490


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "dashboard", parents=parents, help="serve a live page of every agent's "
                                           "migrations and evacuations",
        description="Serve a page showing every configured agent's migrations (guest, "
                    "from -> to, strategy, progress, throughput on each network plane, "
                    "downtime, escalations) and evacuations (one lane per guest), "
                    "updated live, until interrupted. The page is served on a local "
                    "address; this command asks the agents with the CLI's token or "
                    "certificate.", epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="address to serve the page on (default 127.0.0.1: this "
                        "workstation only; the page shows what the token can read)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="PORT",
                   help="port to serve the page on (default %d; 0: any free port)"
                        % DEFAULT_PORT)
    p.add_argument("--interval", type=argtypes.positive_number, default=1.0,
                   metavar="SECONDS", help="how often the agents are asked (default 1)")
    p.add_argument("--on", metavar="HOST,...",
                   help="only these hosts' agents (default: every configured agent)")
    p.set_defaults(run=run)
    return p


def _wildcard(text):
    """Whether the page would listen on every address, however it is spelt
    (``0.0.0.0``, ``::``, ``0x0``, ``::ffff:0.0.0.0``): the kernel's reading."""
    from migplane.agent import safety

    return text.strip() == "*" or any(
        ip.is_unspecified for ip in safety.bind_addresses(text.strip("[]")))


def run(args, directory):
    from migplane.cli import dashboard

    hosts = [h.strip() for h in (args.on or "").split(",") if h.strip()] or \
        sorted(directory.agents)
    if not hosts:
        raise errors.CliError("no agents configured: use --agent NAME=URL or an [agents] "
                              "section in the CLI file")
    for host in hosts:
        directory.url(host, "--on")
    if not 0 <= args.port <= 65535:
        raise errors.CliError("--port %d: want 0 to 65535" % args.port)
    if _wildcard(args.bind):
        raise errors.CliError("--bind %s: a wildcard would show what the token reads to "
                              "every network of this machine; give one address (default "
                              "127.0.0.1)" % args.bind)
    monitor = dashboard.Monitor(directory, hosts, interval=args.interval)
    try:
        server = dashboard.make_server(monitor, args.bind, args.port)
    except OSError as err:
        raise errors.CliError("cannot serve the dashboard on %s port %d: %s"
                              % (args.bind, args.port, err), code=errors.FAILED)
    monitor.start()
    print("Serving the dashboard of %s on %s (Ctrl-C stops)" % (", ".join(hosts),
                                                               server.url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
    finally:
        server.server_close()
        monitor.stop()
    return errors.OK
