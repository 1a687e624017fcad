"""``list``, ``show``, ``abort``, ``force-complete``, ``lab``, the agent map and exit codes."""

import json
import sys
import types

import pytest

from migplane.agent import testing
from migplane.cli import agents
from migplane.cli import errors
from migplane.cli import main as cli_main

TOKEN = testing.TOKEN


def migrate_detached(cli, agent_args, instance="vm1"):
    code, out, _ = cli("migrate", instance, "--from", "host-a", "--to", "host-b",
                       "--detach", *agent_args)
    assert code == 0
    return out.strip()


def test_list_show(cli, agent_args, pair, client):
    migration_id = migrate_detached(cli, agent_args)
    testing.wait_for(client(pair[0]), migration_id)
    code, out, _ = cli("list", *agent_args)
    assert code == 0 and migration_id in out and "host-a -> host-b" in out
    code, out, _ = cli("list", "--json", *agent_args)
    listed = json.loads(out)["migrations"]
    assert [(m["id"], m["agent"]) for m in listed] == [(migration_id, "host-a")]
    code, out, _ = cli("show", migration_id, *agent_args)
    assert code == 0 and "Events:" in out and "step: pre_live_migration" in out
    code, out, _ = cli("show", migration_id, "--json", *agent_args)
    assert json.loads(out)["status"] == "completed"


def test_abort_and_force_complete(cli, agent_args, world, pair, client):
    world.add_guest("host-a", "busy", memory_mib=512, dirty_mib_s=150)
    code, out, _ = cli("migrate", "busy", "--from", "host-a", "--to", "host-b", "--detach",
                       "--postcopy", *agent_args)
    migration_id = out.strip()
    code, out, _ = cli("force-complete", migration_id, "--on", "host-a", *agent_args)
    assert code == 0 and "Force-complete requested" in out
    assert testing.wait_for(client(pair[0]), migration_id)["status"] == "completed"
    code, _, err = cli("abort", migration_id, *agent_args)
    assert code == errors.FAILED and "already ended" in err


def test_abort_running(cli, agent_args, world, pair, client):
    world.add_guest("host-a", "busy", memory_mib=512, dirty_mib_s=150)
    migration_id = migrate_detached(cli, agent_args, "busy")
    code, out, _ = cli("abort", migration_id, *agent_args)
    assert code == 0 and "Abort requested" in out
    assert testing.wait_for(client(pair[0]), migration_id)["status"] == "aborted"
    assert world.where("busy") == ["host-a"]


def test_not_found_exits_4(cli, agent_args):
    code, _, err = cli("show", "0123456789ab", *agent_args)
    assert code == errors.NOT_FOUND and "not found on host-a, host-b" in err


def test_unknown_host_exits_2_and_lists_the_known_ones(cli, agent_args):
    code, _, err = cli("migrate", "vm1", "--from", "host-a", "--to", "host-z", *agent_args)
    assert code == errors.USAGE
    assert "unknown host 'host-z' for --to: known hosts: host-a, host-b" in err


def test_unreachable_agent_exits_3(cli):
    code, _, err = cli("explain", "vm1", "--from", "http://127.0.0.1:9", "--to",
                       "http://127.0.0.1:10", "--token", TOKEN)
    assert code == errors.AGENT and "127.0.0.1:9 is unreachable" in err


def test_wrong_token_exits_3(cli, pair):
    a, b = pair
    code, _, err = cli("explain", "vm1", "--from", a.url, "--to", b.url, "--token", "bad")
    assert code == errors.AGENT and "not accepted" in err


def test_missing_instance_in_plan_exits_4(cli, agent_args):
    code, _, err = cli("explain", "ghost", "--from", "host-a", "--to", "host-b",
                       *agent_args)
    assert code == errors.NOT_FOUND and "ghost" in err


def test_bad_arguments_exit_2(cli, agent_args):
    with pytest.raises(SystemExit) as exc:
        cli("migrate", "vm1", "--from", "host-a", "--to", "host-b", "--bandwidth", "-3")
    assert exc.value.code == 2
    code, _, err = cli("list", "--agent", "host-a")
    assert code == 2 and "want NAME=URL" in err


@pytest.mark.parametrize("command", [[], ["migrate"], ["explain"], ["check"], ["list"],
                                     ["show"], ["abort"], ["force-complete"], ["demo"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main(command + ["--help"])
    assert exc.value.code == 0
    assert "usage: migplane" in capsys.readouterr().out


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "130" in out


def test_cli_file_and_environment(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("a CA")
    conf = tmp_path / "cli.conf"
    conf.write_text("[agents]\nhost-a = https://192.0.2.11:7480\n"
                    "host-b = https://192.0.2.12:7480/\n\n"
                    "[auth]\ntoken_file = %s\nca_file = %s\n" % (token_file, ca_file))
    parser = cli_main.build_parser()
    monkeypatch.delenv("MIGPLANE_TOKEN", raising=False)
    args = parser.parse_args(["list", "--config", str(conf),
                              "--agent", "host-c=http://192.0.2.13:7480"])
    d = agents.load(args)
    assert d.agents == {"host-a": "https://192.0.2.11:7480",
                        "host-b": "https://192.0.2.12:7480",
                        "host-c": "http://192.0.2.13:7480"}
    assert d.token == "from-file" and d.ca_file == str(ca_file)
    assert d.url("https://192.0.2.14:7480") == "https://192.0.2.14:7480"
    monkeypatch.setenv("MIGPLANE_TOKEN", "from-env")
    assert agents.load(args).token == "from-env"
    monkeypatch.setenv("MIGPLANE_CLI_CONFIG", str(conf))
    assert agents.load(parser.parse_args(["list"])).agents["host-a"].endswith(":7480")


def test_bad_cli_file(tmp_path, cli):
    conf = tmp_path / "cli.conf"
    conf.write_text("[agents]\nhost-a = 192.0.2.11:7480\n")
    code, _, err = cli("list", "--config", conf)
    assert code == 2 and "host-a" in err and "http://" in err
    code, _, err = cli("list", "--config", tmp_path / "missing.conf")
    assert code == 2 and "cannot read CLI configuration" in err


def test_lab_passes_its_arguments_through(monkeypatch, cli):
    seen = []
    fake = types.ModuleType("migplane.lab.cli")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "migplane.lab.cli", fake)
    import migplane.lab
    monkeypatch.setattr(migplane.lab, "cli", fake, raising=False)
    code, _, _ = cli("lab", "up", "--hosts", "2")
    assert code == 7 and seen == [["up", "--hosts", "2"]]
    cli("lab", "--", "--help")
    assert seen[-1] == ["--help"]
