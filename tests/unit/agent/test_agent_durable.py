"""Records that survive the source agent (issue 10, part 4), with the fake driver.

An agent "dies" here by stopping its server and freezing its flow thread in
its next sleep (what SIGKILL does to a process, minus the process); the
hypervisor, the fake world, goes on without it. A new agent on the same
state directory then finds the record and settles it.
"""

import socket
import sqlite3
import threading
import time

import pytest

from migplane.agent import migrations
from migplane.agent import reconcile
from migplane.agent import store as store_mod
from migplane.agent import testing
from migplane.core import flow as flow_mod

MIG_B = "198.51.100.12"
# a dead agent's flow thread ends with SystemExit when the test is over
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning")


class Mortal:
    """A flow sleep that, once ``dead`` is set, never returns to the flow."""

    def __init__(self, sleep):
        self._sleep = sleep
        self.dead = threading.Event()
        self.frozen = threading.Event()
        self.buried = threading.Event()

    def __call__(self, seconds):
        if self.dead.is_set():
            self.frozen.set()
            self.buried.wait(60)
            raise SystemExit("dead agent")  # ends the thread quietly
        self._sleep(seconds)


@pytest.fixture
def durable(start_agent, world, tmp_path):
    """Start agents with a state directory; ``kill`` one mid-migration."""
    mortals = []

    def start(host, state="state-a", agent_options=None, **kwargs):
        options = dict(agent_options or {}, state_dir=str(tmp_path / state))
        local = start_agent(host, agent_options=options, **kwargs)
        local.mortal = Mortal(local.agent.sleep)
        local.agent.sleep = local.mortal
        mortals.append(local.mortal)
        return local

    def kill(local):
        local.mortal.dead.set()
        assert local.mortal.frozen.wait(60), "the flow never slept again"
        for record in local.agent.registry.all():
            if record.flow is not None and record.flow.limiter is not None:
                record.flow.limiter._stop.set()  # its slot renewals die with it
        local.stop()
        local.agent.store.close()

    start.kill = kill
    yield start
    for mortal in mortals:
        mortal.buried.set()


def _client(local):
    from migplane.agent import client as client_mod
    return client_mod.AgentClient(local.url, testing.TOKEN, timeout=30)


def _begin(world, durable, converge=False):
    # dirties faster than the planes carry: the job runs until the test says
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=150)
    a = durable("host-a")
    b = durable("host-b", state="state-b", my_live_migration_ip=MIG_B)
    record = _client(a).post("/v1/migrations", {"instance": "vm1",
                                                "destination": {"url": b.url},
                                                "options": {"completion_timeout": 0}})
    deadline = time.monotonic() + 60
    while "vm1" not in world.transfers or world.transfers["vm1"].elapsed < 1:
        assert time.monotonic() < deadline, "the transfer never started"
        time.sleep(0.01)
    durable.kill(a)
    return a, b, record["id"]


def _converge(world):
    world.hosts["host-a"].guests["vm1"].dirty_rate = 0


def test_job_completed_while_the_agent_was_dead(world, durable):
    a, b, migration_id = _begin(world, durable)
    _converge(world)
    world.clock.sleep(30)  # libvirt finishes the job alone
    assert world.transfers["vm1"].state == "completed"
    a2 = durable("host-a")
    a2.agent.reconciler.join(20)
    done = testing.wait_for(_client(a2), migration_id)
    assert done["status"] == flow_mod.COMPLETED, done["error"]
    assert done["result"]["running_on"] == "host-b"
    assert done["error"] is None
    assert world.where("vm1") == ["host-b"]
    assert world.defined_on("vm1") == ["host-b"]  # post steps ran on both sides
    kinds = [e["kind"] for e in done["events"]]
    assert "reconciling" in kinds and kinds[-1] == "completed"
    assert "transfer_started" in kinds  # the events before the death are kept
    # bytes per plane, counted from before the transfer, across the restart
    assert done["traffic"]["planes"]["migration"]["tx_bytes"] >= 256 * 1024 * 1024
    assert b.agent.slots.running == 0


