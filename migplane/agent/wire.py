"""How the core's objects and the agent's JSON bodies cross HTTP, both ways.

One place for the client and the server, so the two cannot drift. Every
body of the agent's API (requests and answers of every ``/v1`` endpoint) is
a versioned object of :mod:`migplane.core.versioned`, sent as its envelope
``{"migplane.name", "migplane.version", "migplane.data"}``: a newer minor
version's unknown fields are ignored, an older one's missing fields take
their defaults, another major version is refused naming the object and both
versions. ``MigrateData`` inside them crosses as ``to_primitive()``.

Requests stay as strict as their JSON schemas (:mod:`schemas`): every bad
field is a 400 naming it. A plain body (a client of the release before
versioned bodies) is read as this side's own version of it, so an unknown
field is refused; a nested object that may grow (the settings overrides) is
a versioned object of its own. Answers are open records of declared
top-level fields (what is inside them is bounded JSON).

Adding a field to a body: add it to the class (``since`` the new minor
version), bump ``VERSION`` with a ``# Version X.Y: Adds ...`` line, then
update the fingerprints in ``tests/unit/agent/test_agent_wire_bodies.py``.
"""

import dataclasses
import hashlib
import json
import logging
import os
import re
from typing import Any
from typing import ClassVar
from typing import Optional

import jsonschema

from migplane.agent import errors
from migplane.agent import schemas
from migplane.agent import validation
from migplane.core import convergence
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import strategy
from migplane.core import uri as uri_mod
from migplane.core import versioned

LOG = logging.getLogger(__name__)

#: Environment variable pinning the versions this process sends, e.g.
#: ``MigrateData=1.0,HostFacts=1.0``: it overrides, name by name, the pins of
#: ``[agent] wire_pins`` (:func:`configure_pins`), and is how the CLI and the
#: rolling-upgrade test emulate a client or an agent of the previous release.
#: ``envelopes=off`` sends plain bodies, as the release before versioned
#: bodies did (requests and answers).
PINS_ENV = "MIGPLANE_WIRE_PINS"
#: The pin of plain bodies: ``envelopes`` = ``off``.
ENVELOPES = "envelopes"

#: Pins of this process's configuration (``[agent] wire_pins``).
_configured = {}


def configure_pins(pins):
    """Pin the versions this process sends, ``{object name: version}`` (the
    agent's ``[agent] wire_pins``); an unknown name or a malformed version is
    refused naming it, before anything is sent."""
    checked = {}
    known = set(BODIES) | set(CORE_OBJECTS)
    for name, version in (pins or {}).items():
        name, version = str(name).strip(), str(version).strip()
        if name == ENVELOPES:
            if version != "off":
                raise exception.ConfigError(
                    group="agent", option="wire_pins", value="%s:%s" % (name, version),
                    reason="envelopes can only be pinned 'off' (plain bodies)")
        elif name not in known:
            raise exception.ConfigError(
                group="agent", option="wire_pins", value=name,
                reason="not an object this agent sends (known: %s)"
                       % ", ".join(sorted(known)))
        else:
            try:
                versioned.parse_version(version)
            except ValueError as err:
                raise exception.ConfigError(group="agent", option="wire_pins",
                                            value="%s:%s" % (name, version), reason=str(err))
        checked[name] = version
    _configured.clear()
    _configured.update(checked)


def pinned(name):
    """The version pinned for object ``name``: :data:`PINS_ENV` first, then
    ``[agent] wire_pins``; None when not pinned."""
    for item in os.environ.get(PINS_ENV, "").split(","):
        key, sep, version = item.strip().partition("=")
        if sep and key.strip() == name:
            return version.strip()
    return _configured.get(name)


def dump_data(migrate_data):
    return migrate_data.to_primitive(target_version=pinned("MigrateData"))


def load_data(primitive):
    return md.MigrateData.from_primitive(primitive)


def dump_uris(uris):
    return uris.to_primitive(target_version=pinned("MigrationURIs"))


def load_uris(data):
    return uri_mod.MigrationURIs.from_dict(data)


def dump_settings(settings):
    return settings.to_primitive(target_version=pinned("MigrationSettings"))


def load_settings(data):
    return settings_mod.MigrationSettings.from_dict(data)


def load_progress(data):
    return driver_mod.JobProgress.from_dict(data)


