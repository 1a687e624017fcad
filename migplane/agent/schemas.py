"""JSON schemas of every request body the agent accepts.

Closed schemas (``additionalProperties: false``): a misspelt field is an
error naming it, not an option silently ignored.
"""

import dataclasses
from typing import Optional

from migplane.core import settings as settings_mod
from migplane.core import versioned

INSTANCE = {"type": "string", "minLength": 1, "maxLength": 255,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+:-]*$"}
MIGRATION_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
HOST_NAME = {"type": "string", "minLength": 1, "maxLength": 253,
             "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:%-]*$"}
NULLABLE_STR = {"type": ["string", "null"], "maxLength": 1024}

MIGRATE_DATA = {
    "type": "object",
    "required": [versioned.NAME_KEY, versioned.VERSION_KEY, versioned.DATA_KEY],
    "properties": {
        versioned.NAME_KEY: {"type": "string"},
        versioned.VERSION_KEY: {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
        versioned.DATA_KEY: {"type": "object"},
    },
    "additionalProperties": False,
}

URIS = {
    "type": "object",
    "required": ["control_uri", "bulk_host", "plane"],
    "properties": {
        "control_uri": {"type": "string", "minLength": 1, "maxLength": 1024},
        "data_uri": NULLABLE_STR,
        "listen_address": NULLABLE_STR,
        "disks_uri": NULLABLE_STR,
        "tls_destination": NULLABLE_STR,
        "bulk_host": {"type": "string", "minLength": 1, "maxLength": 255},
        "plane": {"enum": ["management", "migration"]},
        "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}

_SETTING_TYPES = {bool: {"type": "boolean"}, int: {"type": "integer", "minimum": 0},
                  float: {"type": "number", "minimum": 0}}
#: Settings that may be unset (None), by their annotation.
_OPTIONAL_TYPES = {Optional[bool]: {"type": ["boolean", "null"]},
                   Optional[int]: {"type": ["integer", "null"], "minimum": 0}}


def _settings_schema():
    props = {}
    for f in dataclasses.fields(settings_mod.MigrationSettings):
        default = f.default
        if f.type in _OPTIONAL_TYPES:
            props[f.name] = _OPTIONAL_TYPES[f.type]
        elif isinstance(default, bool):
            props[f.name] = _SETTING_TYPES[bool]
        elif isinstance(default, int):
            props[f.name] = _SETTING_TYPES[int]
        elif isinstance(default, float):
            props[f.name] = _SETTING_TYPES[float]
        else:
            props[f.name] = NULLABLE_STR
    return {"type": "object", "properties": props, "additionalProperties": False}


SETTINGS = _settings_schema()


def _step(required=(), **props):
    props = dict(props, instance=INSTANCE)
    return {"type": "object", "required": ["instance", *required],
            "properties": props, "additionalProperties": False}


_WITH_DATA = _step(["migrate_data"], migrate_data=MIGRATE_DATA)

#: The driver steps served under /v1/steps/<name>, by name.
STEPS = {
    "check_can_live_migrate_destination": _step(block_migration={"type": "boolean"}),
    "plan_inbound": _step(block_migration={"type": "boolean"}),
    "pre_live_migration": _WITH_DATA,
    "post_live_migration_at_destination": _WITH_DATA,
    "rollback_live_migration_at_destination": _WITH_DATA,
    "check_can_live_migrate_source": _WITH_DATA,
    "live_migration": _step(["migrate_data", "uris", "settings"],
                            migrate_data=MIGRATE_DATA, uris=URIS, settings=SETTINGS),
    "get_job_progress": _step(),
    "abort_job": _step(),
    "force_complete": _step(["post_copy"], post_copy={"type": "boolean"}),
    "set_max_downtime": _step(["downtime_ms"],
                              downtime_ms={"type": "integer", "minimum": 0,
                                            "maximum": 3600_000}),
    "post_live_migration_at_source": _WITH_DATA,
    "rollback_live_migration_at_source": _WITH_DATA,
}

#: Per-request overrides of the source's [live_migration] options.
OVERRIDES = {
    "type": "object",
    "properties": {
        "bandwidth_mib": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "permit_post_copy": {"type": "boolean"},
        "permit_auto_converge": {"type": "boolean"},
        "strategy": {"enum": list(settings_mod.STRATEGIES)},
        "completion_timeout": {"type": "integer", "minimum": 0},
        "timeout_action": {"enum": list(settings_mod.TIMEOUT_ACTIONS)},
        "downtime_ms": {"type": "integer", "minimum": 100},
        "parallel_connections": {"type": "integer", "minimum": 1, "maximum": 255},
    },
    "additionalProperties": False,
}

DESTINATION = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 1024,
                "pattern": r"^https?://"},
        "host": HOST_NAME,
    },
    "additionalProperties": False,
}

MIGRATION = {
    "type": "object",
    "required": ["instance", "destination"],
    "properties": {
        "instance": INSTANCE,
        "destination": DESTINATION,
        "block_migration": {"type": "boolean"},
        "options": OVERRIDES,
    },
    "additionalProperties": False,
}

SLOT = {
    "type": "object",
    "required": ["migration_id", "source", "instance"],
    "properties": {"migration_id": MIGRATION_ID, "source": HOST_NAME,
                   "instance": INSTANCE},
    "additionalProperties": False,
}

PROBE_LISTEN = {
    "type": "object",
    "properties": {"timeout": {"type": "number", "minimum": 1, "maximum": 60}},
    "additionalProperties": False,
}

PROBE_CONNECT = {
    "type": "object",
    "required": ["address", "port", "payload"],
    "properties": {
        "address": {"type": "string", "minLength": 1, "maxLength": 255},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "payload": {"type": "string", "pattern": r"^[0-9a-f]{32}$"},
        "timeout": {"type": "number", "minimum": 0.1, "maximum": 30},
    },
    "additionalProperties": False,
}

EMPTY = {"type": "object", "additionalProperties": False}
