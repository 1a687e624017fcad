"""The README's embedding example is code: run it, so it cannot rot."""

import pathlib
import re

from migplane.drivers.fake import world as fake_world

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_embedding_example_runs(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = next(b for b in blocks if "LiveMigration" in b)
    fake_world.reset_world("readme")
    try:
        exec(compile(example, str(README), "exec"), {})
    finally:
        fake_world.reset_world("readme")
    out = capsys.readouterr().out
    assert "completed tcp://198.51.100.12" in out
    assert "transfer_started" in out
