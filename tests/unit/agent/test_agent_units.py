"""The agent's small parts: slots and leases, host facts, URLs, error mapping."""

import json
import socket
import threading

import pytest

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import hostfacts
from migplane.agent import opts as agent_opts
from migplane.agent import records
from migplane.agent import schemas
from migplane.agent import slots as slots_mod
from migplane.agent import validation
from migplane.core import exception
from migplane.core import settings as settings_mod


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _slots(limit=1, when_busy="wait", clock=None):
    return slots_mod.HostSlots("host-b", settings_mod.ConcurrencySettings(
        max_concurrent=limit, when_busy=when_busy, busy_timeout=5), lease_s=30,
        clock=clock or Clock())


def test_leases_are_idempotent_and_refuse_past_the_limit():
    slots = _slots()
    slots.lease("m1", "host-a", "vm1")
    slots.lease("m1", "host-a", "vm1")
    assert slots.running == 1
    with pytest.raises(exception.TooManyMigrations, match="host-b already runs 1"):
        slots.lease("m2", "host-c", "vm2")
    assert slots.unlease("m1").instance == "vm1"
    assert slots.unlease("m1") is None
    slots.lease("m2", "host-c", "vm2")
    assert slots.running == 1


def test_a_lease_not_renewed_expires():
    clock = Clock()
    slots = _slots(clock=clock)
    slots.lease("m1", "host-a", "vm1")
    clock.now = 20
    assert slots.renew("m1") is not None
    clock.now = 45
    assert slots.running == 1
    clock.now = 51
    assert slots.running == 0
    assert slots.renew("m1") is None
    slots.lease("m2", "host-c", "vm2")


def test_a_lapsed_lease_goes_back_to_its_own_source_with_what_pre_did(tmp_path):
    from migplane.agent import store as store_mod

    clock = Clock()
    store = store_mod.RecordStore(str(tmp_path))
    slots = slots_mod.HostSlots("host-b", settings_mod.ConcurrencySettings(
        max_concurrent=2), lease_s=30, clock=clock, store=store)
    slots.lease("m1", "host-a", "vm1")
    slots.record("m1", prepared=True, migrate_data={"x": 1})
    clock.now = 31
    assert slots.running == 0 and slots.get("m1") is None
    with pytest.raises(exception.MigrationError, match="taken by host-a"):
        slots.lease("m1", "host-c", "vm1")
    # the guest arrived meanwhile: a lapsed lease is no new slot, its guest is its own
    again = slots.lease("m1", "host-a", "vm1", defined=lambda name: True)
    assert again.prepared and again.migrate_data == {"x": 1}
    with pytest.raises(exception.DestinationCheckFailed):
        slots.lease("m2", "host-a", "vm2", defined=lambda name: True)
    slots.unlease("m1")
    restarted = slots_mod.HostSlots("host-b", settings_mod.ConcurrencySettings(
        max_concurrent=2), lease_s=30, clock=clock, store=store)
    with pytest.raises(exception.MigrationError, match="used here before"):
        restarted.lease("m1", "host-a", "vm1")


def test_unlimited_slots():
    slots = _slots(limit=0)
    for i in range(10):
        slots.lease("m%d" % i, "host-a", "vm%d" % i)
    assert slots.running == 10


class Remote:
    slot_lease_s = 4

    def __init__(self, busy_times=0, when_busy="wait"):
        self.busy_times = busy_times
        self.when_busy = when_busy
        self.calls = []

    def take_slot(self, migration_id, source, instance):
        self.calls.append("take")
        if self.busy_times:
            self.busy_times -= 1
            err = exception.TooManyMigrations(host="host-b", running=1, limit=1)
            err.kwargs["when_busy"] = self.when_busy
            raise err

    def renew_slot(self, migration_id):
        self.calls.append("renew")

    def release_slot(self, migration_id):
        self.calls.append("release")


def _migration_slots(remote, local=None, **kwargs):
    local = local or slots_mod.HostSlots("host-a", settings_mod.ConcurrencySettings(
        max_concurrent=1, when_busy=kwargs.pop("when_busy", "wait"), busy_timeout=10))
    return slots_mod.MigrationSlots(local, remote, "m1", "vm1", sleep=lambda s: None,
                                    **kwargs)


def test_waits_for_the_destination_then_holds_both_slots():
    remote = Remote(busy_times=3)
    slots = _migration_slots(remote)
    slots.acquire("host-a", "host-b")
    assert remote.calls == ["take"] * 4
    assert slots.local.running == 1
    slots.release("host-a", "host-b")
    assert slots.local.running == 0
    assert remote.calls[-1] == "release"


