"""The lab's JSON state file: the only thing `down` needs after a crash."""

import json
import os
from pathlib import Path

STATE_ROOT = Path(os.environ.get("MIGPLANE_LAB_STATE_ROOT", "/run/migplane-lab"))


def state_dir(name):
    return STATE_ROOT / name


def state_path(name):
    return state_dir(name) / "state.json"


def save(name, data):
    path = state_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".state.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load(name):
    try:
        return json.loads(state_path(name).read_text())
    except FileNotFoundError:
        return None


def remove(name):
    try:
        state_path(name).unlink()
    except FileNotFoundError:
        pass
    try:
        state_dir(name).rmdir()
    except OSError:
        pass


def names():
    """Labs with a state file on this machine."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/state.json"))
