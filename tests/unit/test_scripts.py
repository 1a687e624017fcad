"""A plain install's scripts say which extra to install: one line, exit 2, no traceback.

The missing modules are simulated: ``sys.modules[name] = None`` makes
``import name`` fail as if it were not installed, and migplane's command
modules are imported afresh.
"""

import sys

import pytest

from migplane import scripts


@pytest.fixture
def without(monkeypatch):
    """Make ``modules`` unimportable and migplane's commands import afresh."""
    def hide(*modules):
        for name in [n for n in sys.modules
                     if n.startswith(("migplane.cli", "migplane.agent"))]:
            monkeypatch.delitem(sys.modules, name)
        for name in modules:
            monkeypatch.setitem(sys.modules, name, None)
    return hide


@pytest.mark.parametrize("script, prog, missing", [
    (scripts.migplane, "migplane", "jsonschema"),
    (scripts.migplane, "migplane", "requests"),
    (scripts.migplane_agent, "migplane-agent", "oslo_log"),
    (scripts.migplane_agent, "migplane-agent", "flask"),
])
def test_a_missing_extra_is_one_line_and_exit_2(without, capsys, script, prog, missing):
    without(missing)
    assert script(["--help"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("%s: the Python module %s is missing" % (prog, missing))
    assert "pip install 'migplane[agent]'" in err


def test_a_lazily_imported_extra_is_named_too(monkeypatch, capsys):
    from migplane.cli import main as cli_main

    def needs_libvirt(argv):
        import libvirt  # noqa: F401 (what `migplane lab` does)

    monkeypatch.setitem(sys.modules, "libvirt", None)
    monkeypatch.setattr(cli_main, "main", needs_libvirt)
    assert scripts.migplane(["lab", "up"]) == 2
    assert "pip install 'migplane[libvirt]'" in capsys.readouterr().err


def test_a_broken_migplane_module_is_not_blamed_on_an_extra(without):
    without("migplane.cli.commands")
    with pytest.raises(ModuleNotFoundError):
        scripts.migplane([])


def test_with_the_extras_installed_the_scripts_run_their_commands(capsys):
    with pytest.raises(SystemExit) as info:
        scripts.migplane(["--help"])
    assert info.value.code == 0
    assert "migration plane" in capsys.readouterr().out
