"""A peer cannot harm a host: hostile agents against real ones (fake driver).

Each test plays a malicious agent holding a valid certificate of the test CA,
as a source (calling a destination's slots and steps) or as a destination
(answering a source's calls through :class:`testing.HostilePeer`), or a
network client that never authenticates, and checks that the agent it
attacks refuses, bounds or survives it, and that its guests survive. The
file and domain items against the libvirt driver are in
``tests/functional/agent/test_hostile_peers_lab.py``.
"""

import concurrent.futures
import json
import logging
import os
import socket
import sqlite3
import ssl
import stat
import threading
import time

import pytest

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import migrations
from migplane.agent import safety
from migplane.agent import store as store_mod
from migplane.agent import testing
from migplane.agent import tls
from migplane.core import events
from migplane.core import exception
from migplane.core import versioned

MIG_B = "198.51.100.12"
step = testing.peer_step


def _data(instance="vm1", **driver_data):
    return {"migrate_data": {"migplane.name": "MigrateData", "migplane.version": "1.0",
                             "migplane.data": {"dest_hostname": "host-b",
                                               "block_migration": False,
                                               "driver_data": driver_data}}}


def _slot(source, destination, migration_id, instance):
    return testing.request(destination, "POST", "/v1/slots", peer=source,
                           body={"migration_id": migration_id,
                                 "source": source.agent.hostname, "instance": instance})


# -- High: a source peer and the destination's guests ----------------------------------


@pytest.mark.parametrize("state", ["running", "paused", "shutoff"])
def test_no_slot_for_a_guest_the_destination_already_has(world, pair, state):
    """The attack: a slot naming a guest of host-b, then its rollback destroyed it."""
    a, b = pair
    world.add_guest("host-b", "victim", memory_mib=16)
    world.hosts["host-b"].guests["victim"].state = state
    answer = _slot(a, b, "m-evil", "victim")
    assert answer.status_code == 409 and "already defined here" in answer.text
    rolled = step(a, b, "rollback_live_migration_at_destination",
                  dict(_data(), instance="victim"), migration_id="m-evil2")
    # peer_step forces a lease in-process; the step still only undoes what pre did
    assert rolled.status_code == 200
    assert world.hosts["host-b"].guests["victim"].state == state


def test_rollback_removes_only_what_this_migrations_pre_found_absent(world, pair):
    a, b = pair
    assert _slot(a, b, "m1", "ghost").status_code == 201
    world.add_guest("host-b", "ghost", memory_mib=16)   # defined after the slot
    world.hosts["host-b"].guests["ghost"].state = "paused"
    refused = testing.request(b, "POST", "/v1/steps/pre_live_migration", peer=a,
                              body=dict(_data("ghost"), instance="ghost", migration_id="m1"))
    assert refused.status_code == 409 and "already defined" in refused.text
    rolled = testing.request(b, "POST", "/v1/steps/rollback_live_migration_at_destination",
                             peer=a, body=dict(_data("ghost"), instance="ghost",
                                               migration_id="m1"))
    assert rolled.status_code == 200
    assert world.hosts["host-b"].guests["ghost"].state == "paused"


def test_slot_ids_are_never_reused_and_one_guest_has_one_slot(world, start_agent):
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = start_agent("host-a")
    c = start_agent("host-c")
    b = start_agent("host-b", max_concurrent=4, agent_options={"max_slots_per_peer": 2})
    assert _slot(a, b, "m1", "vm1").status_code == 201
    assert _slot(c, b, "m2", "vm1").status_code == 409        # vm1 has its slot
    assert testing.request(b, "DELETE", "/v1/slots/m1", peer=a).status_code == 200
    again = _slot(a, b, "m1", "vm1")
    assert again.status_code == 409 and "used here before" in again.text
    assert _slot(a, b, "m3", "vm3").status_code == 201
    assert _slot(a, b, "m4", "vm4").status_code == 201
    full = _slot(a, b, "m5", "vm5")                            # a holds its 2
    assert full.status_code == 409 and "limit" in full.text
    assert _slot(c, b, "m6", "vm6").status_code == 201         # c still gets one


