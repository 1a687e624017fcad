"""Authentication and request validation: refused with a clear 4xx, agent keeps serving."""

import json

import pytest

from migplane.agent import testing

TOKEN = testing.TOKEN


call = testing.request
step = testing.peer_step


def assert_still_serving(local):
    answer = call(local, "GET", "/v1/host")
    assert answer.status_code == 200
    assert answer.json()["hostname"] == local.agent.hostname


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwdw=="},
    {"X-Auth-Token": "wrong"}, {"Authorization": "Bearer "},
])
@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/host"), ("POST", "/v1/migrations"), ("GET", "/v1/migrations"),
    ("POST", "/v1/steps/pre_live_migration"), ("GET", "/v1/nowhere"),
])
def test_requests_without_a_valid_token_get_401(pair, headers, method, path):
    a, _ = pair
    answer = call(a, method, path, token=None, headers=headers, body={})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    error = answer.json()["error"]
    assert error["type"] == "Unauthorized"
    assert TOKEN not in answer.text
    assert_still_serving(a)


def test_x_auth_token_and_rotated_tokens_are_accepted(world, start_agent):
    old, new = "old-token-0123456789", "new-token-0123456789"
    local = start_agent("host-a", tokens=(old, new))
    assert call(local, "GET", "/v1/host", token=old).status_code == 200
    assert call(local, "GET", "/v1/host", token=None,
                headers={"X-Auth-Token": new}).status_code == 200
    assert call(local, "GET", "/v1/host", token="other").status_code == 401


def _migration(b_url, **changes):
    body = {"instance": "vm1", "destination": {"url": b_url}}
    body.update(changes)
    return body


BAD_MIGRATIONS = [
    (lambda url: {"destination": {"url": url}}, "instance", "is required"),
    (lambda url: {"instance": "vm1"}, "destination", "is required"),
    (lambda url: _migration(url, colour="red"), "colour", "unknown field"),
    (lambda url: _migration(url, block_migration="yes"), "block_migration", "boolean"),
    (lambda url: _migration(url, instance=""), "instance", "empty"),
    (lambda url: _migration(url, instance="../../etc"), "instance", "invalid value"),
    (lambda url: _migration(url, instance=7), "instance", "string"),
    (lambda url: _migration(url, options={"bandwidth_mib": -1}), "options.bandwidth_mib",
     "at least 0"),
    (lambda url: _migration(url, options={"timeout_action": "explode"}),
     "options.timeout_action", "one of"),
    (lambda url: _migration(url, options={"tunnelled": True}), "options.tunnelled",
     "unknown field"),
    (lambda url: {"instance": "vm1", "destination": {"url": "ftp://192.0.2.12"}},
     "destination.url", "invalid value"),
    (lambda url: {"instance": "vm1", "destination": {"url": url + "/x?y"}},
     "destination.url", "scheme://host[:port] only"),
    (lambda url: {"instance": "vm1", "destination": {"url": "http://user@192.0.2.12"}},
     "destination.url", "scheme://host[:port] only"),
    (lambda url: [1, 2], "<body>", "object"),
]


@pytest.mark.parametrize("make,field,reason", BAD_MIGRATIONS)
def test_bad_migration_bodies_name_the_field(pair, world, make, field, reason):
    a, b = pair
    answer = call(a, "POST", "/v1/migrations", body=make(b.url))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "BadRequest"
    assert repr(field) in error["message"]
    assert reason in error["message"]
    assert error.get("field") == field
    assert "Traceback" not in answer.text
    assert a.agent.registry.all() == []
    assert world.where("vm1") == ["host-a"]
    assert_still_serving(a)


