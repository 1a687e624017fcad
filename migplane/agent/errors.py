"""Errors of the agent and its client, and how every error maps to HTTP.

An error crosses the wire as ``{"error": {"type", "message", "status"}}``;
the client raises the same :mod:`migplane.core.exception` class again, so a
flow driving a remote host sees the errors a local driver would raise.
"""

from migplane.core import exception


def printable(text, ascii_only=True):
    """``text`` with control characters (and, by default, non-ASCII ones) escaped,
    so that text from a peer or a request stays one line and cannot drive a
    terminal: for every log line and everything a peer said that is shown."""
    return "".join(c if c.isprintable() and (c.isascii() or not ascii_only) else
                   c.encode("unicode_escape").decode("ascii") for c in str(text))


def printable_data(value):
    """JSON data from a peer with every string :func:`printable` (non-ASCII kept)."""
    if isinstance(value, str):
        return printable(value, ascii_only=False)
    if isinstance(value, dict):
        return {printable(k, ascii_only=False) if isinstance(k, str) else k:
                printable_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable_data(v) for v in value]
    return value


class AgentError(exception.MigplaneError):
    """Base of the errors that concern the agent itself, not a migration."""

    msg_fmt = "Agent error: %(reason)s"
    status = 500


class BadRequest(AgentError):
    msg_fmt = "Invalid request: field %(field)r %(reason)s"
    status = 400



class Unauthorized(AgentError):
    msg_fmt = "Authentication required: %(reason)s"
    status = 401


class Forbidden(AgentError):
    msg_fmt = "Forbidden: %(reason)s"
    status = 403


class NotFound(AgentError):
    msg_fmt = "%(what)s %(name)r not found"
    status = 404


class AgentUnreachable(AgentError):
    msg_fmt = "Agent %(url)s is unreachable: %(reason)s"
    status = 502


class PeerRefused(AgentError):
    """A peer agent did not accept this agent's certificate."""

    msg_fmt = "Peer agent %(peer)s refused this agent: %(reason)s"
    status = 502


class AnswerRefused(AgentError):
    """A peer's answer that breaks a bound (size, depth, time) or redirects."""

    msg_fmt = "Agent %(url)s: its answer is refused: %(reason)s"
    status = 502


class AgentRequestError(AgentError):
    """An answer from an agent that maps to no known error class."""

    msg_fmt = "Agent %(url)s answered %(status_code)s: %(reason)s"


_STATUS = (
    (AgentError, None),  # their own .status
    (exception.InstanceNotFound, 404),
    (exception.NoActiveMigration, 404),
    (exception.DriverNotFound, 404),
    (exception.TooManyMigrations, 409),
    (exception.UnsupportedFeature, 409),
    (exception.InvalidMigrationPlan, 409),
    (exception.MigrationError, 409),
    (exception.InvalidWireData, 400),  # InvalidMigrateData too
    (exception.IncompatibleVersion, 400),
    (exception.InvalidAddress, 400),
    (exception.ConfigError, 400),
    (exception.ConflictingOptions, 400),
    (exception.HypervisorUnavailable, 503),
)


def status_of(err):
    """The HTTP status an error is answered with."""
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status if status is not None else err.status
    return 500


#: Attributes an error may carry across the wire besides its message.
EXTRA = ("when_busy", "field")


def to_body(err, status=None):
    body = {"type": type(err).__name__, "message": str(err),
            "status": status or status_of(err)}
    for name in EXTRA:
        value = getattr(err, "kwargs", {}).get(name, getattr(err, name, None))
        if value is not None:
            body[name] = value
    return {"error": body}


def _known_classes():
    classes = {}
    for module in (exception, __import__(__name__, fromlist=["_"])):
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, exception.MigplaneError):
                classes[name] = value
    return classes


def from_body(url, status_code, body):
    """Rebuild the error an agent answered with (the client side of :func:`to_body`)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return AgentRequestError(url=url, status_code=status_code,
                                 reason=str(body)[:200] or "no error body")
    message = str(error.get("message") or "no message")
    cls = _known_classes().get(error.get("type"))
    if cls is None:
        err = AgentRequestError(url=url, status_code=status_code, reason=message)
    else:
        err = cls(message=message)
    err.status = status_code
    err.remote_type = error.get("type")
    for name in EXTRA:
        if error.get(name) is not None and name not in err.kwargs:
            err.kwargs[name] = error[name]
    return err