class Unreachable(Remote):
    """A destination whose management plane is down for ``failures`` calls."""

    slot_lease_s = 120

    def __init__(self, failures):
        super().__init__()
        self.failures = failures
        self.released = threading.Event()

    def release_slot(self, migration_id):
        self.calls.append("release")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the management plane is down")
        self.released.set()


def test_a_slot_the_destination_could_not_release_is_released_once_it_answers():
    remote = Unreachable(failures=3)
    slots = _migration_slots(remote)
    slots.acquire("host-a", "host-b")
    slots.release("host-a", "host-b")
    assert slots.local.running == 0
    assert remote.released.wait(60)  # a hang guard
    assert remote.calls.count("release") == 4


def test_refused_when_the_destination_says_refuse():
    slots = _migration_slots(Remote(busy_times=1, when_busy="refuse"))
    with pytest.raises(exception.TooManyMigrations):
        slots.acquire()
    assert slots.local.running == 0


def test_gives_up_after_busy_timeout():
    clock = Clock()
    remote = Remote(busy_times=10 ** 6)
    slots = _migration_slots(remote, clock=clock)
    slots._sleep = lambda s: setattr(clock, "now", clock.now + s)
    with pytest.raises(exception.TooManyMigrations):
        slots.acquire()
    assert 20 <= len(remote.calls) <= 22  # 10 s of 0.5 s polls


def test_cancelled_while_queued():
    slots = _migration_slots(Remote(busy_times=10 ** 6), cancelled=lambda: True)
    with pytest.raises(exception.MigrationAborted, match="queued"):
        slots.acquire()


# -- host facts ------------------------------------------------------------------


class FakeIPRoute:
    """pyroute2's IPRoute answers, as plain dicts (what netlink messages .get())."""

    def __init__(self, routes=None, broken=False):
        self.routes = routes or {}
        self.broken = broken

    def get_links(self):
        if self.broken:
            from migplane import netlink
            raise netlink.NetlinkError("permission denied")
        return [{"index": 2, "flags": 0x1, "IFLA_IFNAME": "mig0", "IFLA_OPERSTATE": "UP",
                 "IFLA_STATS64": {"tx_bytes": 1000, "rx_bytes": 10}},
                {"index": 3, "flags": 0, "IFLA_IFNAME": "mgmt0", "IFLA_OPERSTATE": "DOWN",
                 "IFLA_STATS64": {"tx_bytes": 5, "rx_bytes": 6}}]

    def get_addr(self):
        return [{"index": 2, "family": socket.AF_INET, "prefixlen": 24, "scope": 0,
                 "IFA_LOCAL": "198.51.100.11"}]

    def get_routes(self, family, table):
        return []

    def route(self, command, dst):
        if dst not in self.routes:
            raise OSError(101, "Network is unreachable")
        return [self.routes[dst]]


def test_interfaces_and_counters_over_netlink():
    found = hostfacts.interfaces(FakeIPRoute())
    assert found[0]["addresses"][0] == {"address": "198.51.100.11", "prefixlen": 24,
                                        "family": "inet", "scope": "global"}
    assert found[0]["up"] and not found[1]["up"]
    assert hostfacts.counters(FakeIPRoute()) == {"mig0": (1000, 10), "mgmt0": (5, 6)}


def test_route_to():
    ipr = FakeIPRoute(routes={"198.51.100.12": {"RTA_OIF": 2, "RTA_PREFSRC": "198.51.100.11",
                                                "type": 1}})
    route = hostfacts.route_to("198.51.100.12", ipr)
    assert (route["dev"], route["src"], route["type"]) == ("mig0", "198.51.100.11",
                                                           "unicast")
    unreachable = hostfacts.route_to("203.0.113.9", ipr)
    assert unreachable["dev"] is None and "no route" in unreachable["error"]
    with pytest.raises(exception.InvalidAddress):
        hostfacts.route_to("198.51.100.12/../x", ipr)


def test_netlink_failures_are_agent_errors():
    with pytest.raises(errors.AgentError, match="netlink failed: permission denied"):
        hostfacts.interfaces(FakeIPRoute(broken=True))


def test_the_real_netlink_of_this_namespace():
    found = hostfacts.interfaces()
    lo = next(i for i in found if i["ifname"] == "lo")
    assert {"address": "127.0.0.1", "prefixlen": 8, "family": "inet",
            "scope": "host"} in lo["addresses"]
    assert hostfacts.route_to("127.0.0.1")["dev"] == "lo"