@pytest.mark.parametrize("raw,reason", [
    ("{not json", "not valid JSON"), ('{"instance": NaN}', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_malformed_json_is_refused(pair, raw, reason):
    a, _ = pair
    answer = call(a, "POST", "/v1/migrations", raw=raw)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]["message"]
    assert_still_serving(a)


def _data(**fields):
    base = {"dest_hostname": "host-b", "block_migration": False, "driver_data": {}}
    base.update(fields)
    return {"migplane.name": "MigrateData", "migplane.version": "1.1",
            "migplane.data": base}


@pytest.mark.parametrize("body,field", [
    ({"instance": "vm1"}, "migrate_data"),
    ({"instance": "vm1", "migrate_data": {"migplane.name": "MigrateData"}},
     "migrate_data.migplane.version"),
    ({"instance": "vm1", "migrate_data": dict(_data(), **{"migplane.version": "x"})},
     "migrate_data.migplane.version"),
    ({"instance": "vm1", "migrate_data": _data(target_connect_addr="192.0.2.1/evil",
                                               inbound_addr_source="option")},
     "target_connect_addr"),
    ({"instance": "vm1", "migrate_data": _data(block_migration="no")}, "block_migration"),
])
def test_bad_migrate_data_is_refused_naming_the_field(pair, world, body, field):
    a, b = pair
    answer = step(a, b, "pre_live_migration", body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]["message"]
    assert "vm1" not in world.hosts["host-b"].prepared
    assert_still_serving(b)


def test_migrate_data_of_another_major_version_is_refused(pair):
    a, b = pair
    body = {"instance": "vm1", "migrate_data": dict(_data(), **{"migplane.version": "2.0"})}
    answer = step(a, b, "pre_live_migration", body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "IncompatibleVersion"


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/nowhere", 404), ("DELETE", "/v1/host", 405),
    ("POST", "/v1/steps/format_disk", 401), ("GET", "/v1/migrations/0123abc", 404),
    ("GET", "/v1/instances/no-such-vm", 404), ("GET", "/v1/instances/bad%20name", 400),
    ("GET", "/v1/migrations/x?since=yesterday", 400),
    ("GET", "/v1/host/route", 400), ("GET", "/v1/host/route?to=a/b", 400),
    ("GET", "/v1/host/route?to=192.0.2.1&via=x", 400),
])
def test_unknown_or_bad_resources_get_json_errors(pair, method, path, status):
    a, _ = pair
    answer = call(a, method, path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]
    assert_still_serving(a)


def test_a_body_on_a_get_must_be_empty_json(pair):
    a, _ = pair
    answer = call(a, "GET", "/v1/host", body={"x": 1})
    assert answer.status_code == 400
    assert "'x'" in answer.json()["error"]["message"]


def test_oversized_bodies_are_refused(world, start_agent):
    local = start_agent("host-a", agent_options={"max_body_bytes": 2048})
    answer = call(local, "POST", "/v1/migrations", raw=json.dumps({"instance": "x" * 5000}))
    assert answer.status_code == 413
    assert "2048" in answer.json()["error"]["message"]
    assert_still_serving(local)


def test_unexpected_errors_are_500_without_trace_and_logged(pair, world, caplog):
    a, b = pair
    world.fail("host-b", "check_can_live_migrate_destination",
               ZeroDivisionError("boom"))
    answer = step(a, b, "check_can_live_migrate_destination", {"instance": "vm1"})
    assert answer.status_code == 500
    message = answer.json()["error"]["message"]
    assert "ZeroDivisionError: boom" in message and "ref " in message
    assert "Traceback" not in answer.text
    assert any("Traceback" in (r.exc_text or "") for r in caplog.records) or any(
        r.exc_info for r in caplog.records)
    assert_still_serving(b)


def test_driver_errors_keep_their_type_and_status(pair):
    a, _ = pair
    answer = call(a, "GET", "/v1/instances/ghost")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "InstanceNotFound"


def test_many_bad_requests_then_a_migration_still_works(pair, world, client):
    a, b = pair
    for i in range(30):
        call(a, "POST", "/v1/migrations", raw="{" * i)
        call(a, "POST", "/v1/migrations", token="bad", body={})
    record = client(a).post("/v1/migrations", _migration(b.url))
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"
    assert world.where("vm1") == ["host-b"]
