"""Subcommands that hand their arguments to another tool's own CLI.

``migplane lab ...`` runs ``migplane.lab.cli`` and ``migplane bench ...`` runs
``migplane.bench.main``: one command for operators, while each tool keeps its
own parser (and stays runnable as ``python -m``). Every word after the
command's name is the tool's, options included (``migplane bench --quick``);
:func:`migplane.cli.main.split_passthrough` sees to that, and ``--help`` after
the name is the tool's own help.
"""

import argparse
import importlib

from migplane.cli import errors

#: name -> (module, one-line summary)
TOOLS = {
    "lab": ("migplane.lab.cli", "build, inspect or tear down the multi-host test lab (root)"),
    "bench": ("migplane.bench.main", "benchmark the split plane against bare virsh (root)"),
}


def add_parser(subparsers, name):
    module, summary = TOOLS[name]
    p = subparsers.add_parser(
        name, help=summary, add_help=False,
        description="%s: every argument goes to %s ('migplane %s --help' shows them)."
                    % (summary, module, name))
    p.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments of %s" % module)
    p.set_defaults(run=lambda args, directory: run(module, args.tool_args),
                   needs_agents=False)
    return p


def run(module, argv):
    try:
        tool = importlib.import_module(module)
    except ImportError as err:
        raise errors.CliError("%s is not available: %s" % (module, err), code=errors.USAGE)
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        result = tool.main(argv)
    except SystemExit as done:   # the tool's argparse: --help, usage errors
        return done.code if isinstance(done.code, int) else errors.USAGE
    return result if isinstance(result, int) else errors.OK