def test_an_ended_record_always_says_where_the_guest_is(world, durable, monkeypatch):
    """No reader (the CLI polling) ever sees a final status without its result."""
    a, b, migration_id = _begin(world, durable)
    _converge(world)
    world.clock.sleep(30)
    written = []
    save = store_mod.RecordStore.save

    def recording_save(self, data):
        written.append((data["status"], data.get("result")))
        return save(self, data)

    monkeypatch.setattr(store_mod.RecordStore, "save", recording_save)
    a2 = durable("host-a")
    assert testing.wait_for(_client(a2), migration_id)["status"] == "completed"
    a2.agent.reconciler.join(20)
    ended = [(status, result) for status, result in written
             if status not in migrations.ACTIVE]
    assert ended and all(result and result["running_on"] == "host-b"
                         for _, result in ended), ended


def test_guest_stayed_on_the_source(world, durable, assert_rolled_back):
    a, b, migration_id = _begin(world, durable)
    boot = world.hosts["host-a"].guests["vm1"].boot_id
    # the job failed while nobody watched: libvirt removed the incoming domain
    t = world.transfers["vm1"]
    t.state, t.error = "failed", "connection reset"
    world.hosts["host-b"].guests.pop("vm1")
    a2 = durable("host-a")
    done = testing.wait_for(_client(a2), migration_id)
    assert done["status"] == flow_mod.FAILED
    assert done["result"]["running_on"] == "host-a"
    assert "restarted" in done["error"]
    assert_rolled_back(boot_id=boot)
    assert b.agent.slots.running == 0


def test_job_still_running_is_watched_to_its_end(world, durable):
    a, b, migration_id = _begin(world, durable)
    _converge(world)
    a2 = durable("host-a")
    done = testing.wait_for(_client(a2), migration_id)
    assert done["status"] == flow_mod.COMPLETED, done["error"]
    assert [e for e in done["events"] if e["kind"] == "watching"]
    assert world.where("vm1") == ["host-b"] and world.defined_on("vm1") == ["host-b"]


def test_destination_agent_gone_for_good(world, durable, monkeypatch):
    monkeypatch.setattr(reconcile.Reconciler, "MAX_WATCH_S", 1.0)
    monkeypatch.setattr(reconcile.Reconciler, "RETRY_S", 0.05)
    a, b, migration_id = _begin(world, durable)
    b.stop()
    a2 = durable("host-a")
    done = testing.wait_for(_client(a2), migration_id)
    assert done["status"] == flow_mod.FAILED
    assert done["result"]["running_on"] == "host-a"
    assert "stayed unreachable" in done["error"] and "not cleaned up" in done["error"]
    assert done["result"]["verdict"] == "unresolved"  # host-b was never cleaned
    assert world.where("vm1") == ["host-a"]
    # the job was stopped, and let go of once the guest was known to run here
    assert "vm1" not in world.transfers


def test_abort_while_reconciling_keeps_the_guest_on_the_source(world, durable,
                                                              assert_rolled_back):
    a, b, migration_id = _begin(world, durable)
    a2 = durable("host-a")
    deadline = time.monotonic() + 60
    while not [e for e in _client(a2).get("/v1/migrations/%s" % migration_id)["events"]
               if e["kind"] == "watching"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _client(a2).post("/v1/migrations/%s/abort" % migration_id)
    done = testing.wait_for(_client(a2), migration_id)
    assert done["status"] == flow_mod.ABORTED
    assert_rolled_back()


def test_show_and_attached_migrate_survive_a_restart(world, durable, cli_run):
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=150)
    with socket.socket() as probe:  # a fixed port, as agents have: SO_REUSEADDR
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    a = durable("host-a", port=port)
    b = durable("host-b", state="state-b", my_live_migration_ip=MIG_B)
    agents = ["--agent", "host-a=%s" % a.url, "--agent", "host-b=%s" % b.url,
              "--token", testing.TOKEN]
    outcome = {}
    watcher = threading.Thread(target=lambda: outcome.update(cli=cli_run(
        "migrate", "vm1", "--from", "host-a", "--to", "host-b", *agents)))
    watcher.start()
    deadline = time.monotonic() + 60
    while "vm1" not in world.transfers or world.transfers["vm1"].elapsed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    migration_id = a.agent.registry.all()[0].id
    durable.kill(a)
    deadline = time.monotonic() + 60
    while "reconnecting" not in cli_run.err.getvalue():
        assert time.monotonic() < deadline, "the CLI never found the agent gone"
        time.sleep(0.01)
    _converge(world)
    world.clock.sleep(30)
    durable("host-a", port=port)
    watcher.join(120)
    code, out, err = outcome["cli"]
    assert code == 0, (out, err)
    assert "reconnecting" in err and "reconnected" in err
    assert "Migration %s of vm1: completed (guest running on host-b)" % migration_id in out
    code, out, _ = cli_run("show", migration_id, *agents)
    assert code == 0
    assert "completed (guest running on host-b)" in out and "reconciling" in out


