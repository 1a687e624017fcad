"""Host facts: ``/v1/host``, ``/v1/host/route``, ``/v1/instances``, ``/v1/probes``."""

import flask

from migplane.agent import api
from migplane.agent import errors
from migplane.agent import probe
from migplane.agent import schemas
from migplane.agent import validation
from migplane.agent import wire

bp = flask.Blueprint("host", __name__)


@bp.get("/v1/host")
def host():
    api.body()
    return api.reply(wire.HostFacts, dict(api.agent().host_facts(), wire=wire.versions()))


@bp.get("/v1/host/route")
def route():
    api.body()
    unknown = sorted(set(flask.request.args) - {"to"})
    if unknown:
        raise errors.BadRequest(field=unknown[0], reason="is not a known query parameter")
    target = flask.request.args.get("to")
    if not target:
        raise errors.BadRequest(field="to", reason="is required (?to=ADDRESS)")
    return api.reply(wire.Route, api.agent().facts.route_to(target))


@bp.get("/v1/instances/<name>")
def instance(name):
    api.body()
    validation.validate({"instance": name}, {"type": "object",
                                             "properties": {"instance": schemas.INSTANCE}})
    return api.reply(wire.Instance, api.agent().driver.get_instance_info(name).to_dict())


@bp.post("/v1/probes")
def probe_listen():
    """Listen once on this host's inbound migration address (see ``probe``)."""
    body = api.body(wire.ProbeRequest)
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
    return api.reply(wire.Probe, listening.to_dict(), 201)


@bp.get("/v1/probes/<probe_id>")
def probe_status(probe_id):
    api.body()
    found = api.agent().probes.get(probe_id)
    if found is None:
        raise errors.NotFound(what="Probe", name=probe_id)
    return api.reply(wire.Probe, found.to_dict())


@bp.post("/v1/probes/connect")
def probe_connect():
    """Dial a peer's probe from here, as this host's hypervisor would."""
    body = api.body(wire.ProbeConnectRequest)
    return api.reply(wire.ProbeResult, probe.connect(body["address"], body["port"],
                                                     body["payload"], body.get("timeout", 5.0)))
