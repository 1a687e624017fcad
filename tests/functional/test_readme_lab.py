"""README.md's lab commands, the lab's --help examples and the demo, run as written
on this machine (issue #12 part 2; the markers are explained in tests/readme_blocks.py).

The README's lab blocks run in order, sharing one lab whose name replaces
``demo``. ``tools/demo.sh`` itself cannot run here (it installs Debian
packages); what it runs after installing, ``migplane demo``, does.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "readme_blocks.py"
_SPEC = importlib.util.spec_from_file_location("readme_blocks", _PATH)
readme = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(readme)

pytestmark = pytest.mark.lab


def _down(name):
    from migplane.lab import Lab

    if Lab.exists(name):
        Lab.load(name).down()
    return not Lab.exists(name)


@pytest.fixture
def lab_name(lab_env):
    name = "r%d" % os.getpid()
    yield name
    assert _down(name), "the README's commands left lab %s behind" % name


def test_readme_lab_blocks_run_as_written(lab_name, tmp_path):
    blocks = [b for b in readme.blocks() if b.kind == "lab"]
    assert blocks, "README.md has no lab block"
    scratch = readme.scratch_tree(tmp_path)
    env = readme.environment(tmp_path)
    for block in blocks:
        code, output = readme.run(block, scratch, env, lab_name=lab_name, tmp_dir=tmp_path)
        assert code == block.exit, output
    from migplane.lab import Lab
    assert not Lab.exists(lab_name), "the README's lab commands end with the lab down"


def test_lab_help_examples_run(lab_name, tmp_path):
    examples = readme.help_examples()["lab"]
    assert any(" up " in e for e in examples) and any(" down " in e for e in examples)
    block = readme.Block("sh", "\n".join(examples) + "\n", 0, "lab", timeout=300)
    code, output = readme.run(block, readme.scratch_tree(tmp_path),
                              readme.environment(tmp_path), lab_name=lab_name,
                              tmp_dir=tmp_path)
    assert code == 0, output


def test_demo_what_tools_demo_sh_runs(lab_env, tmp_path):
    name = "d%d" % os.getpid()
    try:
        done = subprocess.run(
            [str(pathlib.Path(sys.executable).parent / "migplane"), "demo", "--name", name],
            capture_output=True, text=True, timeout=600,
            env=readme.environment(tmp_path), cwd=str(readme.ROOT))
    finally:
        left = not _down(name)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "same boot, no tick lost: yes" in done.stdout
    assert "no namespace, process or file of the lab is left" in done.stdout
    assert not left