def dump_convergence(measurement, link, plan):
    """What the strategy saw and chose (``POST /v1/plans``), as versioned objects."""
    return {"measurement": measurement.to_primitive(
                target_version=pinned("DirtyRateMeasurement")),
            "link": link.to_primitive(target_version=pinned("LinkRate")),
            "plan": plan.to_primitive(target_version=pinned("MigrationPlan"))}


def load_convergence(data):
    """``(DirtyRateMeasurement, LinkRate, MigrationPlan)`` from
    :func:`dump_convergence`, or from the plain dicts of an older agent."""
    return (convergence.DirtyRateMeasurement.from_dict(data["measurement"]),
            convergence.LinkRate.from_dict(data["link"]),
            strategy.MigrationPlan.from_dict(data["plan"]))


def load_info(data):
    return driver_mod.InstanceInfo(**{k: data[k] for k in
                                      ("name", "state", "memory_bytes", "disk_bytes", "reason")
                                      if k in data})


def dump_driver_info(info):
    return info.to_primitive(target_version=pinned("DriverInfo"))


def load_driver_info(data):
    return driver_mod.DriverInfo.from_dict(data)


#: The core's versioned objects, by wire name (they cross inside the bodies).
CORE_OBJECTS = {cls._name(): cls for cls in (
    md.MigrateData, uri_mod.MigrationURIs, settings_mod.MigrationSettings,
    driver_mod.DriverInfo, driver_mod.JobProgress, convergence.DirtyRateMeasurement,
    convergence.LinkRate, strategy.MigrationPlan)}
CORE_OBJECTS[settings_mod.MigrationSettings.OVERRIDES] = settings_mod.MigrationSettings


def plain_bodies():
    """Pinned to the plain bodies of the release before versioned bodies?"""
    return pinned("envelopes") == "off"


# -- the agent's bodies ------------------------------------------------------------------


def schema_check(schema):
    """A field check validating against JSON ``schema``; its name (and so the
    class's fingerprint) changes when the schema does."""
    validator = jsonschema.Draft202012Validator(schema)

    def check(value):
        error = jsonschema.exceptions.best_match(validator.iter_errors(versioned.thaw(value)))
        if error is not None:
            raise ValueError(error.message[:200])
        return value

    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:12]
    check.__name__ = "schema_%s" % digest
    return check


def open_json(value):
    """Any JSON value (bounded as a whole by ``from_primitive``)."""
    return value


class Body(versioned.VersionedData):
    """A JSON body of the agent's API (see the module doc)."""

    def fields(self):
        """The fields as a plain dict, the form the handlers and the CLI read."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def dump(self):
        """What to send: the envelope, at the version pinned for this body."""
        if plain_bodies():
            return versioned.thaw(self._plain())
        return self.to_primitive(target_version=pinned(self._name()))

    def _plain(self):
        return self.fields()

    @classmethod
    def load(cls, data):
        """From a peer: an envelope, or a plain body read as this version."""
        if isinstance(data, dict) and versioned.NAME_KEY in data:
            return cls.from_primitive(data)
        if not isinstance(data, dict):
            raise cls._invalid("<body>", data, "must be of type object")
        return cls.from_primitive({versioned.NAME_KEY: cls._name(),
                                   versioned.VERSION_KEY: cls.VERSION,
                                   versioned.DATA_KEY: data})


def _required(schema, name, since="1.0"):
    return versioned.field(since, schema_check(schema["properties"][name]),
                           default=versioned.REQUIRED)


def _optional(schema, name, since="1.0", default=None):
    check = schema_check(schema["properties"][name])

    def optional(value):
        return None if value is None else check(value)

    optional.__name__ = "optional_%s" % check.__name__
    return versioned.field(since, optional, default=default)


def _overrides(since="1.0"):
    """The per-migration overrides: versioned on their own (MigrationSettings'
    version), so their schema is not part of the request's fingerprint."""
    check = schema_check(schemas.OVERRIDES)

    def check_overrides(value):
        return None if value is None else check(value)

    return versioned.field(since, check_overrides, default=None)


def _unwrap_overrides(primitive):
    return settings_mod.MigrationSettings.overrides_from_primitive(primitive)


def dump_overrides(overrides):
    """Per-migration overrides as the versioned object inside a request."""
    return settings_mod.MigrationSettings.overrides_to_primitive(
        overrides, target_version=pinned(settings_mod.MigrationSettings.OVERRIDES))


