"""Slots a source agent holds on this host for its incoming migrations."""

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import wire

bp = flask.Blueprint("slots", __name__)


@bp.post("/v1/slots")
def take():
    return api.reply(wire.Slot, api.agent().take_slot(api.body(wire.SlotRequest),
                                                      flask.g.peer), 201)


@bp.put("/v1/slots/<migration_id>")
def renew(migration_id):
    api.body()
    if api.agent().slots.renew(migration_id, source=flask.g.peer) is None:
        raise errors.NotFound(what="Slot", name=migration_id)
    return api.reply(wire.Slot, {"migration_id": migration_id,
                                 "lease_s": api.agent().slots.lease_s})


@bp.delete("/v1/slots/<migration_id>")
def release(migration_id):
    api.body()
    if api.agent().release_slot(migration_id, flask.g.peer) is None:
        raise errors.NotFound(what="Slot", name=migration_id)
    return api.reply(wire.Slot, {"migration_id": migration_id, "released": True})


@bp.get("/v1/slots")
def index():
    api.body()
    agent = api.agent()
    return api.reply(wire.SlotList, {"host": agent.hostname, "running": agent.slots.running,
                      "limit": agent.slots.concurrency.max_concurrent,
                      "when_busy": agent.slots.concurrency.when_busy,
                      "leases": [lease.__dict__ for lease in agent.slots.leases()]})
