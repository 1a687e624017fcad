"""Host facts: ``/v1/host``, ``/v1/host/route``, ``/v1/instances``, ``/v1/probes``."""

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import probe
from migplane.agent import schemas
from migplane.agent import validation

bp = flask.Blueprint("host", __name__)


@bp.get("/v1/host")
def host():
    api.body()
    return api.reply(api.agent().host_facts())


@bp.get("/v1/host/route")
def route():
    api.body()
    unknown = sorted(set(flask.request.args) - {"to"})
    if unknown:
        raise errors.BadRequest(field=unknown[0], reason="is not a known query parameter")
    target = flask.request.args.get("to")
    if not target:
        raise errors.BadRequest(field="to", reason="is required (?to=ADDRESS)")
    return api.reply(api.agent().facts.route_to(target))


@bp.get("/v1/instances/<name>")
def instance(name):
    api.body()
    validation.validate({"instance": name}, {"type": "object",
                                             "properties": {"instance": schemas.INSTANCE}})
    return api.reply(api.agent().driver.get_instance_info(name).to_dict())


@bp.post("/v1/probes")
def probe_listen():
    """Listen once on this host's inbound migration address (see ``probe``)."""
    body = api.body(schemas.PROBE_LISTEN)
    agent = api.agent()
    inbound = agent.inbound()
    if inbound["address"] is None:
        raise errors.BadRequest(field="inbound", reason="is unset on %s: %s" % (
            agent.hostname, inbound["error"] or "my_live_migration_ip is not configured"))
    try:
        listening = agent.probes.listen(inbound["address"], body.get("timeout", 10))
    except OSError as err:
        raise errors.AgentError(reason="cannot listen on %s: %s" % (inbound["address"],
                                                                    err))
    return api.reply(listening.to_dict(), 201)


@bp.get("/v1/probes/<probe_id>")
def probe_status(probe_id):
    api.body()
    found = api.agent().probes.get(probe_id)
    if found is None:
        raise errors.NotFound(what="Probe", name=probe_id)
    return api.reply(found.to_dict())


@bp.post("/v1/probes/connect")
def probe_connect():
    """Dial a peer's probe from here, as this host's hypervisor would."""
    body = api.body(schemas.PROBE_CONNECT)
    return api.reply(probe.connect(body["address"], body["port"], body["payload"],
                                   body.get("timeout", 5.0)))
