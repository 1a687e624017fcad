"""The agent's bodies are versioned objects (migplane.agent.wire), as every wire object.

A newer minor version's unknown fields are ignored, an older one's missing
fields take their defaults, another major version is refused naming the
object and both versions; requests stay as strict as their schemas.
"""

import dataclasses
import logging

import pytest

from migplane.agent import errors
from migplane.agent import testing
from migplane.agent import wire
from migplane.core import exception
from migplane.core import settings as settings_mod
from migplane.core import versioned

call = testing.request
NAME, VERSION, DATA = versioned.NAME_KEY, versioned.VERSION_KEY, versioned.DATA_KEY

#: Change a body's fields (or a request field's schema) and its fingerprint
#: changes: bump the class's VERSION (minor: a field with a default added) and
#: put the new fingerprint here.
EXPECTED_FINGERPRINTS = {
    "EvacuationList": "1.0-487e0b49ebbbf635",
    "EvacuationPlan": "1.0-f0f772c813eccfcd",
    "EvacuationRecord": "1.0-83d1dd47da742e0f",
    "EvacuationRequest": "1.1-ddcbab8773839de4",
    "EvacuationSummary": "1.0-9556b4337ddcfe7f",
    "HostFacts": "1.1-bf74f65f031de1c9",
    "Instance": "1.1-7e8d85076f06ad77",
    "MigrationList": "1.0-c7c24c3641a5572a",
    "MigrationRecord": "1.0-7f0bb3a3443f260e",
    "MigrationRequest": "1.0-d4e0130fb560ece5",
    "MigrationSummary": "1.0-e35e7c6e64b8b07c",
    "Plan": "1.0-93ef539ed5289661",
    "Probe": "1.0-fa673dbdd7dd948c",
    "ProbeConnectRequest": "1.0-3b9b3561e3dfd9c4",
    "ProbeRequest": "1.0-20362c9c6f2485e1",
    "ProbeResult": "1.0-4dc1be3075646b70",
    "Route": "1.0-ae47e1259f274ae5",
    "Slot": "1.0-9fc1be74a5312bf0",
    "SlotList": "1.0-2d5fe3279b100977",
    "SlotRequest": "1.0-04f2633b5b7545f0",
    "StepAnswer": "1.0-1bdbd9a244831f48",
    "StepList": "1.0-60d5b9083b43202b",
    "StepRequest": "1.0-f6f6ab22100fb1ba",
}


def test_no_body_changes_without_a_version_bump():
    got = {name: cls.fingerprint() for name, cls in wire.BODIES.items()}
    assert got == EXPECTED_FINGERPRINTS


@pytest.mark.parametrize("cls", [c for c in wire.BODIES.values()
                                 if issubclass(c, wire.Request)], ids=lambda c: c.__name__)
def test_every_request_declares_exactly_its_schemas_fields(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields == set(cls.SCHEMA["properties"])
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING}
    assert required == set(cls.SCHEMA.get("required", ()))


def _envelope(name, version, data):
    return {NAME: name, VERSION: version, DATA: data}


def _request(b, **changes):
    return dict({"instance": "vm1", "destination": {"url": b.url}}, **changes)


def test_every_answer_is_an_envelope(pair):
    a, _ = pair
    for path, name in (("/v1/host", "HostFacts"), ("/v1/migrations", "MigrationList"),
                       ("/v1/slots", "SlotList"), ("/v1/steps", "StepList"),
                       ("/v1/evacuations", "EvacuationList"),
                       ("/v1/instances/vm1", "Instance")):
        answer = call(a, "GET", path)
        assert answer.status_code == 200, answer.text
        body = answer.envelope()
        assert (body[NAME], body[VERSION]) == (name, wire.BODIES[name].VERSION)
    facts = call(a, "GET", "/v1/host").json()
    assert facts["wire"]["MigrationRequest"] == wire.MigrationRequest.VERSION
    assert facts["driver"][NAME] == "DriverInfo"  # no plain DriverInfo dict any more


