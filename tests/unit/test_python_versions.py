"""The Python versions setup.cfg declares are the ones the code can run on.

This machine has one interpreter; vermin checks every module against the
oldest declared version (3.9: e.g. no ``match``, no ``X | Y`` annotations
evaluated at run time, ``entry_points()`` without ``group=``), and the
declared classifiers must agree with ``python_requires``.
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


def test_classifiers_agree_with_python_requires():
    meta = _metadata()
    oldest = meta["python_requires"].strip().lstrip(">=")
    declared = sorted((line.rsplit(":: ", 1)[1] for line in meta["classifier"].splitlines()
                       if line.strip().startswith("Programming Language :: Python :: 3.")),
                      key=lambda v: tuple(map(int, v.split("."))))
    assert declared[0] == oldest
    running = "%d.%d" % sys.version_info[:2]
    assert running in declared  # what CI runs is declared


def test_every_module_runs_on_the_oldest_declared_python():
    oldest = _metadata()["python_requires"].strip().lstrip(">=")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations",
         "--eval-annotations", "--backport", "dataclasses", "-t=%s-" % oldest,
         "migplane", "examples"],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
