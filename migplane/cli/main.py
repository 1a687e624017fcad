"""``migplane``: live-migrate guests over the migration plane, through the agents.

Every command except ``lab`` talks to the hosts' ``migplane-agent``s; which
agent serves which HOST is set with ``--agent NAME=URL`` or a CLI file (see
:mod:`migplane.cli.agents`).
"""

import argparse
import logging
import sys

from migplane.agent import errors as agent_errors
from migplane.cli import agents
from migplane.cli import demo
from migplane.cli import errors
from migplane.cli.commands import check
from migplane.cli.commands import evacuate
from migplane.cli.commands import explain
from migplane.cli.commands import manage
from migplane.cli.commands import migrate
from migplane.cli.commands import passthrough
from migplane.core import exception

DESCRIPTION = """\
Live-migrate QEMU/KVM guests over a dedicated migration network plane.

Hosts are named as in the agent map: --agent host-a=https://192.0.2.11:7480
(repeatable) or an [agents] section in the CLI file (--config, else
$MIGPLANE_CLI_CONFIG, ~/.config/migplane/cli.conf, /etc/migplane/cli.conf).
The token comes from --token, $MIGPLANE_TOKEN, --token-file or [auth] token
in the file; --ca-file (or [auth] ca_file) verifies the agents' HTTPS.
"""


def common_options():
    """Options every agent-facing subcommand takes (after its name)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("agents")
    g.add_argument("--config", metavar="FILE", help="CLI file with [agents] and [auth]")
    g.add_argument("--agent", action="append", metavar="NAME=URL",
                   help="agent URL of host NAME, e.g. host-a=https://192.0.2.11:7480")
    g.add_argument("--token", help="token for the agents (prefer $MIGPLANE_TOKEN)")
    g.add_argument("--token-file", metavar="FILE", help="file holding the token")
    g.add_argument("--ca-file", metavar="FILE", help="CA bundle to verify agents' HTTPS")
    g.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds to wait for one agent answer (default 60)")
    g.add_argument("--json", action="store_true", help="print JSON instead of text")
    g.add_argument("-v", "--verbose", action="store_true", help="log HTTP requests")
    return p


def build_parser():
    parser = argparse.ArgumentParser(
        prog="migplane", description=DESCRIPTION, epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = [common_options()]
    migrate.add_parser(sub, parents)
    evacuate.add_parser(sub, parents)
    explain.add_parser(sub, parents)
    check.add_parser(sub, parents)
    manage.add_parsers(sub, parents)
    passthrough.add_parser(
        sub, "lab", "migplane.lab.cli", "build, inspect or tear down the multi-host test lab",
        "Build, inspect or tear down the multi-host lab (needs root), e.g. "
        "'migplane lab up --name demo', 'migplane lab status', 'migplane lab down'.")
    passthrough.add_parser(
        sub, "bench", "migplane.bench.main", "benchmark the split plane against bare virsh",
        "Run the benchmarks on a lab (needs root) and write results.json, REPORT.md "
        "and plots, e.g. 'migplane bench --quick --out /tmp/bench'.")
    demo.add_parser(sub, parents)
    return parser


def _fail(message, code):
    print("migplane: %s" % message, file=sys.stderr)
    return code


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False)
                        else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        directory = (agents.load(args) if getattr(args, "needs_agents", True)
                     else None)
        return args.run(args, directory)
    except errors.CliError as err:
        return _fail(str(err), err.code)
    except agent_errors.AgentUnreachable as err:
        return _fail(str(err), errors.AGENT)
    except (agent_errors.Unauthorized, agent_errors.Forbidden) as err:
        return _fail("%s (check --token / $MIGPLANE_TOKEN)" % err, errors.AGENT)
    except (agent_errors.NotFound, exception.InstanceNotFound,
            exception.NoActiveMigration) as err:
        return _fail(str(err), errors.NOT_FOUND)
    except agent_errors.BadRequest as err:
        return _fail(str(err), errors.USAGE)
    except agent_errors.AgentError as err:
        return _fail(str(err), errors.AGENT)
    except exception.MigplaneError as err:  # the agents refused: a plan, a check...
        return _fail(str(err), errors.FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", errors.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