def test_destination_slots_and_what_pre_did_survive_its_restart(world, start_agent,
                                                                tmp_path):
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = start_agent("host-a")
    options = {"state_dir": str(tmp_path / "b-state")}
    b = start_agent("host-b", my_live_migration_ip=MIG_B, agent_options=options)
    assert _slot(a, b, "m1", "vm1").status_code == 201
    pre = testing.request(b, "POST", "/v1/steps/pre_live_migration", peer=a,
                          body=dict(_data(), instance="vm1", migration_id="m1"))
    assert pre.status_code == 200
    b.stop()
    b.agent.store.close()
    b2 = start_agent("host-b", my_live_migration_ip=MIG_B, agent_options=options)
    lease = b2.agent.slots.get("m1")
    assert lease is not None and lease.prepared and lease.migrate_data is not None
    world.hosts["host-b"].guests["vm1"] = world.hosts["host-a"].guests.pop("vm1")
    world.hosts["host-b"].guests["vm1"].state = "running"
    post = testing.request(b2, "POST", "/v1/steps/post_live_migration_at_destination",
                           peer=a, body=dict(_data(), instance="vm1", migration_id="m1"))
    assert post.status_code == 200, post.text
    assert testing.request(b2, "DELETE", "/v1/slots/m1", peer=a).status_code == 200
    assert _slot(a, b2, "m1", "vm1").status_code == 409  # released, even across restarts


# -- High: a destination peer and the source's guest -------------------------------


def test_a_destination_cannot_turn_a_migration_into_a_block_migration(world, pair,
                                                                      client, pki):
    a, b = pair

    def flip(method, path, status, data):
        if path.endswith(("/pre_live_migration", "/check_can_live_migrate_destination")):
            inner = data["migplane.data"]["migrate_data"]["migplane.data"]
            inner["block_migration"] = True
            inner["driver_data"]["created_disks"] = ["/etc/shadow"]
            return status, data
        return None

    evil = testing.HostilePeer(pki, "host-b", b, a, tamper=flip)
    try:
        a.agent.peers["host-b"] = evil.url
        record = testing.wait_for(client(a), client(a).post(
            "/v1/migrations", {"instance": "vm1", "destination": {"host": "host-b"}})["id"])
    finally:
        evil.stop()
    assert record["status"] == "failed"
    assert "block_migration=True" in record["error"]
    assert world.where("vm1") == ["host-a"]


def test_the_source_keeps_the_driver_data_it_sent(world):
    from migplane.core import migrate_data as md

    class Evil:
        def pre_live_migration(self, instance, data):
            return data.replace(driver_data=dict(data.driver_data, disks=["/etc/shadow"]))

    record = migrations.MigrationRecord("m1", "vm1", "host-a", "host-b", "https://x", True,
                                        {})
    sent = md.MigrateData(dest_hostname="host-b", block_migration=True,
                          driver_data={"disks": [{"path": "/img/vm1"}]})
    answer = migrations.PreparedData(Evil(), record).pre_live_migration("vm1", sent)
    assert versioned.thaw(answer.driver_data["disks"]) == [{"path": "/img/vm1"}]


# -- Medium: connections before authentication --------------------------------------


def _idle(local, source, count):
    held = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(local.server.address)
        held.append(s)
    return held


def test_idle_clients_of_one_address_cannot_lock_others_out(world, start_agent, client):
    local = start_agent("host-a", agent_options={"max_connections": 40,
                                                 "max_unauthenticated_per_address": 8,
                                                 "request_timeout": 60})
    held = _idle(local, "127.0.0.2", 45)
    try:
        deadline = time.monotonic() + 60   # the server culls as it accepts
        while local.server.active > 8 + 1:
            assert time.monotonic() < deadline, local.server.active
            time.sleep(0.02)
        for _ in range(10):
            assert client(local).get("/v1/host")["hostname"] == "host-a"
    finally:
        for s in held:
            s.close()


def test_when_every_connection_is_taken_the_oldest_unauthenticated_goes(world,
                                                                          start_agent,
                                                                          client):
    local = start_agent("host-a", agent_options={"max_connections": 8,
                                                 "request_timeout": 60})
    held = []
    try:
        for n in range(2, 10):  # one each from 8 addresses: no address over its share
            held += _idle(local, "127.0.0.%d" % n, 1)
        time.sleep(0.3)
        for _ in range(5):
            assert client(local).get("/v1/host")["hostname"] == "host-a"
        assert local.server.culled >= 1
    finally:
        for s in held:
            s.close()


