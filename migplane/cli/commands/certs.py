"""``migplane certs``: a CA and the agents' certificates, without typing openssl.

Each host gets one certificate that its agent serves HTTPS with and presents
to its peers (mutual TLS): CN and the first subjectAltName are the host name
(its identity in the other agents' ``[agent] peers``), then the addresses
given: the management address the peers and the CLI dial, and the migration
address (``my_live_migration_ip``), so that a peer endpoint on the migration
plane can be verified with the same certificate. The CA is created in
``OUT/ca`` on the first run and reused after, so running the command again
renews certificates (or adds hosts) under the same CA; ``systemctl reload
migplane-agent`` then serves the new one without a restart. ``--operator
NAME`` issues a client certificate an operator (or a scraper) authenticates
with instead of a token, accepted by agents listing NAME in ``[agent]
operator_names``.
"""

import argparse
import datetime
import json
import shutil
from pathlib import Path

from migplane import pki
from migplane.agent import tls
from migplane.cli import argtypes
from migplane.cli import errors
from migplane.core import address
from migplane.core import exception

#: Where the README's configuration expects a host's files.
HOST_PKI_DIR = "/etc/migplane/pki"


def host_spec(text):
    """``NAME=ADDRESS[,ADDRESS...]``: ``(name, [addresses])``, a usage error naming
    the bad part."""
    name, sep, rest = text.partition("=")
    try:
        parsed = address.parse_host(name, field="host name", allow_port=False)
        if parsed.is_ip:
            raise argparse.ArgumentTypeError(
                "%r: the host name comes first (NAME=ADDRESS,...), not an address" % text)
        addresses = [a.strip() for a in rest.split(",") if a.strip()] if sep else []
        for value in addresses:
            address.parse_host(value, field="address of %s" % name, allow_port=False)
    except exception.InvalidAddress as err:
        raise argparse.ArgumentTypeError(str(err))
    if not addresses:
        raise argparse.ArgumentTypeError(
            "%r names no address: want NAME=ADDRESS[,ADDRESS...], e.g. "
            "host-a=192.0.2.11,198.51.100.11" % text)
    return name, addresses


def operator_name(text):
    """An operator's name: a DNS name (its certificate's subjectAltName)."""
    try:
        parsed = address.parse_host(text, field="operator name", allow_port=False)
    except exception.InvalidAddress as err:
        raise argparse.ArgumentTypeError(str(err))
    if parsed.is_ip:
        raise argparse.ArgumentTypeError("operator %r: want a name, not an address" % text)
    return text


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "certs", parents=parents,
        help="issue a CA and the agents' certificates (mutual TLS)",
        description=__doc__, epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hosts", nargs="*", type=host_spec, metavar="NAME=ADDRESS[,ADDRESS...]",
                   help="a host's name and the addresses it is reached at: management "
                        "address first, then the migration address")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory of the CA (DIR/ca) and of each host's files "
                        "(DIR/NAME: agent-cert.pem, agent-key.pem, ca-cert.pem)")
    p.add_argument("--operator", action="append", default=[], type=operator_name,
                   metavar="NAME",
                   help="also issue operator NAME's client certificate (DIR/operators/"
                        "NAME: operator-cert.pem, operator-key.pem); repeatable")
    p.add_argument("--days", type=argtypes.at_least(1), default=365,
                   help="days the host certificates are valid (default %(default)s)")
    p.add_argument("--ca-days", type=argtypes.at_least(1), default=3650,
                   help="days a new CA is valid (default %(default)s; an existing CA "
                        "is reused as it is)")
    p.add_argument("--ca-name", default="migplane agents CA",
                   help="the CN of a new CA (default %(default)r)")
    p.set_defaults(run=run, needs_agents=False)
    return p


def _date(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC")


def run(args, directory):
    if not args.hosts and not args.operator:
        raise errors.CliError("name at least one host (NAME=ADDRESS,...) or --operator",
                              code=errors.USAGE)
    names = [name for name, _ in args.hosts] + args.operator
    taken = sorted(set(names) & {"ca", "operators"})
    if taken:
        raise errors.CliError("host %r: OUT/%s holds the CA's or the operators' files"
                              % (taken[0], taken[0]), code=errors.USAGE)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise errors.CliError("%s is given twice: a host and an operator need names of "
                              "their own" % twice[0], code=errors.USAGE)
    out = Path(args.out)
    ca_dir = out / "ca"
    created = not (ca_dir / pki.CA_CERT).exists()
    ca_key, ca_cert = pki.ensure_ca(ca_dir, args.ca_name, days=args.ca_days)
    ca_dir.chmod(0o700)
    issued = []
    for name, addresses in args.hosts:
        host_dir = out / name
        cert, key = pki.issue_agent(ca_key, ca_cert, host_dir, name, addresses,
                                    days=args.days)
        host_dir.chmod(0o700)
        shutil.copyfile(ca_cert, host_dir / pki.CA_CERT)
        info = tls.read_certificate(cert)
        issued.append({"host": name, "names": [name, *addresses], "cert_file": str(cert),
                       "key_file": str(key), "ca_file": str(host_dir / pki.CA_CERT),
                       "serial": "%x" % info.serial, "not_after": _date(info.not_after)})
    operators = []
    for name in args.operator:
        cert, key = pki.issue_operator(ca_key, ca_cert, out / "operators" / name, name,
                                       days=args.days)
        cert.parent.chmod(0o700)
        info = tls.read_certificate(cert)
        operators.append({"operator": name, "cert_file": str(cert), "key_file": str(key),
                          "serial": "%x" % info.serial,
                          "not_after": _date(info.not_after)})
    result = {"ca": {"cert_file": str(ca_cert), "key_file": str(ca_key),
                     "created": created,
                     "not_after": _date(tls.certificate_not_after(ca_cert))},
              "hosts": issued, "operators": operators}
    if args.json:
        print(json.dumps(result, indent=2))
        return errors.OK
    print("CA %s (%s, valid until %s); its key %s never leaves this machine"
          % (ca_cert, "new" if created else "reused", result["ca"]["not_after"], ca_key))
    for host in issued:
        print("%s: %s, serial %s, valid until %s, for %s" % (
            host["host"], Path(host["cert_file"]).parent, host["serial"],
            host["not_after"], " ".join(host["names"])))
    for operator in operators:
        print("operator %s: %s, serial %s, valid until %s ([agent] operator_names = %s)"
              % (operator["operator"], Path(operator["cert_file"]).parent,
                 operator["serial"], operator["not_after"], operator["operator"]))
    if not issued:
        return errors.OK
    print("\nCopy %s/NAME/ to %s/ on host NAME, with in its agent.conf:\n"
          "  [agent]\n  cert_file = %s/agent-cert.pem\n  key_file = %s/agent-key.pem\n"
          "  ca_file = %s/ca-cert.pem\nthen: systemctl reload migplane-agent"
          % (out, HOST_PKI_DIR, HOST_PKI_DIR, HOST_PKI_DIR, HOST_PKI_DIR))
    return errors.OK
