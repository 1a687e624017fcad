"""``migplane migrate`` and ``explain`` against two agents."""

import io
import json
import types

from migplane.agent import testing
from migplane.cli import progress as progress_mod
from migplane.cli.commands import migrate


def test_migrate_shows_steps_and_a_summary(cli, agent_args, world):
    code, out, err = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b",
                         *agent_args)
    assert code == 0, err
    assert world.where("vm1") == ["host-b"]
    assert "step: pre_live_migration" in err
    assert "transfer started: data to tcp://198.51.100.12 (migration plane)" in err
    assert "completed (guest running on host-b)" in out
    assert "tcp://198.51.100.12" in out and "qemu+tcp://host-b/system" in out
    assert "migration (bulk stream to 198.51.100.12)" in out
    assert "migration 269.2 MiB sent (mig0)" in out
    assert "management" in out and "downtime" in out


def test_migrate_json(cli, agent_args):
    code, out, _ = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b",
                       "--bandwidth", "50", "--json", *agent_args)
    record = json.loads(out)
    assert code == 0 and record["status"] == "completed"
    assert record["options"] == {"bandwidth_mib": 50}
    assert record["traffic"]["planes"]["migration"]["tx_bytes"] > 0


def test_failed_migration_exits_1(cli, agent_args, world):
    world.fail("host-b", "pre_live_migration")
    code, out, _ = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b", *agent_args)
    assert code == 1
    assert "failed" in out and "injected fault" in out
    assert world.where("vm1") == ["host-a"]


def test_postcopy_force_complete_after(cli, agent_args, world):
    world.add_guest("host-a", "busy", memory_mib=512, dirty_mib_s=150)
    code, out, _ = cli("migrate", "busy", "--from", "host-a", "--to", "host-b",
                       "--postcopy", "--force-complete-after", "0", "--json", *agent_args)
    record = json.loads(out)
    assert code == 0 and record["progress"]["postcopy"] is True
    assert record["options"] == {"permit_post_copy": True}


def test_detach_prints_the_id(cli, agent_args, pair):
    code, out, _ = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b", "--detach",
                       *agent_args)
    assert code == 0 and pair[0].agent.registry.get(out.strip()) is not None


def test_explain_is_a_dry_run_with_reasons(cli, agent_args, world):
    code, out, _ = cli("explain", "vm1", "--from", "host-a", "--to", "host-b",
                       *agent_args)
    assert code == 0
    assert "dry run: nothing was changed" in out
    assert "destination inbound address: 198.51.100.12 (from option)" in out
    assert "data URI        tcp://198.51.100.12" in out
    assert "why: migration plane: the destination's inbound address" in out
    assert "control URI     qemu+tcp://host-b/system" in out
    assert world.where("vm1") == ["host-a"] and world.hosts["host-b"].prepared == {}


def test_explain_json_matches_what_the_migration_uses(cli, agent_args):
    _, out, _ = cli("explain", "vm1", "--from", "host-a", "--to", "host-b", "--block",
                    "--json", *agent_args)
    plan = json.loads(out)
    assert plan["uris"]["disks_uri"] == "tcp://198.51.100.12"
    code, out, _ = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b", "--block",
                       "--json", *agent_args)
    assert code == 0
    assert json.loads(out)["uris"] == plan["uris"]


def test_explain_legacy_destination(cli, world, start_agent):
    world.add_guest("host-a", "vm1")
    a, b = start_agent("host-a"), start_agent("host-b")
    code, out, _ = cli("explain", "vm1", "--from", a.url, "--to", b.url, "--token",
                       testing.TOKEN)
    assert code == 0
    assert "destination inbound address: none" in out
    assert "my_live_migration_ip unset" in out


