"""What an operator types that is wrong, or right in an unusual place: a clear line
and the documented exit code, never a traceback (issues #10 part 6, #12 part 1)."""

import json
import sys
import types

import pytest

from migplane.agent import errors as agent_errors
from migplane.agent import main as agent_main
from migplane.agent import testing
from migplane.cli import demo
from migplane.cli import errors
from migplane.cli import main as cli_main
from migplane.core import exception

TOKEN = testing.TOKEN
DOWN = "https://127.0.0.1:9"   # discard port: nothing listens


@pytest.fixture
def run(capsys, monkeypatch):
    """``migplane ARGS`` as a user sees it: ``(code, stdout, stderr)``, argparse's own
    exits included; fails on anything that is not one clear message."""
    monkeypatch.delenv("MIGPLANE_TOKEN", raising=False)
    monkeypatch.delenv("MIGPLANE_CLI_CONFIG", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")

    def go(*args):
        try:
            code = cli_main.main([str(a) for a in args])
        except SystemExit as done:
            code = done.code
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "unexpected error" not in err, err
        return code, out, err

    return go


# -- issue 10 part 6: no traceback, usage errors exit 2 ---------------------------

@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "soon"])
def test_bad_timeout_is_a_usage_error(run, value):
    code, _, err = run("list", "--agent", "a=" + DOWN, "--timeout", value)
    assert code == errors.USAGE and "--timeout" in err and repr(value) in err


@pytest.mark.parametrize("token", ["t\u00f6ken-abc", "abc def", "tab\tbed"])
def test_token_that_cannot_be_a_header_is_refused_unprinted(run, token):
    code, _, err = run("list", "--agent", "a=" + DOWN, "--token", token)
    assert code == errors.USAGE and "--token" in err and token not in err


def test_pem_token_is_refused_without_being_printed(run, tmp_path, monkeypatch):
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END"
    code, _, err = run("list", "--agent", "a=" + DOWN, "--token", pem)
    assert code == errors.USAGE and "several lines" in err and "MIIE" not in err
    path = tmp_path / "token"
    path.write_text(pem + "\n")
    code, _, err = run("list", "--agent", "a=" + DOWN, "--token-file", path)
    assert code == errors.USAGE and str(path) in err and "MIIE" not in err
    monkeypatch.setenv("MIGPLANE_TOKEN", pem)
    code, _, err = run("list", "--agent", "a=" + DOWN)
    assert code == errors.USAGE and "$MIGPLANE_TOKEN" in err and "MIIE" not in err


def test_binary_token_file(run, tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe\x00key")
    code, _, err = run("list", "--agent", "a=" + DOWN, "--token-file", path)
    assert code == errors.USAGE and "not text" in err


def test_missing_ca_file(run, tmp_path):
    code, _, err = run("list", "--agent", "a=" + DOWN, "--ca-file", tmp_path / "ca.pem")
    assert code == errors.USAGE and "--ca-file" in err and "no such file" in err
    conf = tmp_path / "cli.conf"
    conf.write_text("[agents]\na = %s\n[auth]\nca_file = %s\n" % (DOWN, tmp_path / "x"))
    code, _, err = run("list", "--config", conf)
    assert code == errors.USAGE and "ca_file" in err and str(conf) in err


@pytest.mark.parametrize("url", ["https://[::1", "https://h:99999", "https://h:0",
                                 "https://[fe80::1%zz", "ftp://h", "https://h/x",
                                 "https://u@h"])
def test_bad_agent_url_is_a_usage_error(run, url):
    code, _, err = run("list", "--agent", "a=" + url)
    assert code == errors.USAGE and "--agent" in err


def test_bad_host_url_on_the_command_line(run):
    code, _, err = run("check", "--from", "https://[::1", "--to", "https://h:99999")
    assert code == errors.USAGE and "--from" in err


def test_non_utf8_cli_file(run, tmp_path):
    conf = tmp_path / "cli.conf"
    conf.write_bytes(b"[agents]\na = https://127.0.0.1:9\n# caf\xe9\n")
    code, _, err = run("list", "--config", conf)
    assert code == errors.USAGE and "not UTF-8" in err and str(conf) in err


@pytest.mark.parametrize("command", ["show", "abort", "force-complete"])
@pytest.mark.parametrize("bad_id", ["../host", "a/b", "x?y", "id\n", "", "%2e%2e"])
def test_migration_id_that_is_no_id(run, command, bad_id):
    code, _, err = run(command, bad_id, "--agent", "a=" + DOWN)
    assert code == errors.USAGE and "not a migration ID" in err


def test_forbidden_does_not_blame_the_token(run, monkeypatch, pair):
    def refuse(self, *args, **kwargs):
        raise agent_errors.Forbidden(reason="peer-only endpoint")

    from migplane.agent import client
    monkeypatch.setattr(client.AgentClient, "get", refuse)
    code, _, err = run("list", "--agent", "a=" + pair[0].url, "--token", "t")
    assert code == errors.AGENT and "Forbidden" in err
    assert "--token" not in err and "TOKEN" not in err


@pytest.mark.parametrize("argv", [
    ["migrate", "vm1", "--from", "a", "--to", "b", "--force-complete-after", "nan"],
    ["migrate", "vm1", "--from", "a", "--to", "b", "--force-complete-after", "-1"],
    ["demo", "--memory", "-5"], ["demo", "--memory", "64"], ["demo", "--bandwidth", "-1"],
    ["lab", "up", "--name", "BAD NAME"], ["lab", "down", "--name", "../x"],
    ["lab", "up", "--hosts", "x"]])
def test_bad_values_are_refused_before_anything_runs(run, argv):
    code, _, err = run(*argv)
    assert code == errors.USAGE and "error: argument" in err


def test_an_unforeseen_error_is_one_line_and_verbose_shows_it(capsys, monkeypatch):
    def boom(args, directory):
        raise RuntimeError("something odd")

    monkeypatch.setattr(demo, "run", boom)
    parser = cli_main.build_parser
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_run(parser(), boom))
    assert cli_main.main(["demo"]) == errors.FAILED
    err = capsys.readouterr().err
    assert "something odd" in err and "Traceback" not in err and "-v" in err
    assert cli_main.main(["-v", "demo"]) == errors.FAILED
    assert "Traceback" in capsys.readouterr().err