def test_no_100_continue_before_authentication(world, start_agent, pki):
    local = start_agent("host-a")
    context = ssl.create_default_context(cafile=pki.ca_file)
    with socket.create_connection(local.server.address) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"POST /v1/migrations HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            s.settimeout(1.0)
            with pytest.raises(socket.timeout):
                s.recv(100)
            s.sendall(b"{}        ")
            s.settimeout(10)
            first = s.recv(100)
    assert b"100 Continue" not in first and b" 401 " in first


def test_the_access_log_names_unauthenticated_requests(world, start_agent, caplog):
    local = start_agent("host-a")
    with caplog.at_level(logging.INFO, logger="migplane.agent.access"):
        assert testing.request(local, "GET", "/v1/host", token="x" * 20).status_code == 401
    line = next(r.getMessage() for r in caplog.records
                if r.name == "migplane.agent.access" and "/v1/host" in r.getMessage())
    assert "unauthenticated" in line and "operator" not in line


# -- Medium: answers of a destination peer ------------------------------------------


def _source_with(world, start_agent, pki, tamper, trickle=0.0, **options):
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = start_agent("host-a", agent_options=dict({"peer_answer_timeout": 2}, **options))
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    evil = testing.HostilePeer(pki, "host-b", b, a, tamper=tamper, trickle=trickle)
    a.agent.peers["host-b"] = evil.url
    return a, evil


def _huge(method, path, status, data):
    if path == "/v1/host":
        data["migplane.data"]["padding"] = "x" * (3 << 20)
        return status, data
    return None


def _deep(method, path, status, data):
    if path == "/v1/host":
        return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" \
            + b"[" * 200000 + b"]" * 200000
    return None


def _trickle(method, path, status, data):
    if path == "/v1/host":
        return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 1}" \
            + b" " * 100
    return None


def _redirect(method, path, status, data):
    if path == "/v1/host":
        return b"HTTP/1.0 307 Temporary Redirect\r\nLocation: https://198.51.100.66/x\r\n" \
            b"Content-Length: 0\r\n\r\n"
    return None


@pytest.mark.parametrize("tamper, trickle, said", [
    (_huge, 0.0, "more than the 1048576"),
    (_deep, 0.0, "nested deeper than 64"),
    (_trickle, 0.05, "took more than 2"),
    (_redirect, 0.0, "never followed"),
])
def test_answers_of_a_peer_are_bounded(world, start_agent, pki, client, tamper, trickle,
                                       said):
    a, evil = _source_with(world, start_agent, pki, tamper, trickle)
    try:
        with pytest.raises(errors.AgentError) as refused:
            client(a).post("/v1/plans", {"instance": "vm1",
                                         "destination": {"host": "host-b"}})
    finally:
        evil.stop()
    assert refused.value.status == 502 and said in str(refused.value)
    assert "198.51.100.66" not in [m for m, _, _ in evil.seen]
    assert client(a).get("/v1/host")["hostname"] == "host-a"   # still serving


def test_control_characters_from_a_peer_never_reach_a_log_or_a_screen(world, start_agent,
                                                                      pki, client,
                                                                      caplog):
    forged = "no\nINFO migplane.agent forged line\x1b[2J\x07"

    def fail(method, path, status, data):
        if path.endswith("/check_can_live_migrate_destination"):
            return 409, {"error": {"type": "DestinationCheckFailed", "message": forged,
                                   "status": 409}}
        return None

    a, evil = _source_with(world, start_agent, pki, fail)
    try:
        with caplog.at_level(logging.INFO):
            record = testing.wait_for(client(a), client(a).post(
                "/v1/migrations", {"instance": "vm1",
                                   "destination": {"host": "host-b"}})["id"])
    finally:
        evil.stop()
    shown = json.dumps(record)
    assert "forged line" in shown
    kept = a.agent.registry.get(record["id"]).to_dict()   # as stored, before any client
    for text in [record["error"], kept["error"],
                 *(e["message"] or "" for e in kept["events"]),
                 *(r.getMessage() for r in caplog.records)]:
        assert not any(c in text for c in "\n\x1b\x07"), text


