"""The CLI against agents on 127.0.0.1 that drive fake-world hosts (agent fixtures
from tests/unit/conftest.py)."""

import pytest

from migplane.agent import testing

TOKEN = testing.TOKEN


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