def _with_run(parser, func):
    for action in parser._subparsers._group_actions:
        action.choices["demo"].set_defaults(run=func)
    return parser


# -- issue 10 part 6 / 12 part 1: list with agents down ----------------------------

def test_list_with_one_agent_down_says_so_and_fails(run, pair):
    a, _ = pair
    code, out, err = run("list", "--agent", "host-a=" + a.url, "--agent", "down=" + DOWN,
                         "--token", TOKEN)
    assert code == errors.AGENT
    assert "down" in err and "1 of 2 agents did not answer" in err


def test_list_json_names_every_unreachable_agent(run, pair):
    a, _ = pair
    code, out, _ = run("--json", "list", "--agent", "host-a=" + a.url,
                       "--agent", "down=" + DOWN, "--agent", "gone=https://127.0.0.1:1",
                       "--token", TOKEN)
    data = json.loads(out)
    assert code == errors.AGENT
    assert sorted(e["agent"] for e in data["errors"]) == ["down", "gone"]
    assert all(e["kind"] == "AgentUnreachable" and "unreachable" in e["error"]
               for e in data["errors"])
    assert data["migrations"] == []


def test_list_json_all_answer_has_no_errors(run, pair, agent_args):
    code, out, _ = run("list", "--json", *agent_args)
    assert code == errors.OK and json.loads(out) == {"migrations": [], "errors": []}


# -- issue 12 part 1: options where users put them ---------------------------------

def test_common_options_before_and_after_the_command(run, pair, agent_args):
    code, out, _ = run("--json", *agent_args, "list")
    assert code == errors.OK and json.loads(out)["migrations"] == []
    a, b = pair
    # --agent given in both places adds up; the command's side wins for the others
    args = cli_main.merge_common(cli_main.build_parser().parse_args(
        ["--agent", "a=" + a.url, "--timeout", "5", "--json", "list", "--agent",
         "b=" + b.url, "--timeout", "7"]))
    assert args.agent == ["a=" + a.url, "b=" + b.url]
    assert args.timeout == 7 and args.json is True and args.verbose is False
    args = cli_main.merge_common(cli_main.build_parser().parse_args(["list"]))
    assert (args.agent, args.timeout, args.json, args.token) == (None, 60.0, False, None)


def test_no_abbreviations_across_the_command(run):
    # '--to' of check must not be taken for the top-level '--token'
    code, _, err = run("check", "--from", "a", "--to", "b", "--agent", "a=" + DOWN,
                       "--agent", "b=" + DOWN, "--timeout", "1")
    assert code == errors.AGENT, err


