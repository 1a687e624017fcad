"""``migplane``: live-migrate guests over the migration plane, through the agents.

Every command except ``lab``, ``bench``, ``demo`` and ``certs`` talks to the
hosts' ``migplane-agent``s; which agent serves which HOST is set with
``--agent NAME=URL`` or a CLI file (see :mod:`migplane.cli.agents`). The
options naming agents are accepted before and after the command, as
``openstack`` and ``virsh`` users expect.
"""

import argparse
import logging
import sys
import traceback

from migplane.agent import errors as agent_errors
from migplane.cli import agents
from migplane.cli import argtypes
from migplane.cli import demo
from migplane.cli import errors
from migplane.cli import examples
from migplane.cli.commands import certs
from migplane.cli.commands import check
from migplane.cli.commands import dashboard
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
The options of the "agents" group go before or after COMMAND.
"""

TIMEOUT_S = 60
#: Options every agent-facing command takes, before or after its name:
#: ``(flags, argparse keywords, default)``.
COMMON = (
    (("--config",), dict(metavar="FILE", help="CLI file with [agents] and [auth]"), None),
    (("--agent",), dict(action="append", metavar="NAME=URL",
                        help="agent URL of host NAME, e.g. host-a=https://192.0.2.11:7480"),
     None),
    (("--token",), dict(help="token for the agents (prefer $MIGPLANE_TOKEN)"), None),
    (("--token-file",), dict(metavar="FILE", help="file holding the token"), None),
    (("--ca-file",), dict(metavar="FILE", help="CA bundle to verify agents' HTTPS"), None),
    (("--timeout",), dict(type=argtypes.seconds, metavar="SECONDS",
                          help="seconds to wait for one agent answer (default %d)"
                               % TIMEOUT_S), float(TIMEOUT_S)),
    (("--json",), dict(action="store_true", help="print JSON instead of text"), False),
    (("-v", "--verbose"), dict(action="store_true", help="log HTTP requests"), False),
)
_TOP = "top_"


def _dest(flags):
    return flags[-1].lstrip("-").replace("-", "_")


def common_options(top=False):
    """The agents group; on the top-level parser (``top``) it stores under other names,
    so that what is given after the command does not hide what was given before."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("agents (before or after COMMAND)")
    for flags, keywords, _ in COMMON:
        keywords = dict(keywords, dest=(_TOP if top else "") + _dest(flags),
                        default=argparse.SUPPRESS)
        if keywords.get("action") != "store_true":
            keywords.setdefault("metavar", _dest(flags).upper())
        g.add_argument(*flags, **keywords)
    return p


def merge_common(args):
    """Fill the common options of ``args`` from both places, the command's side winning
    (``--agent`` lists are joined)."""
    for flags, keywords, default in COMMON:
        dest = _dest(flags)
        before = vars(args).pop(_TOP + dest, None)
        after = getattr(args, dest, None)
        if keywords.get("action") == "append":
            value = (before or []) + (after or []) or default
        elif hasattr(args, dest):
            value = after
        else:
            value = default if before is None else before
        setattr(args, dest, value)
    return args


def build_parser():
    parser = argparse.ArgumentParser(
        prog="migplane", description=DESCRIPTION, epilog=errors.EPILOG, allow_abbrev=False,
        parents=[common_options(top=True)],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true",
                        help="print the versions of migplane, its libvirt driver and "
                             "QEMU (as this machine's libvirt daemon reports them), then "
                             "exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [common_options()]
    migrate.add_parser(sub, parents)
    evacuate.add_parser(sub, parents)
    explain.add_parser(sub, parents)
    check.add_parser(sub, parents)
    manage.add_parsers(sub, parents)
    certs.add_parser(sub, parents)
    dashboard.add_parser(sub, parents)
    for name in passthrough.TOOLS:
        passthrough.add_parser(sub, name)
    demo.add_parser(sub, parents)
    for name, subparser in sub.choices.items():
        subparser.epilog = examples.epilog(name, subparser.epilog or "")
    return parser


def split_passthrough(argv):
    """``(migplane's own arguments, the tool's arguments)`` of ``argv``.

    Everything after ``lab`` or ``bench`` belongs to that tool, options
    included (``migplane bench --quick --out /tmp/b``): argparse alone would
    take ``--quick`` as one of ours.
    """
    takes_value = {flag for flags, keywords, _ in COMMON if "action" not in keywords
                   or keywords["action"] == "append" for flag in flags}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            break
        if not word.startswith("-"):
            if word in passthrough.TOOLS:
                return argv[:i + 1], argv[i + 1:]
            break
        i += 2 if word in takes_value else 1
    return argv, None


def _fail(message, code):
    print("migplane: %s" % message, file=sys.stderr)
    return code


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    own, tool_args = split_passthrough(argv)
    parser = build_parser()
    args = merge_common(parser.parse_args(own))
    if args.version:
        from migplane import version
        print(version.report("migplane", version.local_conf(), "libvirt"))
        return errors.OK
    if args.command is None:
        parser.error("a COMMAND is required (see migplane --help)")
    if tool_args is not None:
        args.tool_args = tool_args
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _fail("interrupted", errors.INTERRUPTED)
    except Exception as err:  # the last resort: never a traceback for the user
        if args.verbose:
            traceback.print_exc()
        return _fail("unexpected error %s: %s%s" % (
            type(err).__name__, err, "" if args.verbose else " (-v shows where)"),
            errors.FAILED)


def _run(args):
    try:
        directory = agents.load(args) if getattr(args, "needs_agents", True) else None
        return args.run(args, directory)
    except errors.CliError as err:
        return _fail(str(err), err.code)
    except agent_errors.AgentUnreachable as err:
        return _fail(str(err), errors.AGENT)
    except agent_errors.Unauthorized as err:
        return _fail("%s (check --token / $MIGPLANE_TOKEN)" % err, errors.AGENT)
    except agent_errors.Forbidden as err:
        return _fail("%s (the token was accepted, but not for this request)" % err,
                     errors.AGENT)
    except (agent_errors.NotFound, exception.InstanceNotFound,
            exception.NoActiveMigration) as err:
        return _fail(str(err), errors.NOT_FOUND)
    except agent_errors.BadRequest as err:
        return _fail(str(err), errors.USAGE)
    except agent_errors.AgentError as err:
        return _fail(str(err), errors.AGENT)
    except exception.MigplaneError as err:  # the agents refused: a plan, a check...
        return _fail(str(err), errors.FAILED)


if __name__ == "__main__":
    sys.exit(main())
