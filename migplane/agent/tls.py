"""TLS of the agent: its own certificate, the peers' CA, and who a peer is.

Every host has its own certificate (``[agent] cert_file``/``key_file``),
signed by a CA the other agents trust (``[agent] ca_file``). It serves HTTPS
with it and presents it, as a client certificate, when it calls a peer: a
peer's identity is the DNS name in its certificate's subjectAltName that is
one of ``[agent] peers``. Files are checked when the agent starts, so a
missing, swapped or mismatched file is a configuration error naming it.

The agent reads the files again on SIGHUP (see :mod:`migplane.agent.main`)
and warns, :data:`EXPIRY_WARNING_DAYS` ahead, of its certificate's end:
:func:`certificate_not_after` reads it with the standard library only.
"""

import base64
import binascii
import calendar
import collections
import os
import ssl
import stat
import time

from migplane.core import exception

GROUP = "agent"
#: The agent warns in its log this many days before its certificate expires.
EXPIRY_WARNING_DAYS = 30
#: A certificate file larger than this is not read (a chain of a few certificates
#: is a few kilobytes).
MAX_CERT_FILE_BYTES = 1024 * 1024


def _config_error(option, value, reason):
    return exception.ConfigError(group=GROUP, option=option, value=value, reason=reason)


def check_key_file(path, insecure=False):
    """Refuse a private key that others can read (unless ``insecure``)."""
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as err:
        raise _config_error("key_file", path, "cannot be read: %s" % err.strerror)
    if b"PRIVATE KEY-----" not in head:
        raise _config_error("key_file", path, "holds no PEM private key%s" % (
            ": are cert_file and key_file swapped?" if b"CERTIFICATE-----" in head
            else ""))
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not insecure:
        raise _config_error("key_file", path, "is readable by others (mode %o): "
                            "chmod 600 it" % stat.S_IMODE(mode))


def _load_chain(context, cert_file, key_file):
    for option, path in (("cert_file", cert_file), ("key_file", key_file)):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise _config_error(option, path, "is not a readable file")
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as err:
        raise _config_error("cert_file", cert_file,
                            "cannot be used with key_file %s: %s (are they swapped, or "
                            "not a pair?)" % (key_file, err.reason or err))
    except OSError as err:
        raise _config_error("cert_file", cert_file, "cannot be read: %s" % err)


def _load_ca(context, ca_file):
    if not os.path.isfile(ca_file):
        raise _config_error("ca_file", ca_file, "is not a readable file")
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as err:
        raise _config_error("ca_file", ca_file, "is not a PEM CA bundle: %s" % err)


def decode_certificate(path):
    """The first certificate of PEM file ``path`` as ``getpeercert()`` gives it
    (ConfigError naming the file when it cannot be read)."""
    try:
        # the stdlib's only parser of names and dates (what ssl's tests use); no
        # third-party X.509 library is a dependency of the agent
        return ssl._ssl._test_decode_cert(path)  # noqa: SLF001
    except (AttributeError, ssl.SSLError, OSError, ValueError) as err:
        raise _config_error("cert_file", path, "holds no readable certificate: %s" % err)


def check_own_certificate(cert_file, hostname, ca_file=None, now=None):
    """Refuse to serve with a certificate that peers would refuse, or that names
    another host: expired or not yet valid, without ``hostname`` as a DNS name;
    and a ``ca_file`` holding a leaf certificate (trusting a leaf as a CA)."""
    cert = decode_certificate(cert_file)
    now = time.time() if now is None else now
    not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    not_before = ssl.cert_time_to_seconds(cert["notBefore"])
    if not_after <= now:
        raise _config_error("cert_file", cert_file, "expired on %s: renew it"
                            % cert["notAfter"])
    if not_before > now:
        raise _config_error("cert_file", cert_file, "is not valid before %s"
                            % cert["notBefore"])
    if hostname not in names(cert):
        raise _config_error("cert_file", cert_file, "is for %s, not for this host %r "
                            "([live_migration] hostname): peers would take this agent "
                            "for another host" % (", ".join(names(cert)) or "no DNS name",
                                                  hostname))
    if ca_file:
        store = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(store, ca_file)
        stats = store.cert_store_stats()
        if stats["x509"] > stats["x509_ca"]:
            raise _config_error("ca_file", ca_file, "holds %d certificate(s) that are no "
                                "CA (a host's own certificate?): list only the CA that "
                                "signs the peers" % (stats["x509"] - stats["x509_ca"]))