def test_traffic_by_plane():
    before = {"mig0": (100, 0), "mgmt0": (50, 0), "lo": (7, 7)}
    after = {"mig0": (1100, 30), "mgmt0": (60, 0), "lo": (7, 7), "new0": (3, 0)}
    got = hostfacts.traffic(before, after, {"mig0": "migration", "mgmt0": "management"})
    assert got["planes"] == {"migration": {"tx_bytes": 1000, "rx_bytes": 30},
                             "management": {"tx_bytes": 10, "rx_bytes": 0}}
    # idle interfaces, and one that appeared meanwhile (no baseline), are left out
    assert set(got["interfaces"]) == {"mig0", "mgmt0"}


# -- URLs, validation, errors ---------------------------------------------------------


@pytest.mark.parametrize("url", ["https://192.0.2.11:7480", "http://host-a",
                                 "https://[2001:db8::1]:7480/"])
def test_good_agent_urls(url):
    assert client_mod.check_url(url).startswith("http")


@pytest.mark.parametrize("url", ["ftp://192.0.2.11", "https://", "192.0.2.11:7480",
                                 "https://u:p@192.0.2.11", "https://192.0.2.11/x",
                                 "https://192.0.2.11?q", "https://bad host"])
def test_bad_agent_urls(url):
    with pytest.raises((errors.BadRequest, exception.InvalidAddress)):
        client_mod.check_url(url)


def test_errors_cross_the_wire_with_their_type():
    err = exception.InstanceNotFound(instance="vm1", host="host-a")
    body = errors.to_body(err)
    assert body["error"]["status"] == 404
    back = errors.from_body("http://x", 404, json.loads(json.dumps(body)))
    assert isinstance(back, exception.InstanceNotFound) and str(back) == str(err)
    odd = errors.from_body("http://x", 418, {"error": {"type": "Teapot", "message": "m"}})
    assert isinstance(odd, errors.AgentRequestError) and "418" in str(odd)
    assert "answered 500" in str(errors.from_body("http://x", 500, {}))


@pytest.mark.parametrize("status", [200, 502])
def test_an_answer_that_is_not_json_is_named_not_dumped(monkeypatch, status):
    """A proxy's HTML page (even with a 200) is an error saying what came, in
    one short line, never the page's markup."""
    import requests

    page = ("<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway"
            "</h1>" + "<p>filler</p>" * 500 + "</body></html>")
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response._content = page.encode()
    client = client_mod.AgentClient("https://192.0.2.11:8775", token=None)
    monkeypatch.setattr(client.session, "request", lambda *a, **kw: response)
    with pytest.raises(errors.AgentRequestError) as caught:
        client.get("/v1/host")
    text = str(caught.value)
    assert "not a JSON answer (text/html)" in text and "Bad Gateway" in text
    assert "<" not in text and len(text) < 300 and str(status) in text


def test_every_schema_is_a_valid_schema():
    for schema in [*schemas.STEPS.values(), schemas.MIGRATION, schemas.SLOT,
                   schemas.PROBE_LISTEN, schemas.PROBE_CONNECT, schemas.EMPTY]:
        assert validation._validator(schema) is validation._validator(schema)  # checked




def test_the_config_builder_writes_what_oslo_config_reads(make_conf):
    text = agent_opts.config_text({
        "DEFAULT": {"my_live_migration_ip": "198.51.100.11", "log_file": None},
        "agent": {"bind_host": "192.0.2.11", "port": 7480, "auth_tokens": ["t1", "t2"],
                  "peers": {"host-c": "https://192.0.2.13:7480",
                            "host-b": "https://192.0.2.12:7480"},
                  "insecure_lab_mode": True}})
    assert "log_file" not in text
    conf = make_conf(text)
    agent_opts.register_opts(conf)
    assert conf.agent.auth_tokens == ["t1", "t2"] and conf.agent.port == 7480
    assert conf.agent.insecure_lab_mode is True
    assert conf.agent.peers == {"host-b": "https://192.0.2.12:7480",
                                "host-c": "https://192.0.2.13:7480"}


def test_an_event_log_numbers_events_and_answers_since():
    log = records.EventLog(maxlen=3)
    for kind in ("step", "progress", "progress", "step", "progress"):
        if kind == "progress":
            log.replace_last_of("progress", {"kind": kind})
        else:
            log.append({"kind": kind})
    # a run of progress keeps its latest; numbers never repeat; the oldest fall off
    assert [(e["seq"], e["kind"]) for e in log.since()] == [
        (3, "progress"), (4, "step"), (5, "progress")]
    assert log.last == 5 and [e["seq"] for e in log.since(3)] == [4, 5]
    assert log.since(5) == [] and log.any("step") and not log.any("settled")
    again = records.EventLog(maxlen=3)
    again.restore(log.since(), log.last)
    assert again.append({"kind": "settled"})["seq"] == 6
