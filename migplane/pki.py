"""A CA and per-host certificates, issued with the ``openssl`` command line.

The one implementation behind ``migplane certs`` (an operator's CA for the
agents' mutual TLS), the lab's throw-away CAs (agents and QEMU native TLS,
:mod:`migplane.lab.tls`) and the tests.

An agent's certificate serves HTTPS and, as a client certificate, calls its
peers, so it carries both extended key usages (``serverAuth, clientAuth``)
with ``digitalSignature, keyEncipherment``. Its CN and first subjectAltName
DNS entry are the host name (its identity in the peers' ``[agent] peers``),
followed by the addresses it is reached at: the management address peers
dial and the migration address. Keys are P-256 EC keys, mode 0600, written
under a temporary name and renamed, so a reader (an agent reloading) sees
the old file or the new one, never half of one.
"""

import ipaddress
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

from migplane.core import exception

LEAF_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
#: Extended key usages of an agent's certificate: it serves and it calls.
AGENT_EKU = "serverAuth, clientAuth"
CA_KEY, CA_CERT = "ca-key.pem", "ca-cert.pem"
AGENT_KEY, AGENT_CERT = "agent-key.pem", "agent-cert.pem"


class PKIError(exception.MigplaneError):
    msg_fmt = "Cannot issue %(what)s: %(reason)s"


def _openssl(what, *args):
    argv = ["openssl", *[str(a) for a in args]]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PKIError(what=what, reason="openssl: %s" % err)
    if done.returncode != 0:
        raise PKIError(what=what, reason="openssl %s failed: %s" % (
            args[0], (done.stderr or done.stdout).strip()[-500:]))
    return done


def new_key(path):
    """A P-256 private key at ``path`` (0600): as good as RSA here, and ~100x faster
    to generate."""
    path = Path(path)
    _openssl(path, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    path.chmod(0o600)
    return path


def san(names):
    """subjectAltName value for a list of DNS names and IP addresses."""
    parts = []
    for n in names:
        try:
            parts.append(f"IP:{ipaddress.ip_address(n)}")
        except ValueError:
            parts.append(f"DNS:{n}")
    return ", ".join(parts)


def serial():
    """A random positive serial number (RFC 5280: at most 20 octets)."""
    return secrets.randbits(63) | 1 << 62


def ensure_ca(ca_dir, subject, days=3650, organization="migplane"):
    """``(key, cert)`` of the CA in ``ca_dir``: created once (CN ``subject``), reused
    after, so that host certificates issued later are trusted by the same file."""
    ca_dir = Path(ca_dir)
    ca_dir.mkdir(parents=True, exist_ok=True)
    key, cert = ca_dir / CA_KEY, ca_dir / CA_CERT
    if key.exists() and cert.exists():
        return key, cert
    new_key(key)
    _openssl(cert, "req", "-new", "-x509", "-key", key, "-out", cert, "-days", days,
             "-subj", "/O=%s/CN=%s" % (organization, subject),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def issue(ca_key, ca_cert, out_dir, stem, cn, eku, names, serial_number=None, days=365,
          organization="migplane"):
    """``(cert, key)``: ``<stem>-cert.pem`` and ``<stem>-key.pem`` in ``out_dir``, for
    ``cn`` with ``names`` (DNS names and addresses) as its subjectAltName."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key, cert = out_dir / f"{stem}-key.pem", out_dir / f"{stem}-cert.pem"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".issue-") as work:
        work = Path(work)
        new_key(work / "key.pem")
        _openssl(cert, "req", "-new", "-key", work / "key.pem", "-out", work / "csr",
                 "-subj", "/O=%s/CN=%s" % (organization, cn))
        ext_text = LEAF_EXT.format(eku=eku)
        if names:
            ext_text += "subjectAltName = %s\n" % san(names)
        (work / "ext").write_text(ext_text)
        _openssl(cert, "x509", "-req", "-in", work / "csr", "-CA", ca_cert,
                 "-CAkey", ca_key, "-set_serial",
                 serial() if serial_number is None else serial_number,
                 "-days", days, "-sha256", "-extfile", work / "ext",
                 "-out", work / "cert.pem")
        os.replace(work / "key.pem", key)
        os.replace(work / "cert.pem", cert)
    return cert, key


def issue_agent(ca_key, ca_cert, out_dir, hostname, addresses, serial_number=None,
                days=365, organization="migplane"):
    """``(cert, key)`` of host ``hostname``'s agent (``agent-cert.pem``,
    ``agent-key.pem``): server and client, for its name and ``addresses``."""
    return issue(ca_key, ca_cert, out_dir, "agent", hostname, AGENT_EKU,
                 [hostname, *addresses], serial_number, days, organization)


def issue_operator(ca_key, ca_cert, out_dir, name, serial_number=None, days=365,
                   organization="migplane"):
    """``(cert, key)`` of operator ``name`` (``operator-cert.pem``,
    ``operator-key.pem``): a client certificate only, for ``[agent] operator_names``
    (a CLI, a Prometheus scraping the agents)."""
    return issue(ca_key, ca_cert, out_dir, "operator", name, "clientAuth", [name],
                 serial_number, days, organization)
