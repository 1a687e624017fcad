"""README.md's commands and the ``--help`` examples are run as written, so a
documented command that stops working fails CI.

Blocks marked ``lab`` run in tests/functional/test_readme_lab.py; the
markers are explained in tests/readme_blocks.py.
"""

import importlib.util
import pathlib

import pytest

from migplane.agent import probe
from migplane.agent import testing
from migplane.drivers.fake import world as fake_world

_PATH = pathlib.Path(__file__).resolve().parents[1] / "readme_blocks.py"
_SPEC = importlib.util.spec_from_file_location("readme_blocks", _PATH)
readme = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(readme)

#: Commands whose examples need something to act on first. ``busy`` dirties its memory
#: faster than any link, so its migration is still running when they act.
SETUP = {
    "show": "migplane migrate vm1 --from host-a --to host-b",
    "abort": "migplane migrate busy --from host-a --to host-b --detach",
    "force-complete": "migplane migrate busy --from host-a --to host-b --detach",
}
BUSY = {"memory_mib": 512, "dirty_mib_s": 150}
#: Examples that build labs, run for minutes or serve until interrupted: parse-checked
#: here; the functional tests run the lab and demo, the bench smoke runs migplane
#: bench, tests/unit/cli/test_cli_dashboard.py the dashboard in a browser,
#: tests/functional/libvirt resume (it needs a post-copy left paused), and
#: tests/unit/agent/test_agent_settle.py release (it needs a split guest).
NOT_RUN_HERE = ("lab", "bench", "demo", "dashboard", "resume", "release")


def _blocks():
    try:
        return readme.blocks(), None
    except ValueError as err:
        return [], str(err)


BLOCKS, MARKER_ERROR = _blocks()


def _of(*kinds):
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind in kinds]


def test_markers_are_well_formed():
    assert MARKER_ERROR is None
    assert {b.kind for b in BLOCKS} <= set(readme.KINDS)
    assert all(b.reason for b in BLOCKS if b.kind == "skip")
    # the README documents commands of every kind the test knows how to run
    assert {"unit", "agents", "lab", "skip"} <= {b.kind for b in BLOCKS}


def test_marker_rules():
    assert readme.parse_marker("skip (15 minutes)", 1)[:2] == ("skip", "15 minutes")
    assert readme.parse_marker("agents; exit=4; timeout=9", 1) == ("agents", None, 4, 9)
    for bad in ("skip", "skip ()", "labs", "unit; exit=x", "unit; retries=2"):
        with pytest.raises(ValueError):
            readme.parse_marker(bad, 7)


def test_extraction(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("text\n```sh\nmigplane list\n```\n\n<!-- readme-test: lab -->\n\n"
                   "```bash\nmigplane lab up --name demo \\\n  --hosts 2  # two\n```\n"
                   "```ini\n[x]\n```\n<!-- readme-test: skip (why) -->\n```python\n"
                   "print(1)\n```\n    indented is not found\n")
    found = readme.blocks(doc)
    assert [(b.lang, b.kind, b.line) for b in found] == [
        ("sh", "unit", 2), ("sh", "lab", 8), ("python", "skip", 16)]
    assert found[1].commands() == ["migplane lab up --name demo    --hosts 2  # two"]
    assert readme.migplane_argv(found[1].commands()[0]) == [
        "lab", "up", "--name", "demo", "--hosts", "2"]
    assert readme.migplane_argv("migplane list | head -1") == ["list"]
    assert readme.migplane_argv("ip netns list") is None


def test_substitution():
    values = {"...": "T0K", "ID": "abc"}
    assert readme.substitute("export MIGPLANE_TOKEN=...  # or ...", values) == \
        "export MIGPLANE_TOKEN=T0K  # or T0K"
    assert readme.substitute("migplane show ID --json; echo IDS ID_X", values) == \
        "migplane show abc --json; echo IDS ID_X"
    block = readme.Block("sh", "migplane lab up --name demo  # demo-host-a /tmp/b\n", 1)
    text = readme.script(block, {}, "/scratch", lab_name="t42")
    assert "--name t42  # t42-host-a /scratch/b" in text


def test_parse_check_catches_what_issue_12_found():
    assert readme.parse_check(["bench", "--out", "benchmarks"]) is None
    assert readme.parse_check(["--json", "list"]) is None
    assert "unrecognized" in readme.parse_check(["bench", "--no-such", "x"])
    assert "invalid choice" in readme.parse_check(["lab", "upp"])
    assert readme.parse_check(["nope"])


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS])
def test_every_migplane_command_parses(block):
    """Even the blocks that are not run here (lab, skip) must be valid commands."""
    for command in block.commands():
        argv = readme.migplane_argv(command)
        if argv is not None:
            assert readme.parse_check(argv) is None, "README.md:%d: %s" % (
                block.line, command)


