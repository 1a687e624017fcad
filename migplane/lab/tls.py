"""A throw-away CA and per-host certificates: QEMU native TLS, and the agents' mTLS.

Issued by :mod:`migplane.pki` (what ``migplane certs`` issues in production),
valid for 30 days. For QEMU, files land where libvirt's
migrate_tls_x509_cert_dir points (the host's private pki dir) under the names
QEMU expects: ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
client-key.pem. The key usages are the ones QEMU's x509 credential checks
insist on.
"""

from pathlib import Path

from migplane import pki

DAYS = 30
ORGANIZATION = "migplane lab"


def ensure_ca(ca_dir, lab_name):
    """Create the lab CA once; later calls reuse it."""
    return pki.ensure_ca(ca_dir, f"{lab_name} test CA", days=DAYS,
                         organization=ORGANIZATION)


def issue_agent(ca_key, ca_cert, out_dir, hostname, addresses, serial=None):
    """``agent-cert.pem``/``agent-key.pem`` for host ``hostname``'s agent; returns both."""
    return pki.issue_agent(ca_key, ca_cert, out_dir, hostname, addresses, serial,
                           days=DAYS, organization=ORGANIZATION)


def issue_host(ca_key, ca_cert, pki_dir, hostname, names, serial_base):
    """Server cert (names as SANs) and client cert (CN=hostname) for one host."""
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    (pki_dir / "ca-cert.pem").write_bytes(Path(ca_cert).read_bytes())
    pki.issue(ca_key, ca_cert, pki_dir, "server", names[0] if names else hostname,
              "serverAuth", names, serial_base, DAYS, ORGANIZATION)
    pki.issue(ca_key, ca_cert, pki_dir, "client", hostname, "clientAuth", [hostname],
              serial_base + 1, DAYS, ORGANIZATION)