def test_progress_line():
    bar = progress_mod.ProgressBar(stream=io.StringIO())
    line = bar.line({"data_total": 4 << 30, "data_remaining": 1 << 30,
                     "data_processed": 3 << 30, "time_elapsed_ms": 1000, "iteration": 2},
                    {"bulk_host": "198.51.100.12", "plane": "migration"})
    assert "75.0%" in line and "sent 3.0 GiB" in line and "remaining 1.0 GiB" in line
    assert "iter 2" in line and "via 198.51.100.12 (migration plane)" in line
    line = bar.line({"data_total": 4 << 30, "data_remaining": 0,
                     "data_processed": 4 << 30, "time_elapsed_ms": 2000, "iteration": 3})
    assert "1.0 GiB/s" in line


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_on_a_terminal_and_throttles_otherwise():
    tty = Tty()
    bar = progress_mod.ProgressBar(stream=tty)
    for i in range(3):
        bar.update({"data_total": 100, "data_remaining": 100 - i, "time_elapsed_ms": i})
    bar.message("step: x")
    bar.close()
    assert tty.getvalue().count("\r\x1b[2K") == 3
    assert tty.getvalue().endswith("iter 0\nstep: x\n")  # the bar stays above the step
    now = [0.0]
    log = io.StringIO()
    bar = progress_mod.ProgressBar(stream=log, clock=lambda: now[0], every_s=5)
    for i in range(10):
        now[0] = i
        bar.update({"data_total": 100, "data_remaining": 50})
    assert log.getvalue().count("\n") == 2
    bar.update({"data_total": 100, "data_remaining": 0, "state": "completed"}, force=True)
    assert log.getvalue().count("\n") == 3 and "100.0%" in log.getvalue()


def test_summary_without_traffic():
    out = io.StringIO()
    migrate.summary({"id": "m1", "instance": "vm1", "status": "failed", "source": "a",
                     "destination": "b", "error": "boom"}, out)
    assert "bytes per plane   not measured" in out.getvalue()
    assert "boom" in out.getvalue()


def test_explain_shows_the_drivers_flags_and_params(cli, agent_args, pair):
    a, _ = pair
    seen = {}

    def describe_migration(instance, migrate_data, uris, settings):
        seen["args"] = (instance, migrate_data.target_connect_addr, uris.data_uri,
                        settings.bandwidth_mib)
        return {"flags": ["LIVE", "PEER2PEER"], "params": {"migrate_uri": uris.data_uri},
                "reasons": {"LIVE": "the guest keeps running"}}

    a.agent.driver.describe_migration = describe_migration
    code, out, _ = cli("explain", "vm1", "--from", "host-a", "--to", "host-b",
                       "--bandwidth", "7", *agent_args)
    assert code == 0
    assert seen["args"] == ("vm1", "198.51.100.12", "tcp://198.51.100.12", 7)
    assert "flags           LIVE | PEER2PEER" in out
    assert "param           migrate_uri = tcp://198.51.100.12" in out
    assert "why LIVE: the guest keeps running" in out


def test_explain_shows_the_measurement_and_the_plan(cli, agent_args, world):
    world.add_guest("host-a", "busy", memory_mib=2048, dirty_mib_s=40, working_set_mib=64)
    code, out, _ = cli("explain", "busy", "--from", "host-a", "--to", "host-b",
                       "--bandwidth", "16", *agent_args)
    assert code == 0
    assert "convergence (strategy static)" in out
    # what the run does: the static strategy measures nothing
    assert "dirty rate      unknown (unavailable): not measured (static)" in out
    assert "link rate       16.0 MiB/s (bandwidth-limit)" in out
    assert "escalations     none (static)" in out
    assert world.where("busy") == ["host-a"] and world.transfers == {}


def test_strategy_per_migration(cli, agent_args, world):
    world.add_guest("host-a", "busy", memory_mib=128, dirty_mib_s=32, working_set_mib=48)
    code, out, _ = cli("explain", "busy", "--from", "host-a", "--to", "host-b",
                       "--strategy", "adaptive", "--bandwidth", "16", *agent_args)
    assert code == 0 and "convergence (strategy adaptive)" in out
    code, out, err = cli("migrate", "busy", "--from", "host-a", "--to", "host-b",
                         "--strategy", "adaptive", "--bandwidth", "16", "--json",
                         *agent_args)
    record = json.loads(out)
    assert code == 0, err
    assert record["options"] == {"bandwidth_mib": 16, "strategy": "adaptive"}
    assert record["result"]["plan"]["strategy"] == "adaptive"
    assert record["progress"]["postcopy"] is True


