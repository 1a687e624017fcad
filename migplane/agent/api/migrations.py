"""Migrations this agent coordinates as their source, and their dry runs."""


import flask

from migplane.agent import api
from migplane.agent import wire

bp = flask.Blueprint("migrations", __name__)


@bp.post("/v1/migrations")
def start():
    record = api.agent().start_migration(api.body(wire.MigrationRequest))
    return api.accepted(wire.MigrationRecord, record, "migrations")


@bp.get("/v1/migrations")
def index():
    api.body()
    return api.listing(wire.MigrationList, "migrations", wire.MigrationSummary,
                       api.agent().registry.all())


@bp.get("/v1/migrations/<migration_id>")
def show(migration_id):
    return api.record(wire.MigrationRecord, api.agent().migration, migration_id)


@bp.post("/v1/migrations/<migration_id>/abort")
def abort(migration_id):
    api.body()
    return api.reply(wire.MigrationSummary,
                     api.agent().abort(migration_id).to_dict(events=False), 202)


@bp.post("/v1/migrations/<migration_id>/force-complete")
def force_complete(migration_id):
    api.body()
    return api.reply(wire.MigrationSummary,
                     api.agent().force_complete(migration_id).to_dict(events=False), 202)


@bp.post("/v1/migrations/<migration_id>/resume")
def resume(migration_id):
    """Operator only (a token or an operator certificate: not in app.PEER_ONLY or
    PEER_OR_OPERATOR): a peer never resumes a guest here."""
    api.body()
    return api.reply(wire.MigrationSummary,
                     api.agent().resume(migration_id).to_dict(events=False), 202)


@bp.post("/v1/migrations/<migration_id>/release")
def release(migration_id):
    """Operator only, like resume: after a split the operator settles the guest
    by hand; the agent checks both hosts before it lets the guest move again."""
    api.body()
    return api.reply(wire.MigrationSummary,
                     api.agent().release_split(migration_id).to_dict(events=False))


@bp.post("/v1/plans")
def plan():
    return api.reply(wire.Plan, api.agent().plan(api.body(wire.MigrationRequest)))
