"""A second way to ask: one question over the migration plane, for peers only.

The partition that makes two copies possible cuts the management plane while
the migration plane is up. Then the source agent cannot ask the destination's
agent where the guest runs, and the guest stays paused, unresolved. So the
agent may serve exactly that question on its migration address too:
``GET /v1/instances/<name>`` (state and reason), to a peer agent's
certificate only (mutual TLS, the client certificate required), on an
explicit bind on ``my_live_migration_ip`` (never a wildcard), at
``[agent] migration_plane_port``. The certificate it presents there must name
that address, since the peer dials the address and verifies it. Nothing else
is served there: no steps, no slots, no operator.
"""

import ipaddress
import json
import logging
import ssl

from migplane.agent import app as app_mod
from migplane.agent import client as client_mod
from migplane.agent import opts
from migplane.agent import server as server_mod
from migplane.agent import tls
from migplane.core import address as address_mod
from migplane.core import exception

LOG = logging.getLogger(__name__)
PREFIX = "/v1/instances/"


def _answer(start_response, status, reason):
    body = json.dumps({"error": {"type": "Forbidden" if status == 403 else "NotFound",
                                 "message": reason, "status": status}}).encode()
    start_response("%d %s" % (status, "Forbidden" if status == 403 else "Not Found"),
                   [("Content-Type", "application/json"),
                    ("Content-Length", str(len(body)))])
    return [body]


def app(agent):
    """The agent's app, narrowed to the one question and to its peers."""
    inner = app_mod.create_app(agent)

    def where(environ, start_response):
        path = environ.get("PATH_INFO") or ""
        name = path[len(PREFIX):]
        if environ.get("REQUEST_METHOD") != "GET" or not path.startswith(PREFIX) \
                or not name or "/" in name:
            return _answer(start_response, 404, "only GET %s<name> is served on the "
                           "migration plane" % PREFIX)
        if tls.peer_identity(environ.get("migplane.peer_cert"), agent.peers) is None:
            return _answer(start_response, 403, "the migration plane answers peer agents "
                           "only, with the certificate of one of [agent] peers")
        return inner(environ, start_response)

    return where


def _names_address(cert_file, address):
    """Whether the certificate in ``cert_file`` names IP ``address``."""
    try:
        decoded = tls.decode_certificate(cert_file)
    except exception.ConfigError as err:
        LOG.warning("Cannot read the names of %s (%s); peers check them when they dial",
                    cert_file, err)
        return True
    wanted = ipaddress.ip_address(address)
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) == wanted:
                    return True
            except ValueError:
                continue
    return False


def _refuse(value, reason):
    return exception.ConfigError(group=opts.GROUP, option="migration_plane_port",
                                 value=value, reason=reason)


def server(agent, address=None):
    """The server of the one question on the migration address, or None when
    ``[agent] migration_plane_port`` is unset or the certificate does not name
    the address; refuses an unsafe setup."""
    options = agent.options
    port = options.migration_plane_port
    if not port:
        return None
    address = address or agent.settings.host.my_live_migration_ip
    if not address:
        raise _refuse(port, "needs my_live_migration_ip: it is served on that address "
                            "only")
    host = address_mod.parse_host(address, field="my_live_migration_ip", allow_port=False)
    if not host.is_ip or ipaddress.ip_address(host.host).is_unspecified:
        raise _refuse(port, "my_live_migration_ip %s is not one address of this host: "
                            "the question is never served on a wildcard" % address)
    if not (options.cert_file and options.key_file and options.ca_file and agent.peers):
        raise _refuse(port, "needs cert_file, key_file, ca_file and peers: it answers "
                            "peer agents only, by their certificates")
    if not _names_address(options.cert_file, host.host):
        # my_live_migration_ip itself may be what is wrong, and `migplane check`
        # finds that only on a running agent; without the question a partition
        # leaves a guest paused and unresolved, never running twice
        LOG.error("Not answering on the migration plane: cert_file %s does not name %s, "
                  "the address peers dial there (set with my_live_migration_ip); under a "
                  "management-plane outage peers cannot ask this host where a guest runs",
                  options.cert_file, host.host)
        return None
    return server_mod.AgentServer(
        app(agent), host.host, port, ssl_context=context(options),
        request_timeout=options.request_timeout, max_connections=options.max_connections,
        max_header_bytes=options.max_header_bytes, max_body_bytes=1024)


def context(options):
    """The TLS context of the question's server: peers' certificates required."""
    found = tls.server_context(options.cert_file, options.key_file, options.ca_file)
    found.verify_mode = ssl.CERT_REQUIRED
    return found


def client(agent, peer, address):
    """A client of ``peer``'s one question at its migration ``address``, or None
    when this agent does not ask over the migration plane."""
    port = agent.options.migration_plane_port
    if not port or not address or agent.client_context is None:
        return None
    try:
        host = address_mod.parse_host(address, field="target_connect_addr",
                                      allow_port=False)
    except exception.InvalidAddress:
        return None
    url = "https://%s" % address_mod.join_host_port(host.host, port)
    # the certificate is verified against the address dialled: it must name it
    return client_mod.AgentClient(url, None, ca_file=agent.options.ca_file,
                                  timeout=min(agent.options.step_timeout, 30),
                                  ssl_context=agent.client_context, peer_name=host.host)