def test_a_newer_minor_requests_unknown_fields_are_ignored(pair, world, caplog):
    a, b = pair
    newer = _envelope("MigrationRequest", "1.9", dict(_request(b), colour="red"))
    overrides = _envelope(settings_mod.MigrationSettings.OVERRIDES, "1.99",
                          {"bandwidth_mib": 40, "warp_drive": True})
    newer[DATA]["options"] = overrides
    with caplog.at_level(logging.WARNING):
        answer = call(a, "POST", "/v1/migrations", body=newer)
    assert answer.status_code == 202, answer.text
    record = testing.wait_for(_operator_client(a), answer.json()["id"])
    assert record["status"] == "completed" and world.where("vm1") == ["host-b"]
    assert record["options"] == {"bandwidth_mib": 40}  # what was applied, and only that
    assert "warp_drive" in caplog.text


def _operator_client(local):
    from migplane.agent import client as client_mod
    return client_mod.AgentClient(local.url, testing.TOKEN, timeout=30)


@pytest.mark.parametrize("body, field, reason", [
    (lambda b: _envelope("MigrationRequest", "1.0", dict(_request(b), colour="red")),
     "colour", "unknown field for version 1.0"),
    (lambda b: _envelope("SlotRequest", "1.0", _request(b)), "migplane.name",
     "MigrationRequest"),
    (lambda b: _envelope("MigrationRequest", "1.0", {"destination": {"url": b.url}}),
     "instance", "is required"),
    (lambda b: _envelope("MigrationRequest", "1.3", _request(b, options=_envelope(
        settings_mod.MigrationSettings.OVERRIDES, "1.0", {"bandwidth_mib": -1}))),
     "options.bandwidth_mib", "at least 0"),
    (lambda b: _envelope("MigrationRequest", "1.0", _request(b, options=_envelope(
        settings_mod.MigrationSettings.OVERRIDES, "1.0", {"bandwidth_mib": "x"}))),
     "options.bandwidth_mib", "expected an integer"),
    (lambda b: _envelope("MigrationRequest", "1.0", _request(b, options=_envelope(
        settings_mod.MigrationSettings.OVERRIDES, "1.0", {"tunnelled": True}))),
     "options.tunnelled", "unknown field"),
])
def test_bad_envelopes_are_400_naming_the_field(pair, world, body, field, reason):
    a, b = pair
    answer = call(a, "POST", "/v1/migrations", body=body(b))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and reason in error["message"], error
    assert a.agent.registry.all() == [] and world.where("vm1") == ["host-a"]


def test_another_major_request_is_refused_naming_the_object_and_versions(pair):
    a, b = pair
    answer = call(a, "POST", "/v1/migrations",
                  body=_envelope("MigrationRequest", "2.0", _request(b)))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "IncompatibleVersion"
    assert "MigrationRequest version 2.0" in error["message"]
    assert "major version 1" in error["message"]


def test_an_older_minor_answer_gets_the_defaults():
    older = _envelope("HostFacts", "1.0", {"hostname": "host-b", "driver": None})
    facts = wire.load_answer(older)
    assert facts["hostname"] == "host-b" and facts["wire"] is None


def test_a_newer_minor_answer_keeps_what_this_side_knows():
    newer = _envelope("Slot", "1.4", {"migration_id": "m1", "lease_s": 9, "colour": "x"})
    assert wire.load_answer(newer) == {"migration_id": "m1", "lease_s": 9, "host": None,
                                       "released": None}


@pytest.mark.parametrize("answer, error", [
    (_envelope("Slot", "2.0", {"migration_id": "m1"}), exception.IncompatibleVersion),
    (_envelope("Slot", "1.0", {"migration_id": "m1", "colour": "x"}),
     exception.InvalidWireData),
    (_envelope("SlotRequest", "1.0", {}), exception.InvalidWireData),
    (_envelope("Nonsense", "1.0", {}), exception.InvalidWireData),
])
def test_bad_answers_are_typed_errors(answer, error):
    with pytest.raises(error):
        wire.load_answer(answer)


