"""The destination-side driver steps, ``POST /v1/steps/<name>``, for a peer's flow.

Each step takes and returns what the driver method does, with MigrateData
as ``to_primitive()``; the body schemas are in :data:`schemas.STEPS`.
"""

import logging

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import schemas
from migplane.agent import validation
from migplane.agent import wire
from migplane.core import exception
from migplane.core import migrate_data as md

LOG = logging.getLogger(__name__)

bp = flask.Blueprint("steps", __name__)


def _data(answer):
    return {"migrate_data": None if answer is None else wire.dump_data(answer)}


def _pre(agent, body, lease):
    """Prepare only for a guest that is not here: what arrives is then this
    migration's, and what is created is recorded (durably) as this host's own."""
    instance = body["instance"]
    if agent.defined(instance):
        raise exception.DestinationCheckFailed(
            host=agent.hostname, instance=instance,
            reason="a guest of that name is already defined here")
    agent.slots.record(lease.migration_id, prepared=True, preparing=True)
    try:
        answer = agent.driver.pre_live_migration(instance,
                                                 wire.load_data(body["migrate_data"]))
    except BaseException:
        agent.slots.record(lease.migration_id, preparing=False)
        raise
    if agent.slots.prepared(lease.migration_id, answer.to_primitive()):
        # The source stopped waiting (a step deadline) and rolled back or gave up
        # the slot meanwhile: undo what was just prepared, or it would be left.
        LOG.warning("Migration %s of %s: pre_live_migration returned after the "
                    "migration was rolled back; undoing what it prepared",
                    lease.migration_id, errors.printable(instance))
        agent.driver.rollback_live_migration_at_destination(instance, answer)
        raise exception.MigrationError(
            instance=instance, step="pre_live_migration",
            reason="migration %s was rolled back while this host prepared it; what it "
                   "prepared is undone" % lease.migration_id)
    return _data(answer)


def _own_data(agent, lease):
    """What this host answered to pre_live_migration, never the peer's copy of it."""
    if lease.migrate_data is not None:
        return md.MigrateData.from_primitive(lease.migrate_data)
    return md.MigrateData(dest_hostname=agent.hostname)


def _post(agent, body, lease):
    if not lease.prepared:
        raise exception.MigrationError(
            instance=body["instance"], step="post_live_migration_at_destination",
            reason="nothing was prepared here for migration %s" % lease.migration_id)
    wire.load_data(body["migrate_data"])  # checked, not used
    agent.driver.post_live_migration_at_destination(body["instance"],
                                                     _own_data(agent, lease))
    return _data(None)


def _rollback(agent, body, lease):
    """Undo what pre_live_migration did for this migration, nothing else: before
    it ran (or when it refused), there is nothing here of this migration."""
    wire.load_data(body["migrate_data"])  # checked, not used
    if not lease.prepared:
        LOG.info("Rollback of migration %s of %s: nothing was prepared here",
                 lease.migration_id, errors.printable(body["instance"]))
        return _data(None)
    if agent.slots.defer_rollback(lease.migration_id):
        LOG.warning("Rollback of migration %s of %s: pre_live_migration still runs "
                    "here; what it prepares is rolled back as soon as it returns",
                    lease.migration_id, errors.printable(body["instance"]))
        return _data(None)
    agent.driver.rollback_live_migration_at_destination(body["instance"],
                                                         _own_data(agent, lease))
    return _data(None)


def _pause(agent, body, lease):
    """Pause the copy this migration brought here (the fence), nothing else."""
    wire.load_data(body["migrate_data"])  # checked, not used
    if not lease.prepared:
        raise exception.MigrationError(
            instance=body["instance"], step="pause_instance",
            reason="nothing was prepared here for migration %s" % lease.migration_id)
    agent.driver.pause_instance(body["instance"], _own_data(agent, lease))
    return _data(None)


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
    "pre_live_migration": _pre,
    "post_live_migration_at_destination": _post,
    "rollback_live_migration_at_destination": _rollback,
    # the settle function's fence: pause this host's copy when two run
    "pause_instance": _pause,
}
#: Steps that act on what this host prepared: they are given the slot's lease.
WITH_LEASE = ("pre_live_migration", "post_live_migration_at_destination",
              "rollback_live_migration_at_destination", "pause_instance")
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
    if name in WITHOUT_SLOT:
        return api.reply(wire.StepAnswer, HANDLERS[name](agent, body))
    lease = agent.require_lease(body["migration_id"], flask.g.peer, body["instance"])
    if name in WITH_LEASE:
        return api.reply(wire.StepAnswer, HANDLERS[name](agent, body, lease))
    return api.reply(wire.StepAnswer, HANDLERS[name](agent, body))


@bp.get("/v1/steps")
def steps():
    api.body()
    return api.reply(wire.StepList, {"steps": sorted(HANDLERS)})