def test_adaptive_summary_shows_predicted_against_actual(cli, world, start_agent):
    world.add_guest("host-a", "busy", memory_mib=128, dirty_mib_s=32, working_set_mib=48)
    a = start_agent("host-a", strategy="adaptive", bandwidth=16)
    b = start_agent("host-b", my_live_migration_ip="198.51.100.12")
    args = ["--agent", "host-a=%s" % a.url, "--agent", "host-b=%s" % b.url,
            "--token", testing.TOKEN]
    code, out, err = cli("explain", "busy", "--from", "host-a", "--to", "host-b", *args)
    assert code == 0, err
    assert "convergence (strategy adaptive)" in out
    # as the run will: sampled although 1 s is more than 5 % of the 8 s first
    # pass, since only a measurement arms post-copy by default
    assert "32.0 MiB/s (sampling)" in out
    assert "method          pre-copy, then post-copy after the first pass" in out
    assert "escalations     post-copy" in out
    assert "connections     1" in out
    assert "why parallel_connections: 1: not permitted" in out
    assert "why compression: not armed: not permitted" in out
    code, out, err = cli("migrate", "busy", "--from", "host-a", "--to", "host-b", *args)
    assert code == 0, out + err
    assert "escalated: post-copy" in err
    assert "adaptive: pre-copy, then post-copy after the first pass" in out
    assert "(actual: " in out
    assert world.where("busy") == ["host-b"]


def test_an_override_an_older_agent_ignored_is_named(capsys):
    """An agent of an older release ignores an override it does not know (and
    lists only what it applied): the operator is told, by option name."""
    class Source:
        def post(self, path, body):
            return {"id": "m1", "source": "host-a", "destination": "host-b",
                    "options": {"bandwidth_mib": 16}}

    class Directory:
        def client(self, name, flag):
            return Source()

        def url(self, name, flag):
            return "https://192.0.2.12:8775"

    class Args:
        domain, source, destination = "vm1", "host-a", "host-b"
        bandwidth, postcopy, strategy, block = 16, None, "adaptive", False
        detach, json = True, False

    assert migrate.unapplied({"options": {"a": 1}}, {"options": {"a": 1}}) == []
    assert migrate.unapplied({}, {"options": None}) == []
    assert migrate.run(Args(), Directory()) == 0
    err = capsys.readouterr().err
    assert "did not apply strategy" in err and "bandwidth_mib" not in err


def test_an_unresolved_migration_exits_5_and_says_hands_off(cli, agent_args, world,
                                                            monkeypatch):
    from migplane.core import flow

    monkeypatch.setattr(flow.LiveMigration, "SETTLE_WAIT_S", 1.0)
    world.at(0.5, lambda: (world.set_link("host-a", "management", False),
                           world.cut_off("host-b")))
    code, out, _ = cli("migrate", "vm1", "--from", "host-a", "--to", "host-b", *agent_args)
    assert code == 5, out
    assert "UNRESOLVED" in out and "Do NOT start vm1 by hand on host-a or host-b" in out
    assert "verdict" in out and "unresolved (exit 5)" in out
    assert world.hosts["host-b"].guests["vm1"].state == "paused"  # held, never ran


def test_exit_codes_follow_the_one_verdict_table(capsys):
    from migplane.cli import errors
    from migplane.core import settle

    for verdict, (code, _) in settle.VERDICTS.items():
        assert errors.for_verdict({"status": "failed", "result": {"verdict": verdict}}) \
            == code
        if code > 4:
            assert "%-4d %s" % (code, verdict) in errors.EPILOG
    assert errors.for_verdict({"status": "completed", "result": None}) == errors.OK


def test_a_refused_force_complete_leaves_the_migration_followed():
    """--force-complete-after against an agent back from a restart, which
    reconciles the migration and refuses force-complete: the command goes on
    following it and reports how it ended, instead of failing."""
    from migplane.cli.commands import migrate as migrate_cmd
    from migplane.core import exception

    class Agent:
        def __init__(self):
            self.records = [
                {"status": "running", "last_event": 1,
                 "events": [{"kind": "transfer_started", "elapsed": 0.1}]},
                {"status": "running", "last_event": 2, "events": []},
                {"status": "completed", "last_event": 3, "events": []}]
            self.posted = []

        def get(self, path, params=None):
            return self.records.pop(0)

        def post(self, path, body=None):
            self.posted.append(path)
            raise exception.MigrationError(
                instance="vm1", step="force-complete",
                reason="migration m1 is being reconciled after an agent restart; only "
                       "abort is possible")

    said = []
    bar = types.SimpleNamespace(update=lambda *a, **k: None, close=lambda: None,
                                message=said.append)
    agent = Agent()
    record = migrate_cmd.watch(agent, "m1", bar, force_after=0, sleep=lambda s: None)
    assert record["status"] == "completed"
    assert agent.posted == ["/v1/migrations/m1/force-complete"]
    assert any("force-complete not done" in s and "only abort is possible" in s
               for s in said)
