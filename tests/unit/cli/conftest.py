"""The CLI against agents on 127.0.0.1 that drive fake-world hosts."""

import pytest

from migplane.agent import client as client_mod
from migplane.agent import opts as agent_opts
from migplane.agent import testing

TOKEN = testing.TOKEN
MIG_B = "198.51.100.12"


@pytest.fixture
def start_agent(world, host_conf):
    """Start an agent for fake host ``host``; stopped after the test."""
    running = []

    def start(host, tokens=(TOKEN,), agent_options=None, pace=True, **overrides):
        overrides.setdefault("driver", "fake")
        conf = host_conf(host, **overrides)
        agent_opts.register_opts(conf)
        conf.set_override("auth_tokens", list(tokens), group=agent_opts.GROUP)
        for name, value in (agent_options or {}).items():
            conf.set_override(name, value, group=agent_opts.GROUP)
        local = testing.LocalAgent(conf, facts=testing.WorldFacts(world, host))
        if pace:
            local.agent.sleep = testing.paced(world)
        local.start()
        running.append(local)
        return local

    yield start
    for local in running:
        local.stop()


@pytest.fixture
def pair(world, start_agent):
    """Agents of host-a (source) and host-b (destination, my_live_migration_ip set)."""
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=5)
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    return a, b


@pytest.fixture
def client():
    def make(local, token=TOKEN):
        return client_mod.AgentClient(local.url, token, timeout=30)
    return make


@pytest.fixture
def cli(capsys):
    """Run ``migplane ARGS`` in-process; return ``(exit code, stdout, stderr)``."""
    from migplane.cli import main as cli_main

    def run(*args):
        code = cli_main.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def agent_args(pair):
    """The options naming host-a and host-b's agents, with the token."""
    a, b = pair
    return ["--agent", "host-a=%s" % a.url, "--agent", "host-b=%s" % b.url,
            "--token", TOKEN]
