"""Hostile request bodies and parameters: 400 naming the field, never 500."""

import json

import pytest

from migplane.agent import errors
from migplane.agent import schemas
from migplane.agent import testing
from migplane.agent import validation

call = testing.request
step = testing.peer_step


def _nested(depth, leaf=None):
    value = leaf if leaf is not None else {}
    for _ in range(depth):
        value = {"driver_data": value}
    return value


def test_a_body_of_100000_nested_arrays_is_400(pair):
    a, _ = pair
    answer = call(a, "POST", "/v1/migrations", raw="[" * 100_000 + "]" * 100_000)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "<body>"


def test_driver_data_nested_900_deep_is_400_naming_it(pair, world):
    a, b = pair
    data = {"migplane.name": "MigrateData", "migplane.version": "1.1",
            "migplane.data": {"dest_hostname": "host-b", "block_migration": False,
                              "driver_data": _nested(900)}}
    answer = step(a, b, "pre_live_migration", {"instance": "vm1", "migrate_data": data})
    assert answer.status_code == 400, answer.text
    assert "migrate_data.migplane.data.driver_data" in answer.json()["error"]["field"]
    assert world.hosts["host-b"].prepared == {}


@pytest.mark.parametrize("resource", ["migrations", "evacuations"])
@pytest.mark.parametrize("since", ["²", "١٢", "-1", "1.0", "1e3", "9" * 40])
def test_since_must_be_an_ascii_number(pair, since, resource):
    a, _ = pair
    answer = call(a, "GET", "/v1/%s/abc?since=%s" % (resource, since))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "since"


@pytest.mark.parametrize("url", ["https://[::1", "https://[::1]:99999",
                                 "https://[zz::1]:7480", "https://h:x"])
def test_a_malformed_destination_url_is_400(pair, url):
    a, _ = pair
    answer = call(a, "POST", "/v1/migrations",
                  body={"instance": "vm1", "destination": {"url": url}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "destination.url"


@pytest.mark.parametrize("body,field", [
    ({"instance": "vm1\n", "destination": {"host": "host-b"}}, "instance"),
    ({"instance": "vm1", "destination": {"host": "host-b\n"}}, "destination.host"),
    ({"instance": "vm1", "destination": {"url": "https://127.0.0.1:1\n"}},
     "destination.url"),
])
def test_patterns_are_anchored_a_trailing_newline_is_refused(pair, body, field):
    a, _ = pair
    answer = call(a, "POST", "/v1/migrations", body=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def test_slot_ids_and_versions_refuse_a_trailing_newline(pair):
    a, b = pair
    answer = call(b, "POST", "/v1/slots", peer=a, body={
        "migration_id": "m1\n", "source": "host-a", "instance": "vm1"})
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "migration_id"
    assert b.agent.slots.running == 0


def test_uris_without_listen_address_are_400_naming_it():
    uris = {"control_uri": "qemu+tcp://host-b/system", "data_uri": None,
            "disks_uri": None, "tls_destination": None, "bulk_host": "host-b",
            "plane": "management"}
    with pytest.raises(errors.BadRequest) as info:
        validation.validate(uris, schemas.URIS)
    assert info.value.kwargs["field"] == "listen_address"


def test_uris_from_a_request_never_reach_the_driver(pair, world):
    a, b = pair
    body = {"instance": "vm1", "migrate_data": {}, "settings": {},
            "uris": {"control_uri": "qemu+tcp://127.0.0.1:1/system"}}
    for caller in ({"peer": b}, {}):
        answer = call(a, "POST", "/v1/steps/live_migration", body=body, **caller)
        assert answer.status_code in (401, 404) and "Traceback" not in answer.text
    assert world.transfers == {}


def test_no_error_names_a_token(pair):
    a, _ = pair
    secret = testing.TOKEN + "-wrong"
    answer = call(a, "GET", "/v1/host", token=secret)
    assert answer.status_code == 401 and secret not in answer.text
    assert json.dumps(answer.json()).count("token") >= 1
