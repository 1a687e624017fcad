"""The agent's HTTP API (JSON over HTTPS).

Who may call what (``migplane.agent.app`` enforces it): *operator* = a token
of ``[agent] auth_tokens`` or a client certificate named in
``operator_names``; *peer* = the certificate of an agent in ``[agent] peers``.

=======  ==========================================  ==================  =========
GET      /v1/host                                    host facts          either
GET      /v1/host/route?to=ADDR                      the kernel's route  operator
GET      /v1/instances/<name>                        a guest's size      either
POST     /v1/probes, GET /v1/probes/<id>             listen once on the  operator
                                                     inbound address
POST     /v1/probes/connect                          dial a peer's probe operator
POST     /v1/migrations                              start one (source)  operator
GET      /v1/migrations[/<id>[?since=N]]             list / one          operator
POST     /v1/migrations/<id>/abort|force-complete    act on a running    operator
POST     /v1/migrations/<id>/resume                  a paused post-copy  operator
POST     /v1/migrations/<id>/release                 a settled split     operator
POST     /v1/plans                                   dry run (explain)   operator
GET      /v1/slots, GET /v1/steps                    what is held/served operator
POST     /v1/slots, PUT|DELETE /v1/slots/<id>        the caller's slot   peer
POST     /v1/steps/<step>                            destination steps,  peer
                                                     slot holder only
POST     /v1/evacuations                             evacuate this host  operator
                                                     (or dry run)
GET      /v1/evacuations[/<id>[?since=N]]            list / one          operator
POST     /v1/evacuations/<id>/abort                  abort the rest      operator
GET      /metrics                                    Prometheus metrics  operator
=======  ==========================================  ==================  =========

Source-side steps are not served: the source agent runs them itself. One
blueprint per resource; ``migplane.agent.app`` adds authentication and the
JSON errors. Every body is a versioned object of ``migplane.agent.wire``
(requests and answers). Errors stay ``{"error": {...}}``, frozen across
versions: the refusal of an incompatible version is itself an error, and a
peer of any version must be able to read it.
"""

import re

import flask

from migplane.agent import errors
from migplane.agent import validation
from migplane.agent import wire


def agent():
    """The :class:`~migplane.agent.service.Agent` this app serves."""
    return flask.current_app.config["MIGPLANE_AGENT"]


def body(cls=None):
    """The request's body as the plain dict of the fields of ``cls`` (a
    ``wire.Request``; none: the body must be empty or ``{}``)."""
    data = validation.parse_json(flask.request.get_data())
    if cls is None:
        return validation.validate(data, wire.Request.SCHEMA)
    return wire.load_request(cls, data)


def since():
    """The ``?since=N`` event number of a record's ``GET``, or None: a decimal of
    at most 12 ASCII digits, else a 400 naming the field."""
    value = flask.request.args.get("since")
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", value):
        raise errors.BadRequest(field="since", reason="must be an event number, got %r"
                                % value)
    return int(value)


def reply(cls, data, status=200):
    """Answer ``data`` as the versioned body ``cls`` (a ``wire.Answer``)."""
    return flask.jsonify(wire.dump_answer(cls, data)), status


def accepted(cls, record, collection):
    """Answer a started ``record`` as ``cls`` with 202 and its ``Location``,
    ``/v1/<collection>/<id>``."""
    response, status = reply(cls, record.to_dict(), 202)
    response.headers["Location"] = "/v1/%s/%s" % (collection, record.id)
    return response, status


def listing(cls, key, summary_cls, records):
    """Answer ``{key: [summary, ...]}`` as ``cls``: each record without its events,
    as ``summary_cls``."""
    return reply(cls, {key: [wire.dump_answer(summary_cls, r.to_dict(events=False))
                             for r in records]})


def record(cls, lookup, record_id):
    """Answer ``lookup(record_id)`` as ``cls``, its events from ``?since=N`` on
    (checked before the record is looked up)."""
    body()
    first = since()
    return reply(cls, lookup(record_id).to_dict(since=first))
