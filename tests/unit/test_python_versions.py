"""The package declares exactly the Python versions CI tests it on.

CI runs one interpreter (Debian 12's CPython 3.11; no other CPython is
reachable from its package registries), so the declared floor
(``python_requires``) and the version classifiers must name that version
and no other; vermin checks that no module needs a newer one.
"""

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _metadata():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser["metadata"]


def _floor():
    requires = _metadata()["python_requires"].strip()
    assert requires.startswith(">=") and "," not in requires, requires
    return requires[2:].strip()


def test_the_declared_floor_is_the_python_ci_runs():
    assert _floor() == "%d.%d" % sys.version_info[:2]


def test_the_classifiers_name_exactly_the_tested_version():
    declared = [line.rsplit(":: ", 1)[1] for line in _metadata()["classifier"].splitlines()
                if line.strip().startswith("Programming Language :: Python :: 3.")]
    assert declared == [_floor()]


def test_the_example_driver_declares_the_same_floor():
    text = (REPO / "examples" / "acme-driver" / "pyproject.toml").read_text()
    assert 'requires-python = ">=%s"' % _floor() in text


def test_every_module_runs_on_the_declared_floor():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations",
         "--eval-annotations", "--backport", "dataclasses", "-t=%s-" % _floor(),
         "migplane", "examples"],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
