"""The public API is typed (py.typed): mypy accepts it as its users will see it.

Only the untyped libraries named in pyproject.toml ([tool.mypy]) may be
imported untyped; a new untyped dependency fails here."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PUBLIC = ["migplane/core/driver.py", "migplane/core/uri.py", "migplane/core/loader.py",
          "migplane/core/settings.py", "migplane/core/versioned.py",
          "migplane/core/capabilities.py", "migplane/core/migrate_data.py",
          "migplane/testing"]


#: What holds under ``mypy --strict`` (the whole core, the drivers and the kit),
#: so that an embedding script type-checks strictly against it.
STRICT = ["migplane/core", "migplane/drivers", "migplane/testing", "migplane/opts.py",
          "migplane/scripts.py"]


def test_mypy_accepts_the_public_api(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent",
         "--cache-dir", str(tmp_path), *PUBLIC],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (REPO / "migplane" / "py.typed").exists()


def test_mypy_strict_accepts_the_strict_modules(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path), *STRICT],
        cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