class Request(Body):
    """A request body: checked field by field against its JSON schema."""

    #: The closed JSON schema of the plain body (every field of this version).
    SCHEMA: ClassVar[dict] = schemas.EMPTY
    #: Fields holding a versioned object of their own: name -> its loader.
    NESTED: ClassVar[dict] = {}

    @classmethod
    def _invalid(cls, field, value, reason):
        if reason.startswith("missing"):
            reason = "is required"
        elif reason.startswith("unknown field"):
            reason = "is not allowed here (%s)" % reason
        else:
            reason = "is invalid: %s" % reason
        return errors.BadRequest(field=field, reason=reason)

    @classmethod
    def _from_fields(cls, fields):
        fields = {k: v for k, v in fields.items() if v is not None}
        for name, load in cls.NESTED.items():
            value = fields.get(name)
            if isinstance(value, dict) and versioned.NAME_KEY in value:
                try:
                    fields[name] = load(value)
                except exception.InvalidWireData as err:
                    raise errors.BadRequest(
                        field="%s.%s" % (name, err.kwargs.get("field")),
                        reason="is invalid: %s" % err.kwargs.get("reason"))
        validation.validate(fields, cls.SCHEMA)
        return cls(**fields)

    def _plain(self):
        return {k: v for k, v in self.fields().items() if v is not None}

    def dump(self):
        data = self._plain()
        for name in self.NESTED:
            if name in data and not plain_bodies():
                data[name] = dump_overrides(data[name])
        if plain_bodies():
            return versioned.thaw(data)
        version = pinned(self._name()) or self.VERSION
        return dict(self.to_primitive(target_version=version),
                    **{versioned.DATA_KEY: {k: versioned.thaw(v) for k, v in data.items()
                                            if k in self._fields_of(version)}})

    @classmethod
    def _fields_of(cls, version):
        target = versioned.parse_version(version)
        return {f.name for f in dataclasses.fields(cls)
                if versioned.parse_version(f.metadata["since"]) <= target}


@dataclasses.dataclass(frozen=True)
class MigrationRequest(Request):
    """``POST /v1/migrations`` and ``/v1/plans``: which guest goes where, how."""

    # Version 1.0: instance, destination, block_migration, options (overrides of
    #              MigrationSettings, a versioned object of their own).
    VERSION = "1.0"
    SCHEMA = schemas.MIGRATION
    NESTED = {"options": _unwrap_overrides}

    instance: str = _required(schemas.MIGRATION, "instance")
    destination: dict = _required(schemas.MIGRATION, "destination")
    block_migration: bool = _optional(schemas.MIGRATION, "block_migration", default=False)
    options: Optional[dict] = _overrides()


@dataclasses.dataclass(frozen=True)
class SlotRequest(Request):
    """``POST /v1/slots``: a source agent takes a slot for its migration."""

    # Version 1.0: migration_id, source, instance.
    VERSION = "1.0"
    SCHEMA = schemas.SLOT

    migration_id: str = _required(schemas.SLOT, "migration_id")
    source: str = _required(schemas.SLOT, "source")
    instance: str = _required(schemas.SLOT, "instance")


@dataclasses.dataclass(frozen=True)
class StepRequest(Request):
    """``POST /v1/steps/<name>``: a destination step; each step's schema in
    :data:`schemas.STEPS` says which fields it needs."""

    # Version 1.0: instance, migration_id, block_migration, migrate_data.
    VERSION = "1.0"
    SCHEMA = schemas.STEP

    instance: str = _required(schemas.STEP, "instance")
    migration_id: Optional[str] = _optional(schemas.STEP, "migration_id")
    block_migration: Optional[bool] = _optional(schemas.STEP, "block_migration")
    migrate_data: Optional[dict] = _optional(schemas.STEP, "migrate_data")


@dataclasses.dataclass(frozen=True)
class ProbeRequest(Request):
    """``POST /v1/probes``: listen once on the inbound address."""

    # Version 1.0: timeout.
    VERSION = "1.0"
    SCHEMA = schemas.PROBE_LISTEN

    timeout: Optional[float] = _optional(schemas.PROBE_LISTEN, "timeout")


