"""Evacuations run by the source agent (``/v1/evacuations``) on fake-world hosts."""

import time

import pytest

from migplane.agent import errors
from migplane.core import exception
from migplane.core import units

SIZES = {"vm1": 192, "vm2": 128, "vm3": 96, "vm4": 64}


@pytest.fixture
def hosts(world, start_agent):
    for name, mib in SIZES.items():
        world.add_guest("host-a", name, memory_mib=mib, dirty_mib_s=4 if name == "vm2" else 0)
    a = start_agent("host-a", max_concurrent=2)
    b = start_agent("host-b", my_live_migration_ip="198.51.100.12", max_concurrent=2)
    c = start_agent("host-c", my_live_migration_ip="198.51.100.13", max_concurrent=2)
    return a, b, c


def body(*dests, **extra):
    return dict({"destinations": [{"url": d.url} for d in dests], "link_rate_mib": 100,
                 "fixed_cost_s": 0.5}, **extra)


def wait(c, evacuation_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = c.get("/v1/evacuations/%s" % evacuation_id)
        if record["status"] != "running":
            return record
        time.sleep(0.02)
    raise AssertionError("evacuation %s still running" % evacuation_id)


def test_the_agent_evacuates_its_host_and_registers_each_migration(hosts, world, client):
    a, b, c = hosts
    record = client(a).post("/v1/evacuations", body(b, c))
    assert record["status"] == "running" and record["source"] == "host-a"
    assert {g["name"] for g in record["guests"]} == set(SIZES)
    assert record["plan"]["streams"] == 1 and record["link_rate"] == 100 * units.MiB
    done = wait(client(a), record["id"])

    assert done["status"] == "completed", done
    for guest in done["guests"]:
        assert guest["status"] == "completed"
        assert world.where(guest["name"]) == [guest["destination"]]
        assert guest["percent"] == 100.0 and guest["migration_id"]
    assert not world.hosts["host-a"].guests
    # every guest's migration is a migration of the agent: list/show follow them
    listed = client(a).get("/v1/migrations")["migrations"]
    assert {m["instance"] for m in listed} == set(SIZES)
    assert all(m["status"] == "completed" for m in listed)
    kinds = [e["kind"] for e in done["events"]]
    assert kinds[0] == "planned" and kinds[-1] == "finished"
    assert a.agent.slots.peak <= 2 and b.agent.slots.peak <= 2 and c.agent.slots.peak <= 2
    assert a.agent.slots.running == 0
    assert client(a).get("/v1/evacuations")["evacuations"][0]["id"] == record["id"]


def test_a_dry_run_plans_and_moves_nothing(hosts, world, client):
    a, b, c = hosts
    plan = client(a).post("/v1/evacuations", body(b, c, dry_run=True))
    assert {g["name"] for g in plan["plan"]["guests"]} == set(SIZES)
    assert plan["plan"]["predicted_s"] >= plan["plan"]["ideal_s"]
    assert {d["name"] for d in plan["destinations"]} == {"host-b", "host-c"}
    assert sorted(world.hosts["host-a"].guests) == sorted(SIZES)
    assert client(a).get("/v1/migrations")["migrations"] == []


def test_no_room_names_the_guest_and_its_memory(world, start_agent, client):
    world.add_guest("host-a", "big", memory_mib=4096)
    world.hosts["host-b"].memory_bytes = 1024 * units.MiB
    a, b = start_agent("host-a"), start_agent("host-b")
    with pytest.raises(exception.EvacuationRefused) as info:
        client(a).post("/v1/evacuations", body(b))
    assert "big needs 4096.0 MiB of memory" in str(info.value)
    assert world.where("big") == ["host-a"]


def test_the_source_as_destination_is_refused(hosts, client):
    a, b, _ = hosts
    with pytest.raises(errors.BadRequest) as info:
        client(a).post("/v1/evacuations", dict(body(b), destinations=[
            {"url": b.url}, {"host": "host-a"}]))
    assert "source and destination must differ" in str(info.value)
    # named by its URL, the source is no peer of its own: refused all the same
    with pytest.raises(errors.Forbidden) as info:
        client(a).post("/v1/evacuations", body(b, a))
    assert "not one of [agent] peers" in str(info.value)


def test_unknown_instances_are_not_found(hosts, client):
    a, b, _ = hosts
    with pytest.raises(exception.InstanceNotFound) as info:
        client(a).post("/v1/evacuations", body(b, instances=["nope"]))
    assert "nope" in str(info.value)


def test_bad_bodies_name_the_field(hosts, client):
    a, b, _ = hosts
    with pytest.raises(errors.BadRequest) as info:
        client(a).post("/v1/evacuations", {"destinations": []})
    assert "destinations" in str(info.value)
    with pytest.raises(errors.BadRequest) as info:
        client(a).post("/v1/evacuations", body(b, speed=3))
    assert "speed" in str(info.value)
    with pytest.raises(errors.NotFound):
        client(a).get("/v1/evacuations/nope")


def test_a_destination_reporting_nonsense_is_refused(hosts, client, monkeypatch):
    a, b, _ = hosts
    facts = b.agent.host_facts

    def lying():
        data = facts()
        data["resources"]["memory_free_bytes"] = "lots"
        return data

    monkeypatch.setattr(b.agent, "host_facts", lying)
    with pytest.raises(errors.BadRequest) as info:
        client(a).post("/v1/evacuations", body(b, dry_run=True))
    assert "resources.memory_free_bytes = 'lots'" in str(info.value)


def test_abort_stops_the_evacuation_and_leaves_every_guest_on_one_host(hosts, world,
                                                                       client):
    a, b, c = hosts
    record = client(a).post("/v1/evacuations", body(b, c))
    aborted = client(a).post("/v1/evacuations/%s/abort" % record["id"])
    assert aborted["id"] == record["id"]
    done = wait(client(a), record["id"])
    assert done["status"] in ("partial", "failed")
    for guest in done["guests"]:
        assert len(world.where(guest["name"])) == 1
        assert world.where(guest["name"]) == [guest["running_on"]]
    assert any(g["status"] in ("not_started", "aborted") for g in done["guests"])
    with pytest.raises(exception.EvacuationRefused) as info:
        client(a).post("/v1/evacuations/%s/abort" % record["id"])
    assert "already ended" in str(info.value)


def test_measured_dirty_rates_feed_the_plan(hosts, client, monkeypatch):
    a, b, _ = hosts
    calls = []

    class Measurement:
        def __init__(self, rate):
            self.dirty_rate = rate

    def measure(name, window_s):
        calls.append((name, window_s))
        if name == "vm3":
            raise RuntimeError("no dirty-rate calculation here")
        return Measurement(64 * units.MiB if name == "vm2" else 0)

    monkeypatch.setattr(a.agent.driver, "measure_dirty_rate", measure, raising=False)
    plan = client(a).post("/v1/evacuations", body(b, dry_run=True,
                                                  measure_dirty_rate=True))["plan"]
    assert sorted(n for n, _ in calls) == sorted(SIZES)
    guests = {g["name"]: g for g in plan["guests"]}
    # vm2 dirties 64 MiB/s of a 100 MiB/s link: it sends much more than its memory
    assert guests["vm2"]["predicted_bytes"] > 2 * guests["vm2"]["memory_bytes"]
    assert guests["vm3"]["predicted_bytes"] == guests["vm3"]["memory_bytes"]
    plain = client(a).post("/v1/evacuations", body(b, dry_run=True))["plan"]
    assert {g["name"]: g["predicted_bytes"] for g in plain["guests"]}["vm2"] \
        == 128 * units.MiB