@pytest.fixture
def cli_run():
    import contextlib
    import io

    from migplane.cli import main as cli_main

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        run.err = err  # the running CLI's stderr, for a test to wait on
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main.main([str(a) for a in args])
        return code, out.getvalue(), err.getvalue()

    return run


# -- the store itself -------------------------------------------------------------

def _record(i, status="completed", created=None):
    return {"id": "m%03d" % i, "instance": "vm%d" % i, "status": status,
            "created": created if created is not None else 1000.0 + i, "finished": None,
            "events": [{"seq": 1, "kind": "queued"}]}


def test_store_round_trip_and_retention(tmp_path):
    store = store_mod.RecordStore(str(tmp_path))
    for i in range(10):
        store.save(_record(i))
    store.save(_record(10, status="running", created=1.0))
    gone = store.trim(keep=3, active=migrations.ACTIVE)
    assert sorted(gone) == ["m%03d" % i for i in range(7)]
    store.close()
    again = store_mod.RecordStore(str(tmp_path))
    assert [r["id"] for r in again.load_all()] == ["m010", "m007", "m008", "m009"]
    assert again.trim(keep=100, max_age_s=1, active=migrations.ACTIVE) == [
        "m009", "m008", "m007"]  # older than a second; the running one stays
    assert [r["id"] for r in again.load_all()] == ["m010"]


def test_registry_keeps_history_bounded_on_disk(tmp_path, world, durable):
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = durable("host-a", agent_options={"history": 2})
    b = durable("host-b", state="state-b", my_live_migration_ip=MIG_B)
    ids = []
    for dest, src in ((b, a), (a, b), (b, a)):
        ids.append(_client(src).post("/v1/migrations", {
            "instance": "vm1", "destination": {"url": dest.url}})["id"])
        testing.wait_for(_client(src), ids[-1])
    rows = sqlite3.connect(str(tmp_path / "state-a" / store_mod.FILENAME)).execute(
        "SELECT id FROM migrations").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids[0::2])


def test_corrupt_database_is_moved_aside_and_the_agent_serves(tmp_path, world, durable,
                                                              caplog):
    state = tmp_path / "state-a"
    state.mkdir(mode=0o700)
    (state / store_mod.FILENAME).write_bytes(b"this is not a database" * 100)
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = durable("host-a")
    b = durable("host-b", state="state-b", my_live_migration_ip=MIG_B)
    assert a.agent.store.moved_aside is not None
    assert "cannot be read" in caplog.text and "moved aside" in caplog.text
    assert (tmp_path / "state-a" / a.agent.store.moved_aside).exists()
    records = _client(a).get("/v1/host")["agent"]["records"]
    assert records["moved_aside"] == a.agent.store.moved_aside and records["durable"]
    assert "file is not a database" in records["error"]
    done = testing.wait_for(_client(a), _client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"url": b.url}})["id"])
    assert done["status"] == "completed"
    assert [r["id"] for r in store_mod.RecordStore(str(state)).load_all()] == [done["id"]]


def test_unusable_state_directory_is_reported_and_the_agent_serves(tmp_path, world,
                                                                  durable, caplog):
    (tmp_path / "state-a").write_text("a file where the directory should be")
    world.add_guest("host-a", "vm1", memory_mib=16)
    a = durable("host-a")
    b = durable("host-b", state="state-b", my_live_migration_ip=MIG_B)
    records = _client(a).get("/v1/host")["agent"]["records"]
    assert records["durable"] is False and "state-a" in records["error"]
    assert "Cannot use the state directory" in caplog.text
    done = testing.wait_for(_client(a), _client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"url": b.url}})["id"])
    assert done["status"] == "completed"
    assert _client(b).get("/v1/host")["agent"]["records"]["durable"] is True
