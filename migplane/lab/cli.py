"""`migplane lab up|down|status|list`: the lab from a shell (prints JSON)."""

import argparse
import json
import sys

from .daemon import LIBVIRTD_LISTEN
from .errors import LabError
from .lab import Lab
from .plan import check_name

EXAMPLES = """\
examples:
  migplane lab up --name demo --hosts 2
  migplane lab status --name demo
  migplane lab list
  migplane lab down --name demo
"""


def _name(text):
    try:
        return check_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def parser():
    p = argparse.ArgumentParser(prog="migplane lab",
                                description="Multi-host live-migration lab on this machine "
                                            "(needs root).", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create a lab")
    up.add_argument("--name", default="mp", type=_name)
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--base-dir")
    up.add_argument("--tls", action="store_true", help="also issue TLS certificates")
    up.add_argument("--libvirtd-listen", choices=LIBVIRTD_LISTEN, default="management",
                    help="where each libvirtd listens for TCP: its management address "
                         "(default) or every address (tunnelled migrations to an "
                         "inbound address need that)")
    for cmd, text in (("down", "remove a lab (works after a crash)"),
                      ("status", "print a lab's status")):
        s = sub.add_parser(cmd, help=text)
        s.add_argument("--name", default="mp", type=_name)
    sub.add_parser("list", help="labs with a state file")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.cmd == "up":
            lab = Lab(args.name, hosts=args.hosts, base_dir=args.base_dir,
                      libvirtd_listen=args.libvirtd_listen).up()
            if args.tls:
                lab.setup_tls()
            out = lab.status()
        elif args.cmd == "down":
            lab = Lab.load(args.name) if Lab.exists(args.name) else Lab(args.name)
            lab.down()
            out = {"name": args.name, "phase": "down"}
        elif args.cmd == "status":
            if not Lab.exists(args.name):
                out = {"name": args.name, "phase": "absent", "healthy": False}
            else:
                out = Lab.load(args.name).status()
        else:
            out = {"labs": Lab.names()}
    except (LabError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1 if isinstance(exc, LabError) else 2   # ValueError: a bad argument
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