def test_lists_hold_records_each_versioned(pair, client):
    a, b = pair
    started = client(a).post("/v1/migrations", _request(b))
    testing.wait_for(client(a), started["id"])
    raw = call(a, "GET", "/v1/migrations").envelope()
    assert raw[DATA]["migrations"][0][NAME] == "MigrationSummary"
    listed = client(a).get("/v1/migrations")["migrations"]
    assert [m["id"] for m in listed] == [started["id"]] and "events" not in listed[0]


def test_pins_send_older_versions_and_plain_bodies(pair, monkeypatch):
    a, _ = pair
    monkeypatch.setenv(wire.PINS_ENV, "HostFacts=1.0,DriverInfo=1.0")
    body = call(a, "GET", "/v1/host").envelope()
    assert body[VERSION] == "1.0" and "wire" not in body[DATA]
    assert body[DATA]["driver"][VERSION] == "1.0"
    monkeypatch.setenv(wire.PINS_ENV, "envelopes=off")
    plain = call(a, "GET", "/v1/host").envelope()
    assert NAME not in plain and plain["hostname"] == "host-a"


def test_the_client_sends_envelopes_or_pinned_plain_bodies(monkeypatch):
    body = {"instance": "vm1", "destination": {"host": "host-b"},
            "options": {"bandwidth_mib": 5}}
    sent = wire.dump_request("/v1/migrations", body)
    assert sent[NAME] == "MigrationRequest" and sent[VERSION] == "1.0"
    assert sent[DATA]["options"][NAME] == settings_mod.MigrationSettings.OVERRIDES
    assert wire.dump_request("/v1/migrations/abc/abort", {}) == {}
    monkeypatch.setenv(wire.PINS_ENV, "envelopes=off")
    assert wire.dump_request("/v1/migrations", body) == dict(body, block_migration=False)
    bad = {"instance": "../x", "destination": {"host": "b"}}
    assert wire.dump_request("/v1/plans", bad) == bad  # the agent names the field


def test_a_bad_body_through_the_client_is_the_agents_400(pair, client):
    a, _ = pair
    with pytest.raises(errors.BadRequest, match="'instance'"):
        client(a).post("/v1/plans", {"instance": "../x", "destination": {"host": "b"}})


# -- pins from the configuration ------------------------------------------------------


@pytest.fixture
def pins(monkeypatch):
    monkeypatch.delenv(wire.PINS_ENV, raising=False)
    yield wire.configure_pins
    wire.configure_pins({})


def test_wire_pins_come_from_the_configuration_and_the_environment_overrides(
        pins, monkeypatch):
    pins({"MigrateData": "1.0", "JobProgress": "1.0", "envelopes": "off"})
    assert wire.pinned("MigrateData") == "1.0" and wire.plain_bodies()
    assert wire.pinned("HostFacts") is None
    monkeypatch.setenv(wire.PINS_ENV, "MigrateData=1.1")
    assert wire.pinned("MigrateData") == "1.1" and wire.pinned("JobProgress") == "1.0"


@pytest.mark.parametrize("bad, named", [
    ({"NoSuchThing": "1.0"}, "'NoSuchThing'"),
    ({"MigrateData": "one"}, "MigrateData:one"),
    ({"envelopes": "on"}, "envelopes:on"),
])
def test_a_bad_wire_pin_is_refused_naming_it(pins, bad, named):
    with pytest.raises(exception.ConfigError) as info:
        pins(bad)
    assert named in str(info.value) and "wire_pins" in str(info.value)


def test_the_agent_reads_its_wire_pins_at_start(pins, make_conf, monkeypatch):
    from migplane.agent import main

    class Built(Exception):
        """The agent would be built now: the pins must already be in force."""

    def agent(conf):
        raise Built(wire.pinned("DriverInfo"))

    monkeypatch.setattr(main.service, "Agent", agent)
    conf = make_conf("[agent]\nwire_pins = DriverInfo:1.0\n")
    main.opts.register_opts(conf)
    with pytest.raises(Built, match="1.0"):
        main.build(conf)
