"""The agent refuses to start in a setup that would serve it unsafely.

Each refusal is a ConfigError naming the option (never a token's value).
``[agent] insecure_lab_mode`` lifts the checks a throw-away lab needs lifted.
"""

import ipaddress
import socket
import urllib.parse

from migplane.agent import opts
from migplane.agent import tls
from migplane.core import address
from migplane.core import exception


def _refuse(option, value, reason):
    return exception.ConfigError(group=opts.GROUP, option=option, value=value,
                                 reason=reason + " (or set insecure_lab_mode for a lab)")


def _ip(text):
    try:
        return ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return None


def bind_addresses(host):
    """The addresses the server would listen on for ``host``, as the kernel reads
    the text (``0x0``, ``0``, ``::ffff:0.0.0.0`` are every address too); an
    IPv4-mapped one as IPv4. Empty when it does not resolve."""
    if not host or not str(host).strip():
        return (ipaddress.IPv4Address(0),)  # the empty host: every address
    try:
        infos = socket.getaddrinfo(str(host), None, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return ()
    found = []
    for info in infos:
        ip = _ip(info[4][0])
        if ip is not None:
            found.append(getattr(ip, "ipv4_mapped", None) or ip)
    return tuple(found)


def peers(options, hostname):
    """``{host name: https URL}`` from ``[agent] peers``, checked."""
    found = {}
    for name, url in (options.peers or {}).items():
        try:
            address.parse_host(name, field="peers", allow_port=False)
            parts = urllib.parse.urlsplit(url)
            address.parse_host(parts.netloc, field="peers")
        except (exception.InvalidAddress, ValueError) as err:
            raise exception.ConfigError(group=opts.GROUP, option="peers",
                                        value="%s:%s" % (name, url), reason=str(err))
        if parts.scheme != "https" and not (parts.scheme == "http"
                                            and options.insecure_lab_mode):
            raise _refuse("peers", "%s:%s" % (name, url), "peer URLs must be https://")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise exception.ConfigError(group=opts.GROUP, option="peers", value=url,
                                        reason="want scheme://host:port only")
        if name == hostname:
            raise exception.ConfigError(group=opts.GROUP, option="peers", value=name,
                                        reason="is this host itself")
        found[name] = "%s://%s" % (parts.scheme, parts.netloc)
    return found


def check(options, tokens, settings, inbound=None):
    """Raise ConfigError for the first unsafe setting in ``[agent]``."""
    insecure = options.insecure_lab_mode
    if not tokens:
        raise exception.ConfigError(
            group=opts.GROUP, option="auth_tokens", value="",
            reason="at least one token is required: the agent refuses to serve "
                   "without authentication")
    short = [t for t in tokens if len(t) < opts.MIN_TOKEN_CHARS]
    if short and not insecure:
        raise _refuse("auth_tokens", "<a token of %d characters>" % len(short[0]),
                      "tokens must have at least %d characters" % opts.MIN_TOKEN_CHARS)
    if any(c.isspace() or not c.isprintable() for t in tokens for c in t):
        raise exception.ConfigError(group=opts.GROUP, option="auth_tokens",
                                    value="<secret>",
                                    reason="a token holds whitespace or a control "
                                           "character")
    if bool(options.cert_file) != bool(options.key_file):
        raise exception.ConflictingOptions(
            options="[agent] cert_file and key_file",
            reason="set both to serve HTTPS, or neither")
    if not options.cert_file and not insecure:
        raise _refuse("cert_file", "", "the agent serves HTTPS only: set cert_file and "
                                       "key_file to this host's certificate")
    if options.key_file:
        tls.check_key_file(options.key_file, insecure=insecure)
    both = sorted(set(options.operator_names or ()) & set(options.peers or {}))
    if both:
        raise exception.ConfigError(group=opts.GROUP, option="operator_names",
                                    value=both[0], reason="is also a peer: operator and "
                                                          "peer identities must differ")
    if (options.peers or options.operator_names) and not options.ca_file:
        raise exception.ConfigError(group=opts.GROUP, option="ca_file", value="",
                                    reason="is required to authenticate the peers")
    binds = bind_addresses(options.bind_host)
    if any(bind.is_unspecified for bind in binds) and not insecure:
        raise _refuse("bind_host", options.bind_host,
                      "listen on this host's management address, not on every address")
    for what in (settings.host.my_live_migration_ip, inbound):
        mapped = _ip(what) if what else None
        mapped = getattr(mapped, "ipv4_mapped", None) or mapped
        if mapped is not None and mapped in binds and not insecure:
            raise _refuse("bind_host", options.bind_host,
                          "is this host's migration address: the agent must never be "
                          "reachable on the migration network")
