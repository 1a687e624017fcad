"""``migplane lab ...``: the multi-host lab's own CLI, under one command."""

import argparse

from migplane.cli import errors


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "lab", help="build, inspect or tear down the multi-host test lab",
        description="Runs migplane.lab.cli with the remaining arguments, e.g. "
                    "'migplane lab up', 'migplane lab status', 'migplane lab down'. "
                    "Needs root. 'migplane lab -- --help' shows the lab's own help.",
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=True)
    p.add_argument("lab_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments of the lab CLI (up, down, status, ...)")
    p.set_defaults(run=run, needs_agents=False)
    return p


def run(args, directory):
    try:
        from migplane.lab import cli as lab_cli
    except ImportError as err:
        raise errors.CliError("the lab is not available: %s" % err, code=errors.USAGE)
    argv = list(args.lab_args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    result = lab_cli.main(argv)
    return result if isinstance(result, int) else errors.OK
