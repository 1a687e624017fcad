"""Evacuations of this host: ``/v1/evacuations`` (``migplane evacuate``)."""

import flask

from migplane.agent import api
from migplane.agent import evacuations
from migplane.agent import wire

bp = flask.Blueprint("evacuations", __name__)


@bp.post("/v1/evacuations")
def start():
    body = api.body(wire.EvacuationRequest)
    agent = api.agent()
    if body.get("dry_run"):
        return api.reply(wire.EvacuationPlan, evacuations.dry_run(agent, body))
    record = evacuations.start(agent, agent.evacuations, body)
    return api.accepted(wire.EvacuationRecord, record, "evacuations")


@bp.get("/v1/evacuations")
def index():
    api.body()
    return api.listing(wire.EvacuationList, "evacuations", wire.EvacuationSummary,
                       api.agent().evacuations.all())


@bp.get("/v1/evacuations/<evacuation_id>")
def show(evacuation_id):
    return api.record(wire.EvacuationRecord, api.agent().evacuations.get, evacuation_id)


@bp.post("/v1/evacuations/<evacuation_id>/abort")
def abort(evacuation_id):
    api.body()
    record = evacuations.abort(api.agent().evacuations, evacuation_id)
    return api.reply(wire.EvacuationSummary, record.to_dict(events=False), 202)
