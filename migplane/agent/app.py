"""The Flask application: authentication, JSON errors, request log.

Operators authenticate with a token (``[agent] auth_tokens``) or a client
certificate named in ``[agent] operator_names``; peer agents
with their host certificate, whose DNS name must be one of ``[agent] peers``
(:data:`PEER_ONLY` endpoints take nothing else). Log lines escape control
characters, so a request cannot forge a line; tokens are never logged.

Whatever goes wrong in a request becomes a JSON error with a status and a
message naming the bad value; an unexpected exception is logged with its
trace here and answered as a 500 with a reference, never with the trace.
"""

import logging
import time
import uuid

import flask
from werkzeug import exceptions as http_exc

from migplane.agent import auth
from migplane.agent import errors
from migplane.agent import tls
from migplane.agent.api import evacuations as evacuations_api
from migplane.agent.api import host as host_api
from migplane.agent.api import metrics as metrics_api
from migplane.agent.api import migrations as migrations_api
from migplane.agent.api import slots as slots_api
from migplane.agent.api import steps as steps_api
from migplane.core import exception

LOG = logging.getLogger(__name__)
ACCESS = logging.getLogger("migplane.agent.access")


#: Endpoints only a peer agent may call (with its certificate, never a token).
PEER_ONLY = frozenset({"slots.take", "slots.renew", "slots.release", "steps.step"})
#: Endpoints both a peer (certificate) and an operator (token) may call: read-only
#: facts; a restarted source asks the destination where a guest runs (reconcile).
PEER_OR_OPERATOR = frozenset({"host.host", "host.instance"})


def authenticate(agent, request):
    """The peer host name calling, or None for an operator; raise 401/403 otherwise."""
    cert = request.environ.get("migplane.peer_cert")
    peer = tls.peer_identity(cert, agent.peers)
    endpoint = request.endpoint
    if endpoint in PEER_ONLY or (endpoint in PEER_OR_OPERATOR and peer is not None):
        if peer is None:
            raise errors.Unauthorized(
                reason="%s %s is for peer agents only: it takes the certificate of one "
                       "of [agent] peers, not a token" % (
                           errors.printable(request.method), errors.printable(request.path)))
        return peer
    if tls.peer_identity(cert, agent.options.operator_names or ()) is not None:
        return None  # an operator's client certificate
    auth.check(request.headers, agent.tokens)
    return None


def _error(err, status):
    response = flask.jsonify(errors.to_body(err, status))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="migplane-agent"'
    return response


def create_app(agent):
    """The WSGI app serving ``agent`` (a :class:`~migplane.agent.service.Agent`)."""
    app = flask.Flask("migplane.agent")
    app.config["MIGPLANE_AGENT"] = agent
    app.config["MAX_CONTENT_LENGTH"] = agent.options.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    for module in (host_api, steps_api, migrations_api, slots_api, evacuations_api,
                   metrics_api):
        app.register_blueprint(module.bp)

    @app.before_request
    def check_caller():
        flask.g.started = time.monotonic()
        flask.g.peer = None
        flask.g.caller = "unauthenticated"
        flask.g.peer = authenticate(agent, flask.request)
        flask.g.caller = "peer=%s" % flask.g.peer if flask.g.peer else "operator"
        # the server no longer counts this connection against the pre-authentication
        # budget of its address
        flask.request.environ.get("migplane.authenticated", lambda: None)()

    @app.after_request
    def log_request(response):
        started = flask.g.get("started", time.monotonic())
        ACCESS.info("%s %s \"%s %s\" %s %.1f ms", flask.request.remote_addr,
                    flask.g.get("caller", "unauthenticated"),
                    errors.printable(flask.request.method),
                    errors.printable(flask.request.full_path.rstrip("?")),
                    response.status_code, 1000 * (time.monotonic() - started))
        return response

    @app.errorhandler(exception.MigplaneError)
    def migplane_error(err):
        status = errors.status_of(err)
        level = logging.WARNING if status < 500 else logging.ERROR
        LOG.log(level, "%s %s: %s", errors.printable(flask.request.method),
                errors.printable(flask.request.path), errors.printable(err))
        return _error(err, status)

    @app.errorhandler(http_exc.HTTPException)
    def http_error(err):
        reason = {404: "no such resource %r" % errors.printable(flask.request.path),
                  405: "method %s is not allowed on %s" % (flask.request.method,
                                                           flask.request.path),
                  413: "the request body is larger than %d bytes"
                       % agent.options.max_body_bytes}.get(err.code, err.description)
        wrapped = errors.AgentError(reason=reason)
        wrapped.status = err.code
        return _error(wrapped, err.code)

    @app.errorhandler(Exception)
    def unexpected(err):
        ref = uuid.uuid4().hex[:8]
        LOG.exception("Unexpected error in %s %s (ref %s)", errors.printable(flask.request.method),
                      errors.printable(flask.request.path), ref)
        wrapped = errors.AgentError(reason="internal error %s: %s; the agent log has "
                                           "the details (ref %s)"
                                           % (type(err).__name__, err, ref))
        return _error(wrapped, 500)

    return app
