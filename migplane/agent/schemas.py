"""JSON schemas of every request body the agent accepts.

Closed schemas (``additionalProperties: false``): a misspelt field is an
error naming it, not an option silently ignored.
"""

from migplane.core import opts as core_opts
from migplane.core import settings as settings_mod
from migplane.core import versioned

INSTANCE = {"type": "string", "minLength": 1, "maxLength": 255,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+:-]*\Z"}
MIGRATION_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}\Z"}
HOST_NAME = {"type": "string", "minLength": 1, "maxLength": 253,
             "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:%-]*\Z"}
NULLABLE_STR = {"type": ["string", "null"], "maxLength": 1024}

MIGRATE_DATA = {
    "type": "object",
    "required": [versioned.NAME_KEY, versioned.VERSION_KEY, versioned.DATA_KEY],
    "properties": {
        versioned.NAME_KEY: {"type": "string"},
        versioned.VERSION_KEY: {"type": "string", "pattern": r"^[0-9]{1,4}\.[0-9]{1,4}\Z"},
        versioned.DATA_KEY: {"type": "object"},
    },
    "additionalProperties": False,
}

URIS = {
    "type": "object",
    "required": ["control_uri", "data_uri", "listen_address", "disks_uri",
                 "tls_destination", "bulk_host", "plane"],
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

def _step(required=(), **props):
    props = dict(props, instance=INSTANCE)
    return {"type": "object", "required": ["instance", *required],
            "properties": props, "additionalProperties": False}


_MIGRATION_ID = {"migration_id": MIGRATION_ID}
_WITH_DATA = _step(["migration_id", "migrate_data"], migrate_data=MIGRATE_DATA,
                   **_MIGRATION_ID)

#: Every field a step body may have (``wire.StepRequest``); :data:`STEPS` says
#: which one each step needs.
STEP = _step(block_migration={"type": "boolean"}, migrate_data=MIGRATE_DATA,
             **_MIGRATION_ID)

#: The destination-side driver steps served under /v1/steps/<name>, by name.
STEPS = {
    "check_can_live_migrate_destination": _step(["migration_id"],
                                                block_migration={"type": "boolean"},
                                                **_MIGRATION_ID),
    "plan_inbound": _step(block_migration={"type": "boolean"}),
    "pre_live_migration": _WITH_DATA,
    "post_live_migration_at_destination": _WITH_DATA,
    "rollback_live_migration_at_destination": _WITH_DATA,
    "pause_instance": _WITH_DATA,
}

#: Per-request overrides of the source's [live_migration] options.
OVERRIDES = {
    "type": "object",
    "properties": {
        "bandwidth_mib": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "permit_post_copy": {"type": "boolean"},
        "permit_auto_converge": {"type": "boolean"},
        "strategy": {"enum": list(settings_mod.STRATEGIES)},
        "completion_timeout": {"type": "integer", "minimum": 0,
                               "maximum": core_opts.MAXIMA["completion_timeout"]},
        "timeout_action": {"enum": list(settings_mod.TIMEOUT_ACTIONS)},
        "downtime_ms": {"type": "integer", "minimum": 100,
                        "maximum": core_opts.MAXIMA["downtime_ms"]},
        "parallel_connections": {"type": "integer", "minimum": 1, "maximum": 255},
    },
    "additionalProperties": False,
}

DESTINATION = {
    "type": "object",
    "anyOf": [{"required": ["host"]}, {"required": ["url"]}],
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 1024,
                "pattern": r"^https?://[^\s]*\Z"},
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

#: The body of ``POST /v1/evacuations``.
EVACUATION = {
    "type": "object", "required": ["destinations"],
    "properties": {
        "destinations": {"type": "array", "minItems": 1, "maxItems": 64,
                         "items": DESTINATION},
        "instances": {"type": "array", "maxItems": 1024,
                      "items": {"type": "string", "minLength": 1, "maxLength": 255,
                                "pattern": INSTANCE["pattern"]}},
        "dry_run": {"type": "boolean"},
        "link_rate_mib": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
        "fixed_cost_s": {"type": "number", "minimum": 0, "maximum": 600},
        "pipeline": {"type": "boolean"},
        "measure_dirty_rate": {"type": "boolean"},
        "options": {"type": "object"},
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
        "payload": {"type": "string", "pattern": r"^[0-9a-f]{32}\Z"},
        "timeout": {"type": "number", "minimum": 0.1, "maximum": 30},
    },
    "additionalProperties": False,
}

EMPTY = {"type": "object", "additionalProperties": False}