# -- Medium: hostile database rows ---------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "{}", "[]", "5", '{"events": 5}',
                                  '{"created": "yesterday"}', '{"options": [1, 2]}'])
def test_hostile_rows_are_quarantined_and_reported_unresolved(world, start_agent,
                                                              client, tmp_path, text):
    state = tmp_path / "a-state"
    store = store_mod.RecordStore(str(state))
    good = {"id": "good1", "instance": "vm1", "source": "host-a", "destination": "host-b",
            "destination_url": "https://192.0.2.12:7480", "block_migration": False,
            "options": {}, "created": time.time(), "finished": time.time(),
            "status": "completed",
            "events": [], "last_event": 0}
    store.save(good)
    bad = dict(good, id="bad1", instance="vm7")
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    # a field of a record gone bad, or a whole row that is no record
    row = json.dumps(dict(bad, **fields)) if isinstance(fields, dict) and fields else text
    store.save(bad)
    store._db.execute("UPDATE migrations SET record = ? WHERE id = 'bad1'", (row,))
    store.close()
    a = start_agent("host-a", agent_options={"state_dir": str(state)})
    listed = {m["id"]: m for m in client(a).get("/v1/migrations")["migrations"]}
    assert listed["bad1"]["status"] == events.UNRESOLVED
    assert listed["bad1"]["instance"] == "vm7"
    assert "quarantine" in client(a).get("/v1/migrations/bad1")["error"]
    assert listed["good1"]["status"] == "completed"
    with sqlite3.connect(str(state / store_mod.FILENAME)) as db:
        assert db.execute("SELECT id FROM quarantine").fetchall() == [("bad1",)]


def test_the_state_files_are_private(world, start_agent, client, tmp_path):
    state = tmp_path / "private"
    a = start_agent("host-a", agent_options={"state_dir": str(state)})
    client(a).get("/v1/host")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in os.listdir(state):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name


def test_a_state_dir_others_can_read_is_refused_at_start(world, start_agent, tmp_path):
    state = tmp_path / "open"
    state.mkdir()
    state.chmod(0o755)
    with pytest.raises(exception.ConfigError, match="state_dir.*mode 755"):
        start_agent("host-a", agent_options={"state_dir": str(state)})


# -- Low -----------------------------------------------------------------------------


def test_one_evacuation_per_source_host(world, start_agent, client):
    for n in range(4):
        world.add_guest("host-a", "vm%d" % n, memory_mib=64, dirty_mib_s=150)
    a = start_agent("host-a", max_concurrent=1)
    b = start_agent("host-b", my_live_migration_ip=MIG_B, max_concurrent=1)
    barrier = threading.Barrier(10)

    def go(_):
        barrier.wait()
        try:
            client(a).post("/v1/evacuations", {"destinations": [{"url": b.url}],
                                               "link_rate_mib": 100, "fixed_cost_s": 0.5,
                                               "options": {"completion_timeout": 0}})
            return 202
        except exception.MigplaneError as err:
            return err.status

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(go, range(10)))
    assert statuses.count(202) == 1 and statuses.count(409) == 9, statuses
    for record in client(a).get("/v1/evacuations")["evacuations"]:
        client(a).post("/v1/evacuations/%s/abort" % record["id"])


@pytest.mark.parametrize("bind", ["0x0", "0", "::ffff:0.0.0.0", "0.0.0.0", "::", "0::0",
                                  "::0.0.0.0", "000.000.000.000"])
def test_wildcard_binds_are_refused_in_every_spelling(world, start_agent, bind):
    assert any(a.is_unspecified for a in safety.bind_addresses(bind)), bind
    # refused by the agent, or already by the option's type when the file is read
    with pytest.raises((exception.ConfigError, ValueError),
                       match="bind_host.*not on every address|not a valid host address"):
        start_agent("host-a", agent_options={"bind_host": bind})