@dataclasses.dataclass(frozen=True)
class ProbeConnectRequest(Request):
    """``POST /v1/probes/connect``: dial a peer's probe."""

    # Version 1.0: address, port, payload, timeout.
    VERSION = "1.0"
    SCHEMA = schemas.PROBE_CONNECT

    address: str = _required(schemas.PROBE_CONNECT, "address")
    port: int = _required(schemas.PROBE_CONNECT, "port")
    payload: str = _required(schemas.PROBE_CONNECT, "payload")
    timeout: Optional[float] = _optional(schemas.PROBE_CONNECT, "timeout")


_EVACUATION = schemas.EVACUATION


@dataclasses.dataclass(frozen=True)
class EvacuationRequest(Request):
    """``POST /v1/evacuations``: evacuate this host (or plan it: ``dry_run``)."""

    # Version 1.0: destinations, instances, dry_run, link_rate_mib, fixed_cost_s,
    #              pipeline, measure_dirty_rate, options.
    # Version 1.1: instance names end at the end of the text (no trailing newline).
    VERSION = "1.1"
    SCHEMA = _EVACUATION
    NESTED = {"options": _unwrap_overrides}

    destinations: list = _required(_EVACUATION, "destinations")
    instances: Optional[list] = _optional(_EVACUATION, "instances")
    dry_run: Optional[bool] = _optional(_EVACUATION, "dry_run")
    link_rate_mib: Optional[float] = _optional(_EVACUATION, "link_rate_mib")
    fixed_cost_s: Optional[float] = _optional(_EVACUATION, "fixed_cost_s")
    pipeline: Optional[bool] = _optional(_EVACUATION, "pipeline")
    measure_dirty_rate: Optional[bool] = _optional(_EVACUATION, "measure_dirty_rate")
    options: Optional[dict] = _overrides()


class Answer(Body):
    """An answer body: declared top-level fields, each bounded JSON. Answers
    may be large (records with their events), hence the larger bounds."""

    MAX_NODES = 1_000_000
    MAX_CHARS = 64 << 20

    @classmethod
    def build(cls, data):
        """This side's answer; a key not declared is a bug (TypeError), not data
        silently dropped."""
        return cls(**data)


def _answer(name, version, fields, doc):
    """An :class:`Answer` class: ``fields`` is ``"a b c@1.1"`` (``@``: since)."""
    specs = []
    for spec in fields.split():
        field_name, _, since = spec.partition("@")
        specs.append((field_name, Any, versioned.field(since or "1.0", open_json)))
    cls = dataclasses.make_dataclass(name, specs, bases=(Answer,), frozen=True,
                                     namespace={"VERSION": version, "__doc__": doc})
    cls.__module__ = __name__
    return cls


HostFacts = _answer(
    "HostFacts", "1.1",
    "hostname agent my_live_migration_ip inbound_cidr inbound local_addresses interfaces "
    "routes driver resources migration wire@1.1",
    """``GET /v1/host``. Version 1.1: Adds wire (the body versions this agent speaks).""")
Route = _answer("Route", "1.0", "to dev src gateway type error",
                "``GET /v1/host/route``: the kernel's route to an address.")
Instance = _answer("Instance", "1.1", "name state memory_bytes disk_bytes reason@1.1",
                   "``GET /v1/instances/<name>``: a guest's state and size. "
                   "Version 1.1: Adds reason (why it is in that state).")
Probe = _answer("Probe", "1.0", "id address port payload received received_from open",
                "``POST /v1/probes``, ``GET /v1/probes/<id>``: a listening probe.")
ProbeResult = _answer("ProbeResult", "1.0",
                      "connected acknowledged local_address error seconds",
                      "``POST /v1/probes/connect``: what dialling a probe did.")
_MIGRATION_FIELDS = ("id instance source destination destination_url block_migration "
                     "options status step created finished progress uris result error "
                     "traffic last_event")
MigrationSummary = _answer("MigrationSummary", "1.0", _MIGRATION_FIELDS,
                           "A migration's record without its events (lists, actions).")
MigrationRecord = _answer("MigrationRecord", "1.0", _MIGRATION_FIELDS + " events",
                          "``GET /v1/migrations/<id>``: a migration's record and events.")
MigrationList = _answer("MigrationList", "1.0", "migrations",
                        "``GET /v1/migrations``: MigrationSummary records.")
Plan = _answer("Plan", "1.0",
               "instance source destination destination_url block_migration migrate_data "
               "uris settings driver hypervisor trust convergence",
               "``POST /v1/plans``: what a migration would do (``migplane explain``).")
