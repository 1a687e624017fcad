"""Subcommands that hand their arguments to another tool's own CLI.

``migplane lab ...`` runs ``migplane.lab.cli`` and ``migplane bench ...`` runs
``migplane.bench.main``: one command for operators, while each tool keeps its
own parser (and stays runnable as ``python -m``).
"""

import argparse
import importlib

from migplane.cli import errors


def add_parser(subparsers, name, module, summary, description):
    p = subparsers.add_parser(
        name, help=summary,
        description="%s '%s -- --help' shows its own options." % (description, name),
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments of %s" % module)
    p.set_defaults(run=lambda args, directory: _run(module, args.tool_args),
                   needs_agents=False)
    return p


def _run(module, argv):
    try:
        tool = importlib.import_module(module)
    except ImportError as err:
        raise errors.CliError("%s is not available: %s" % (module, err), code=errors.USAGE)
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    result = tool.main(argv)
    return result if isinstance(result, int) else errors.OK