def test_commands_in_the_prose_parse():
    """`migplane abort ID` in a sentence is a command too: it must be valid."""
    spans = readme.inline_commands()
    assert any(command == "migplane --version" for _, command in spans)
    for line, command in spans:
        assert readme.parse_check(readme.migplane_argv(command)) is None, "README.md:%d: %s" % (
            line, command)


@pytest.fixture
def scratch(tmp_path):
    return readme.scratch_tree(tmp_path)


@pytest.mark.parametrize("block", _of("unit"))
def test_unit_block_runs(block, scratch, tmp_path):
    code, output = readme.run(block, scratch, readme.environment(tmp_path),
                              tmp_dir=tmp_path)
    assert code == block.exit, output


@pytest.fixture
def agents_env(world, start_agent, tmp_path, monkeypatch):
    """Agents of host-a (guest vm1) and host-b (my_live_migration_ip 198.51.100.12),
    named in the CLI file an operator would have. The one real socket of the
    migration plane, ``check``'s TCP probe, is carried over loopback."""
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=5)
    _probe_over_loopback(monkeypatch)
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip="198.51.100.12")
    conf = tmp_path / "cli.conf"
    conf.write_text("[agents]\nhost-a = %s\nhost-b = %s\n" % (a.url, b.url))
    return readme.environment(tmp_path, {"MIGPLANE_CLI_CONFIG": str(conf)})


def _probe_over_loopback(monkeypatch):
    class LoopbackProbe(probe.Probe):
        def __init__(self, host, timeout):
            super().__init__("127.0.0.1", timeout)
            self.address = host

    connect = probe.connect
    monkeypatch.setattr(probe, "Probe", LoopbackProbe)
    monkeypatch.setattr(probe, "connect", lambda host, port, payload, timeout=5.0: connect(
        "127.0.0.1", port, payload, timeout))


@pytest.mark.parametrize("block", _of("agents"))
def test_agents_block_runs(block, agents_env, scratch, tmp_path, world):
    code, output = readme.run(block, scratch, agents_env, {"...": testing.TOKEN, "ID": ""},
                              tmp_dir=tmp_path)
    assert code == block.exit, output


EXAMPLES = readme.help_examples()


def test_every_subcommand_has_examples():
    missing = [name for name, lines in EXAMPLES.items() if not lines]
    assert not missing, "no examples: section in the --help of %s" % missing


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_help_examples_parse(command):
    for line in EXAMPLES[command]:
        assert readme.parse_check(readme.migplane_argv(line)) is None, line


@pytest.mark.parametrize("command", [c for c in sorted(EXAMPLES) if c not in NOT_RUN_HERE])
def test_help_examples_run(command, agents_env, scratch, tmp_path, world):
    if "busy" in SETUP.get(command, ""):
        world.add_guest("host-a", "busy", **BUSY)
    text = "\n".join(([SETUP[command]] if command in SETUP else []) + EXAMPLES[command])
    block = readme.Block("sh", text + "\n", 0, "agents")
    env = dict(agents_env, MIGPLANE_TOKEN=testing.TOKEN)
    code, output = readme.run(block, scratch, env, {"ID": ""}, tmp_dir=tmp_path)
    assert code == 0, output


def test_readme_embedding_example_prints_what_it_says(capsys):
    example = next(b for b in BLOCKS if b.lang == "python" and "LiveMigration" in b.text)
    fake_world.reset_world("readme")
    try:
        exec(compile(example.text, str(readme.README), "exec"), {})
    finally:
        fake_world.reset_world("readme")
    out = capsys.readouterr().out
    assert "completed tcp://198.51.100.12" in out
    assert "transfer_started" in out
