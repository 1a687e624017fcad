"""The destination-side driver steps, ``POST /v1/steps/<name>``, for a peer's flow.

Each step takes and returns what the driver method does, with MigrateData
as ``to_primitive()``; the body schemas are in :data:`schemas.STEPS`.
"""

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import schemas
from migplane.agent import validation
from migplane.agent import wire

bp = flask.Blueprint("steps", __name__)


def _data(answer):
    return {"migrate_data": None if answer is None else wire.dump_data(answer)}


def _with_data(method):
    def call(agent, body):
        return _data(getattr(agent.driver, method)(body["instance"],
                                                   wire.load_data(body["migrate_data"])))
    return call


def _check_destination(agent, body):
    return _data(agent.driver.check_can_live_migrate_destination(
        body["instance"], body.get("block_migration", False)))


def _plan_inbound(agent, body):
    return _data(agent.plan_inbound(body["instance"], body.get("block_migration", False)))


#: Destination-side steps, served to the authenticated source of a migration that
#: holds a slot here. Source-side steps are never remote operations: the source
#: agent runs them on its own driver, with URIs its own policy built.
HANDLERS = {
    "check_can_live_migrate_destination": _check_destination,
    "plan_inbound": _plan_inbound,
    "pre_live_migration": _with_data("pre_live_migration"),
    "post_live_migration_at_destination": _with_data("post_live_migration_at_destination"),
    "rollback_live_migration_at_destination":
        _with_data("rollback_live_migration_at_destination"),
    # the settle function's fence: pause this host's copy when two run
    "pause_instance": _with_data("pause_instance"),
}
#: Steps that prepare nothing, for a dry run (``migplane explain``): no slot needed.
WITHOUT_SLOT = ("plan_inbound",)
assert set(HANDLERS) == set(schemas.STEPS)


@bp.post("/v1/steps/<name>")
def step(name):
    if name not in HANDLERS:
        raise errors.NotFound(what="Step", name=name)
    body = api.body(wire.StepRequest)
    validation.validate(body, schemas.STEPS[name])
    agent = api.agent()
    if name not in WITHOUT_SLOT:
        agent.require_lease(body["migration_id"], flask.g.peer, body["instance"])
    return api.reply(wire.StepAnswer, HANDLERS[name](agent, body))


@bp.get("/v1/steps")
def steps():
    api.body()
    return api.reply(wire.StepList, {"steps": sorted(HANDLERS)})
