"""A throw-away CA and per-host certificates: QEMU native TLS, and the agents' mTLS.

For QEMU, files land where libvirt's migrate_tls_x509_cert_dir points (the
host's private pki dir) under the names QEMU expects: ca-cert.pem,
server-cert.pem, server-key.pem, client-cert.pem, client-key.pem. The key
usages are the ones QEMU's x509 credential checks insist on.

For the agents, :func:`issue_agent` gives each host ONE certificate used both
to serve HTTPS and, as a client certificate, to call its peers: CN and a
subjectAltName DNS entry are the host name (its identity in the peers' ``[agent]
peers``), plus the addresses peers dial. A production CA issues the same
(``openssl req``/``x509 -req`` as in :func:`_issue`, or any CA), one per host.
"""

import ipaddress
from pathlib import Path

from .proc import run

LEAF_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args):
    return run(["openssl", *args], timeout=60)


def _key(path):
    # P-256: as good as RSA here and ~100x faster to generate
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    Path(path).chmod(0o600)


def san(names):
    """subjectAltName value for a list of DNS names and IP addresses."""
    parts = []
    for n in names:
        try:
            parts.append(f"IP:{ipaddress.ip_address(n)}")
        except ValueError:
            parts.append(f"DNS:{n}")
    return ", ".join(parts)


def ensure_ca(ca_dir, lab_name):
    """Create the lab CA once; later calls reuse it."""
    ca_dir = Path(ca_dir)
    ca_dir.mkdir(parents=True, exist_ok=True)
    key, cert = ca_dir / "ca-key.pem", ca_dir / "ca-cert.pem"
    if key.exists() and cert.exists():
        return key, cert
    _key(key)
    _openssl("req", "-new", "-x509", "-key", key, "-out", cert, "-days", "30",
             "-subj", f"/O=migplane lab/CN={lab_name} test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def _issue(ca_key, ca_cert, out_dir, stem, cn, eku, names, serial):
    key, cert = out_dir / f"{stem}-key.pem", out_dir / f"{stem}-cert.pem"
    csr = out_dir / f"{stem}.csr"
    _key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/O=migplane lab/CN={cn}")
    ext_text = LEAF_EXT.format(eku=eku)
    if names:
        ext_text += f"subjectAltName = {san(names)}\n"
    ext = out_dir / f"{stem}.ext"
    ext.write_text(ext_text)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
             "-set_serial", str(serial), "-days", "30", "-sha256",
             "-extfile", ext, "-out", cert)
    csr.unlink()
    ext.unlink()


def issue_agent(ca_key, ca_cert, out_dir, hostname, addresses, serial):
    """``agent-cert.pem``/``agent-key.pem`` for host ``hostname``'s agent; returns both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _issue(ca_key, ca_cert, out_dir, "agent", hostname, "serverAuth, clientAuth",
           [hostname, *addresses], serial)
    return out_dir / "agent-cert.pem", out_dir / "agent-key.pem"


def issue_host(ca_key, ca_cert, pki_dir, hostname, names, serial_base):
    """Server cert (names as SANs) and client cert (CN=hostname) for one host."""
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    (pki_dir / "ca-cert.pem").write_bytes(Path(ca_cert).read_bytes())
    _issue(ca_key, ca_cert, pki_dir, "server", names[0] if names else hostname,
           "serverAuth", names, serial_base)
    _issue(ca_key, ca_cert, pki_dir, "client", hostname, "clientAuth", [hostname],
           serial_base + 1)