@pytest.mark.parametrize("name", ["vm1\n", "vm1\r", "vm\u0661", "vm1\x00"])
def test_instance_names_are_ascii_to_the_end(pair, name):
    from urllib.parse import quote
    a, b = pair
    answer = testing.request(a, "GET", "/v1/instances/%s" % quote(name))
    assert answer.status_code == 400, answer.text
    evacuation = testing.request(a, "POST", "/v1/evacuations", body={
        "destinations": [{"url": b.url}], "instances": [name], "dry_run": True})
    assert evacuation.status_code == 400 and "instances.0" in evacuation.text


@pytest.mark.parametrize("version", ["1.0\n", "\u0661.\u0660", " +1.0 ", "+1.0", "1.0 "])
def test_envelope_versions_are_ascii_digits_only(pair, version):
    with pytest.raises(ValueError):
        versioned.parse_version(version)
    a, b = pair
    body = dict(_data(), instance="vm1", migration_id="m1")
    body["migrate_data"]["migplane.version"] = version
    assert step(a, b, "pre_live_migration", body).status_code == 400


@pytest.mark.parametrize("option, value", [("completion_timeout", 10 ** 300),
                                           ("downtime_ms", 10 ** 300),
                                           ("downtime_ms", 600_001)])
def test_settings_are_bounded(pair, client, option, value):
    a, b = pair
    with pytest.raises(errors.BadRequest, match=option):
        client(a).post("/v1/migrations", {"instance": "vm1",
                                          "destination": {"url": b.url},
                                          "options": {option: value}})


def test_start_up_refuses_a_certificate_peers_would_refuse(world, start_agent, pki):
    cert, key = pki.issue("host-b")
    with pytest.raises(exception.ConfigError, match="not for this host 'host-a'"):
        start_agent("host-a", agent_options={"cert_file": cert, "key_file": key})
    with pytest.raises(exception.ConfigError, match="ca_file.*no CA"):
        start_agent("host-a", agent_options={"ca_file": cert})
    own, _ = pki.issue("host-a")
    with pytest.raises(exception.ConfigError, match="expired"):
        tls.check_own_certificate(own, "host-a", pki.ca_file, now=time.time() + 10 ** 9)


def test_peer_transport_depth_count_skips_strings():
    assert client_mod.json_depth('{"a": "[[[[", "b": [1, {"c": []}]}') == 4
    assert client_mod.json_depth('"\\"[[["') == 0


def test_a_slow_step_is_no_slow_answer(world, start_agent, pki, client):
    """The bound is on the answer once it starts: a step may take longer to start."""
    def slow(method, path, status, data):
        if path.endswith("/pre_live_migration"):
            time.sleep(3)  # peer_answer_timeout is 2 s here
        return None

    a, evil = _source_with(world, start_agent, pki, slow)
    try:
        record = testing.wait_for(client(a), client(a).post(
            "/v1/migrations", {"instance": "vm1", "destination": {"host": "host-b"}})["id"])
    finally:
        evil.stop()
    assert record["status"] == "completed", record["error"]


def test_a_peers_connections_leave_the_budget_once_its_certificate_is_verified(
        world, start_agent, pki):
    a = start_agent("host-a")
    b = start_agent("host-b", agent_options={"max_unauthenticated_per_address": 2,
                                             "request_timeout": 60})
    cert, key = pki.issue("host-a")
    context = ssl.create_default_context(cafile=pki.ca_file)
    context.load_cert_chain(cert, key)
    peers = [context.wrap_socket(socket.create_connection(b.server.address),
                                 server_hostname="127.0.0.1") for _ in range(3)]
    try:
        # TLS 1.3: the server verifies the client's Finished after the client is done
        deadline = time.monotonic() + 60
        while sum(c.authenticated for c in list(b.server._conns.values())) < 3:
            assert time.monotonic() < deadline, "the peer's certificate was not seen"
            time.sleep(0.02)
        idle = _idle(b, "127.0.0.1", 4)   # same address: they cull each other only
        time.sleep(0.3)
        for s in peers:
            s.sendall(b"GET /v1/host HTTP/1.0\r\nHost: x\r\n\r\n")
            s.settimeout(20)
            assert s.recv(100).startswith(b"HTTP/1.0 200"), "a peer's connection was culled"
    finally:
        for s in peers + idle:
            s.close()
    assert b.server.culled >= 2
    assert a.agent.hostname == "host-a"
