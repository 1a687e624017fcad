"""The driver steps, ``POST /v1/steps/<name>``, for a flow coordinated elsewhere.

Each step takes and returns what the driver method does, with MigrateData
as ``to_primitive()``; the body schemas are in :data:`schemas.STEPS`.
"""

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import schemas
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


def _live_migration(agent, body):
    agent.driver.live_migration(body["instance"], wire.load_data(body["migrate_data"]),
                                wire.load_uris(body["uris"]),
                                wire.load_settings(body["settings"]))
    return {}


def _progress(agent, body):
    return {"progress": agent.driver.get_job_progress(body["instance"]).to_dict()}


def _abort(agent, body):
    agent.driver.abort_job(body["instance"])
    return {}


def _force(agent, body):
    agent.driver.force_complete(body["instance"], post_copy=body["post_copy"])
    return {}


def _downtime(agent, body):
    agent.driver.set_max_downtime(body["instance"], body["downtime_ms"])
    return {}


HANDLERS = {
    "check_can_live_migrate_destination": _check_destination,
    "plan_inbound": _plan_inbound,
    "pre_live_migration": _with_data("pre_live_migration"),
    "post_live_migration_at_destination": _with_data("post_live_migration_at_destination"),
    "rollback_live_migration_at_destination":
        _with_data("rollback_live_migration_at_destination"),
    "check_can_live_migrate_source": _with_data("check_can_live_migrate_source"),
    "live_migration": _live_migration,
    "get_job_progress": _progress,
    "abort_job": _abort,
    "force_complete": _force,
    "set_max_downtime": _downtime,
    "post_live_migration_at_source": _with_data("post_live_migration_at_source"),
    "rollback_live_migration_at_source": _with_data("rollback_live_migration_at_source"),
}
assert set(HANDLERS) == set(schemas.STEPS)


@bp.post("/v1/steps/<name>")
def step(name):
    if name not in HANDLERS:
        raise errors.NotFound(what="Step", name=name)
    body = api.body(schemas.STEPS[name])
    return api.reply(HANDLERS[name](api.agent(), body))


@bp.get("/v1/steps")
def steps():
    api.body()
    return api.reply({"steps": sorted(HANDLERS)})