Slot = _answer("Slot", "1.0", "migration_id lease_s host released",
               "``POST|PUT|DELETE /v1/slots/<id>``: a slot taken, renewed, released.")
SlotList = _answer("SlotList", "1.0", "host running limit when_busy leases",
                   "``GET /v1/slots``: the slots held on this host.")
StepAnswer = _answer("StepAnswer", "1.0", "migrate_data",
                     "``POST /v1/steps/<name>``: the step's MigrateData (or null).")
StepList = _answer("StepList", "1.0", "steps", "``GET /v1/steps``: the steps served.")
_EVACUATION_FIELDS = ("id source status created finished link_rate link_rate_source "
                      "destinations plan guests result error last_event")
EvacuationSummary = _answer("EvacuationSummary", "1.0", _EVACUATION_FIELDS,
                            "An evacuation's record without its events.")
EvacuationRecord = _answer("EvacuationRecord", "1.0", _EVACUATION_FIELDS + " events",
                           "``GET /v1/evacuations/<id>``: an evacuation and its events.")
EvacuationList = _answer("EvacuationList", "1.0", "evacuations",
                         "``GET /v1/evacuations``: EvacuationSummary records.")
EvacuationPlan = _answer("EvacuationPlan", "1.0",
                         "source link_rate link_rate_source destinations plan",
                         "``POST /v1/evacuations`` with ``dry_run``: the plan.")

#: Every body, by its wire name.
BODIES = {cls._name(): cls for cls in (
    MigrationRequest, SlotRequest, StepRequest, ProbeRequest, ProbeConnectRequest,
    EvacuationRequest, HostFacts, Route, Instance, Probe, ProbeResult, MigrationSummary,
    MigrationRecord, MigrationList, Plan, Slot, SlotList, StepAnswer, StepList,
    EvacuationSummary, EvacuationRecord, EvacuationList, EvacuationPlan)}

#: The request body of each POST path a client sends one to.
REQUESTS = (
    (re.compile(r"/v1/(migrations|plans)\Z"), MigrationRequest),
    (re.compile(r"/v1/slots\Z"), SlotRequest),
    (re.compile(r"/v1/steps/[A-Za-z0-9_]+\Z"), StepRequest),
    (re.compile(r"/v1/probes\Z"), ProbeRequest),
    (re.compile(r"/v1/probes/connect\Z"), ProbeConnectRequest),
    (re.compile(r"/v1/evacuations\Z"), EvacuationRequest),
)


def versions():
    """The version of every body this side speaks (in its host facts)."""
    return {name: cls.VERSION for name, cls in sorted(BODIES.items())}


def dump_request(path, body):
    """The body a client sends to ``path``: its request object's envelope; a
    body-less action (``{}``) as it is. A body that is not a valid request is
    sent as it is too: the agent judges it, answering a 400 naming the field."""
    for pattern, cls in REQUESTS:
        if pattern.match(path):
            try:
                return cls.load(body).dump()
            except (errors.BadRequest, exception.InvalidWireData,
                    exception.IncompatibleVersion):
                return body
    return body


def load_request(cls, data):
    """A request body as the plain dict of its fields: defaults filled in, a
    field neither sent nor defaulted (None) left out, so ``body.get(name,
    default)`` reads as before versioned bodies."""
    return {k: v for k, v in cls.load(data).fields().items() if v is not None}


def dump_answer(cls, data):
    """An answer's envelope (or plain ``data`` when pinned to plain bodies)."""
    if plain_bodies():
        return data
    return cls.build(data).dump()


def load_answer(data):
    """What an agent answered, as a plain dict: an envelope is read by its
    class (another major refused); a plain answer (an agent of the release
    before versioned bodies) and an error are returned as they are."""
    if not (isinstance(data, dict) and versioned.NAME_KEY in data):
        return data
    cls = BODIES.get(data.get(versioned.NAME_KEY))
    if cls is None or not issubclass(cls, Answer):
        raise exception.InvalidWireData(name="answer", field=versioned.NAME_KEY,
                                        value=data.get(versioned.NAME_KEY),
                                        reason="not an answer this side knows")
    fields = cls.from_primitive(data).fields()
    for name, value in fields.items():  # lists of records: each a body of its own
        if isinstance(value, list) and any(isinstance(item, dict)
                                           and versioned.NAME_KEY in item for item in value):
            fields[name] = [load_answer(item) for item in value]
    return fields
