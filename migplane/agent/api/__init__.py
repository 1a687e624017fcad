"""The agent's HTTP API (JSON, every request with ``Authorization: Bearer``).

=======  ==========================================  ==========================
GET      /v1/host                                    host facts (``host``)
GET      /v1/host/route?to=ADDR                      the kernel's route to ADDR
GET      /v1/instances/<name>                        a guest's state and size
POST     /v1/probes                                  listen once on the inbound
                                                     address (for ``check``)
GET      /v1/probes/<id>                             did the probe arrive
POST     /v1/probes/connect                          dial a peer's probe
POST     /v1/migrations                              start one, as its source
GET      /v1/migrations[/<id>[?since=N]]             list / one with its events
POST     /v1/migrations/<id>/abort|force-complete    act on a running one
POST     /v1/plans                                   dry run (``explain``)
POST     /v1/slots, PUT|DELETE /v1/slots/<id>        a source's slot lease here
GET      /v1/steps, POST /v1/steps/<step>            the driver steps
POST     /v1/evacuations                             evacuate this host (or dry run)
GET      /v1/evacuations[/<id>[?since=N]]            list / one with its events
POST     /v1/evacuations/<id>/abort                  start no more, abort the rest
=======  ==========================================  ==========================

One blueprint per resource; ``migplane.agent.app`` adds authentication and
the JSON errors.
"""

import flask

from migplane.agent import schemas
from migplane.agent import validation


def agent():
    """The :class:`~migplane.agent.service.Agent` this app serves."""
    return flask.current_app.config["MIGPLANE_AGENT"]


def body(schema=schemas.EMPTY):
    """The request's JSON body, validated against ``schema``."""
    return validation.validate(validation.parse_json(flask.request.get_data()), schema)


def reply(data, status=200):
    return flask.jsonify(data), status
