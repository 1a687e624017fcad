"""The shape of ``results.json``, as a JSON Schema, and its check.

:func:`validate` returns a list of problems (empty when the file is well
formed), each naming the path of the bad value (``isolation.runs[0].scenario:
...``); the CI smoke tests and ``--render-only`` use it. Records are open:
a part may add fields (a schema lists what the report and the targets read),
so the parts can grow without touching this file.
"""

import jsonschema

from migplane.bench import evacuation

SCHEMA = "migplane-bench/1"
PARTS = ("isolation", "efficiency", "evacuation", "convergence", "overhead")
SCENARIOS = ("baseline", "split", "unsplit", "virsh")
TOOLS = ("migplane", "virsh")
CONVERGENCE_TOOLS = ("virsh", "static", "default", "no-postcopy")

NUMBER = {"type": "number"}
NUMBER_OR_NULL = {"type": ["number", "null"]}
TEXT = {"type": "string", "minLength": 1}
BOOLEAN = {"type": "boolean"}


def record(*required, **properties):
    """An object with ``required`` fields; fields not named here are allowed."""
    return {"type": "object", "required": list(required), "properties": properties}


def mapping(values, keys=None):
    """An object whose values all match ``values`` (and keys ``keys``)."""
    schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = {"enum": list(keys)}
    return schema


def array(items, **extra):
    return dict({"type": "array", "items": items}, **extra)


SPREAD = record("median", "min", "max", "n", median=NUMBER_OR_NULL, min=NUMBER_OR_NULL,
                max=NUMBER_OR_NULL)

META = record("started_at", "duration_s", "quick", "rate", "rate_bps", "lab", "versions",
              "noise", "parts", quick=BOOLEAN, duration_s=NUMBER_OR_NULL,
              rate_bps={"type": "number", "exclusiveMinimum": 0},
              parts=array({"enum": list(PARTS)}))

TARGET = record("id", "part", "what", "target", "value", "met", "measured",
                id=TEXT, what=TEXT, target=TEXT, measured=TEXT, value=NUMBER_OR_NULL,
                met={"enum": [True, False, None]})

ISOLATION = record(
    "probe", "runs", "summary", "samples", "guest",
    runs=array(record(
        "id", "scenario", "concurrency", "start", "end", "probe", "plane_bytes",
        "migration_bytes", "migrations", "ok",
        scenario={"enum": list(SCENARIOS)}, start=NUMBER, end=NUMBER,
        probe=record("n", "lost", "p50_ms", "p99_ms", "max_ms"),
        plane_bytes=record("management", "migration"))),
    summary=mapping(mapping(record("p50_ms", "p99_ms", "max_ms", "migration_bytes", "runs"),
                            keys=SCENARIOS)),
    samples=array({"type": "array", "prefixItems": [NUMBER, NUMBER_OR_NULL],
                   "minItems": 2, "maxItems": 2}))

_TOOL_FIGURES = ("wall_s", "job_ms", "downtime_ms", "iterations", "goodput_Bps",
                 "goodput_share_of_link")
_TOOL = record(*_TOOL_FIGURES, **dict.fromkeys(_TOOL_FIGURES, SPREAD))
EFFICIENCY = record(
    "kinds", "link_rate_bps",
    kinds=mapping(record(
        "pairs", "ratio", "tools", "migrations", "guest", ratio=SPREAD,
        tools=record(*TOOLS, **{tool: _TOOL for tool in TOOLS}),
        pairs=array(record("migplane_wall_s", "virsh_wall_s", "ratio", ratio=NUMBER)))))

EVACUATION = record(
    "guests", "limit", "destinations", "repeats", "runs", "ways", "specs", "link_rate_bps",
    runs=array(record(
        "way", "repeat", "total_s", "ideal_s", "ratio_to_ideal", "idle_s", "gaps",
        "downtime_ms", "peaks", "limit_respected", "guest_checks", "all_intact",
        "migrations", "throughput", "source_migration_tx_bytes",
        way={"enum": list(evacuation.WAYS)}, peaks=mapping({"type": "integer"}),
        downtime_ms=SPREAD)),
    ways=mapping(record("total_s", "ratio_to_ideal", "idle_s", total_s=SPREAD,
                        ratio_to_ideal=SPREAD, idle_s=SPREAD), keys=evacuation.WAYS))

CONVERGENCE = record(
    "link_mib_s", "memory_mib", "time_limit_s", "ram_over_link_s", "multiples", "runs",
    "summary",
    runs=array(record(
        "tool", "multiple", "status", "converged", "wall_s", "ratio", "downtime_ms",
        "iterations", "escalations", "intact",
        tool={"enum": list(CONVERGENCE_TOOLS)}, ratio=NUMBER, wall_s=NUMBER,
        converged=BOOLEAN)))

OVERHEAD = record("micro", micro=mapping(record("ops_per_s", ops_per_s=NUMBER)))

#: The whole file. A part that did not run is absent or null.
RESULTS = record(
    "schema", "meta", "targets", "errors", "plots",
    schema={"const": SCHEMA}, meta=META, targets=array(TARGET, minItems=1),
    errors={"type": "array"},
    plots=array({"type": "string", "pattern": r"\.png\Z"}),
    isolation=ISOLATION, efficiency=EFFICIENCY, evacuation=EVACUATION,
    convergence=CONVERGENCE, overhead=OVERHEAD)

_validator = None


def _checker():
    global _validator
    if _validator is None:
        jsonschema.Draft202012Validator.check_schema(RESULTS)
        _validator = jsonschema.Draft202012Validator(RESULTS)
    return _validator


def path_of(parts):
    """``isolation.runs[0].scenario`` for the path ``isolation, runs, 0, scenario``."""
    text = ""
    for part in parts:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + part
    return text or "results"


_ARTICLE = {"object": "an object", "array": "a list", "integer": "an integer",
            "number": "a number", "string": "a string", "boolean": "a boolean"}


def _problem(error):
    where, kind, limit = path_of(error.absolute_path), error.validator, error.validator_value
    if kind == "required":
        missing = [k for k in limit if k not in error.instance]
        return "%s: missing %s" % (where, ", ".join(missing))
    if kind == "type":
        types_ = [limit] if isinstance(limit, str) else limit
        return "%s: not %s, got %s" % (where, " or ".join(_ARTICLE.get(t, t) for t in types_),
                                       _short(error.instance))
    if kind == "enum":
        return "%s: not one of %s, got %s" % (where, ", ".join(map(str, limit)),
                                              _short(error.instance))
    if kind == "minItems" and limit == 1:
        return "%s: not a non-empty list" % where
    return "%s: %s" % (where, error.message[:200])


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _ordered(results):
    """What a JSON Schema cannot say: each isolation run ends after it starts."""
    runs = (results.get("isolation") or {}).get("runs") or []
    return ["isolation.runs[%d]: start/end not an ordered pair of numbers" % i
            for i, run in enumerate(runs)
            if run["start"] > run["end"]]


def validate(results):
    """Problems of ``results`` as a list of strings naming the paths; empty when
    well formed."""
    if not isinstance(results, dict):
        return ["results: not an object"]
    results = {k: v for k, v in results.items() if not (k in PARTS and v is None)}
    problems = sorted(_problem(e) for e in _checker().iter_errors(results))
    return problems or _ordered(results)