def server_context(cert_file, key_file, ca_file=None):
    """Serve TLS >= 1.2; ask for (not require) a client certificate signed by ``ca_file``.

    Operators authenticate with a token and need no certificate; a peer's call is
    accepted only with one (see :func:`peer_identity`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert_file, key_file)
    if ca_file:
        _load_ca(context, ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(cert_file, key_file, ca_file):
    """Call peers: verify them against ``ca_file``, present this host's certificate."""
    context = ssl.create_default_context() if not ca_file else \
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        _load_ca(context, ca_file)
    _load_chain(context, cert_file, key_file)
    return context


def names(cert):
    """The DNS names a parsed certificate (``getpeercert()``) is for."""
    if not cert:
        return ()
    return tuple(value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS")


def peer_identity(cert, peers):
    """The one peer host name ``cert`` proves, or None."""
    matches = sorted(set(names(cert)) & set(peers))
    return matches[0] if len(matches) == 1 else None


Certificate = collections.namedtuple("Certificate", "serial not_before not_after path",
                                     defaults=(None,))
Certificate.__doc__ = ("A certificate's serial number and validity (UNIX seconds, "
                       "UTC), and the file it was read from.")


def _tlv(data, pos, end):
    """``(tag, content start, content end)`` of the DER element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > end:
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag, text):
    """UNIX seconds of an X.509 UTCTime (0x17) or GeneralizedTime (0x18)."""
    text = text.decode("ascii")
    if tag == 0x17 and len(text) == 13 and text.endswith("Z"):
        year = int(text[:2])
        text = "%d%s" % (year + (1900 if year >= 50 else 2000), text[2:])
    elif not (tag == 0x18 and len(text) == 15 and text.endswith("Z")):
        raise ValueError("unsupported time %r" % text)
    if not text[:14].isdigit():
        raise ValueError("unsupported time %r" % text)
    fields = [int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12),
                                          (12, 14))]
    return float(calendar.timegm(tuple(fields)))


def parse_certificate(der):
    """:class:`Certificate` of a DER X.509 certificate (ValueError if it is not one)."""
    _, pos, end = _tlv(der, 0, len(der))                  # Certificate
    tag, pos, end = _tlv(der, pos, end)                   # tbsCertificate
    if tag != 0x30:
        raise ValueError("not an X.509 certificate")
    tag, start, stop = _tlv(der, pos, end)
    if tag == 0xA0:                                       # [0] version
        tag, start, stop = _tlv(der, stop, end)
    if tag != 0x02:
        raise ValueError("no serial number")
    serial = int.from_bytes(der[start:stop], "big", signed=True)
    _, _, stop = _tlv(der, stop, end)                     # signature algorithm
    _, _, stop = _tlv(der, stop, end)                     # issuer
    tag, pos, end = _tlv(der, stop, end)                  # validity
    if tag != 0x30:
        raise ValueError("no validity")
    times = []
    for _ in range(2):
        tag, start, pos = _tlv(der, pos, end)
        times.append(_der_time(tag, der[start:pos]))
    return Certificate(serial, times[0], times[1])


def read_certificate(path, option="cert_file"):
    """:class:`Certificate` of the first certificate in PEM file ``path``
    (ConfigError naming the file when it holds none)."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CERT_FILE_BYTES)
    except OSError as err:
        raise _config_error(option, path, "cannot be read: %s" % err.strerror)
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise _config_error(option, path, "holds no PEM certificate")
    try:
        der = base64.b64decode(b"".join(text[start + len(begin):stop].split()),
                               validate=True)
        return parse_certificate(der)._replace(path=str(path))
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise _config_error(option, path, "holds an unreadable certificate: %s" % err)


def certificate_not_after(path):
    """When the certificate in PEM file ``path`` expires, in UNIX seconds (UTC)."""
    return read_certificate(path).not_after


def expires_soon(not_after, now, days=EXPIRY_WARNING_DAYS):
    """Whether a certificate valid until ``not_after`` (UNIX seconds) ends within
    ``days`` of ``now`` (or has ended): time to rotate it."""
    return not_after - now <= days * 86400