@pytest.fixture
def fake_tool(monkeypatch):
    """Replace migplane.bench.main and migplane.lab.cli by recorders."""
    import migplane.bench  # noqa: F401  (the parents the fakes are set on)
    import migplane.lab  # noqa: F401

    seen = []
    for name in ("migplane.bench.main", "migplane.lab.cli"):
        fake = types.ModuleType(name)
        fake.main = lambda argv, name=name: seen.append((name, argv)) or 0
        monkeypatch.setitem(sys.modules, name, fake)
        parent, _, child = name.rpartition(".")
        monkeypatch.setattr(sys.modules[parent], child, fake, raising=False)
    return seen


@pytest.mark.parametrize("argv", [
    ["--out", "benchmarks"], ["--quick", "--out", "/tmp/b"],
    ["--render-only", "--out", "benchmarks"], ["--help"], ["--", "--quick"],
    ["--parts", "overhead", "--json"], ["--version"], ["-v", "--token", "x"]])
def test_bench_takes_its_own_options(run, fake_tool, argv):
    code, _, _ = run("bench", *argv)
    assert code == 0
    assert fake_tool == [("migplane.bench.main", [a for a in argv if a != "--"])]


def test_lab_takes_its_own_options_after_ours(run, fake_tool):
    assert run("-v", "--json", "lab", "up", "--name", "x", "--hosts", "3")[0] == 0
    assert run("--timeout", "5", "lab", "--help")[0] == 0
    assert fake_tool == [("migplane.lab.cli", ["up", "--name", "x", "--hosts", "3"]),
                         ("migplane.lab.cli", ["--help"])]


def test_tool_usage_error_exit_code_comes_through(run):
    code, _, err = run("bench", "--no-such-option")
    assert code == errors.USAGE and "--no-such-option" in err
    code, out, _ = run("bench", "--help")
    assert code == 0 and "--render-only" in out
    code, out, _ = run("lab", "--help")
    assert code == 0 and "usage: migplane lab" in out


def test_split_passthrough_skips_our_option_values():
    split = cli_main.split_passthrough
    assert split(["--config", "bench", "list"]) == (["--config", "bench", "list"], None)
    assert split(["--token", "lab", "lab", "up"]) == (["--token", "lab", "lab"], ["up"])
    assert split(["--json", "bench", "--json"]) == (["--json", "bench"], ["--json"])
    assert split(["list", "bench"]) == (["list", "bench"], None)
    assert split(["--", "bench"]) == (["--", "bench"], None)


def test_a_command_is_required(run):
    code, _, err = run()
    assert code == errors.USAGE and "COMMAND" in err


# -- versions --------------------------------------------------------------------

def test_version(run):
    code, out, _ = run("--version")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("migplane ")
    assert lines[1].startswith("driver: ") and lines[2].startswith("client library: ")


def test_version_without_libvirt(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "libvirt", None)   # import libvirt -> ImportError
    for name in [n for n in sys.modules if n.startswith("migplane.drivers.libvirt")]:
        monkeypatch.delitem(sys.modules, name)
    code, out, _ = run("--version")
    assert code == 0 and "libvirt-python not installed" in out
    assert "driver: libvirt not available" in out
    assert agent_main.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("migplane-agent ") and "libvirt-python not installed" in out


def test_agent_version_asks_the_configured_driver(tmp_path, capsys, world):
    conf = tmp_path / "agent.conf"
    conf.write_text("[live_migration]\ndriver = fake\nhostname = host-a\n"
                    "[driver_fake]\nworld = %s\n" % world.name)
    assert agent_main.main(["--config-file", str(conf), "--version"]) == 0
    out = capsys.readouterr().out
    assert "driver: fake" in out, out
    assert agent_main.main(["--config-file", str(tmp_path / "missing"), "--version"]) == 0
    captured = capsys.readouterr()
    assert "configuration was not read" in captured.out and "missing" in captured.err


def test_demo_help_states_the_real_defaults(run):
    code, out, _ = run("demo", "--help")
    demo_defaults = {a.dest: a.default for a in _subparser("demo")._actions}
    text = " ".join(out.split())
    assert code == 0
    assert "visible (default %d)" % demo_defaults["bandwidth"] in text
    assert "memory (default %d)" % demo_defaults["memory"] in text
    assert demo_defaults["bandwidth"] == 16   # what issue #12 found the help misstating


def _subparser(name):
    parser = cli_main.build_parser()
    return parser._subparsers._group_actions[0].choices[name]


def test_version_report_survives_a_driver_that_raises(monkeypatch):
    from migplane import version

    def broken(conf, name=None):
        raise exception.MigplaneError("no such thing")

    monkeypatch.setattr(version.loader, "load_driver", broken)
    text = version.report("migplane", version.local_conf(), "libvirt")
    assert "driver: libvirt not available: no such thing" in text
