"""The public API is typed (py.typed): mypy accepts it as its users will see it."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PUBLIC = ["migplane/core/driver.py", "migplane/core/uri.py", "migplane/core/loader.py",
          "migplane/core/settings.py", "migplane/core/versioned.py",
          "migplane/core/capabilities.py", "migplane/core/migrate_data.py",
          "migplane/testing"]


#: Modules that hold under ``mypy --strict``, so that an embedding script
#: type-checks strictly against them, the flow included.
STRICT = ["migplane/core/deadlines.py", "migplane/core/flow.py", "migplane/core/limiter.py",
          "migplane/core/versioned.py", "migplane/core/loader.py", "migplane/core/opts.py",
          "migplane/core/strategy.py", "migplane/core/convergence.py",
          "migplane/core/monitor.py", "migplane/core/planning.py", "migplane/core/units.py",
          "migplane/core/capabilities.py", "migplane/core/events.py",
          "migplane/opts.py", "migplane/scripts.py", "migplane/testing",
          "migplane/drivers/fake", "migplane/drivers/libvirt"]


def test_mypy_accepts_the_public_api(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
         "--cache-dir", str(tmp_path), *PUBLIC],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (REPO / "migplane" / "py.typed").exists()


def test_mypy_strict_accepts_the_strict_modules(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
         "--follow-imports=silent", "--cache-dir", str(tmp_path), *STRICT],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
