"""Request-body validation: every error names the offending field and value."""

import json

import jsonschema

from migplane.agent import errors

_validators = {}


def _validator(schema):
    key = id(schema)
    if key not in _validators:
        jsonschema.Draft202012Validator.check_schema(schema)
        _validators[key] = jsonschema.Draft202012Validator(schema)
    return _validators[key]


def _path(error):
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return ".".join(parts + [missing]), "is required"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(parts + extra[:1]), "is not allowed here (unknown field)"
    value = json.dumps(error.instance)[:80]
    kind, limit = error.validator, error.validator_value
    if kind == "type":
        reason = "must be of type %s, got %s" % (limit, value)
    elif kind == "pattern":
        reason = "has invalid value %s (allowed: %s)" % (value, limit)
    elif kind == "enum":
        reason = "must be one of %s, got %s" % (", ".join(json.dumps(v) for v in limit),
                                               value)
    elif kind == "minimum":
        reason = "must be at least %s, got %s" % (limit, value)
    elif kind == "maximum":
        reason = "must be at most %s, got %s" % (limit, value)
    elif kind == "minLength":
        reason = "must not be empty" if limit == 1 else "is too short: %s" % value
    elif kind == "maxLength":
        reason = "is too long (at most %s characters)" % limit
    elif kind == "anyOf" and all(set(sub) == {"required"} for sub in limit):
        reason = "needs one of the fields %s" % ", ".join(
            repr(name) for sub in limit for name in sub["required"])
    else:
        reason = "is invalid: %s" % error.message
    return ".".join(parts) or "<body>", reason


def validate(body, schema):
    """Return ``body`` when it matches ``schema``; else raise BadRequest naming the field."""
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(body))
    if error is not None:
        field, reason = _path(error)
        raise errors.BadRequest(field=field, reason=reason)
    return body


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


#: Deepest nesting of objects and arrays a request body may have.
MAX_DEPTH = 32


def _depth_error(value, limit=MAX_DEPTH):
    """The path of the first value nested deeper than ``limit``, or None (no recursion)."""
    stack = [(value, (), 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth >= limit:
                return ".".join(path[:4]) + (".…" if len(path) > 4 else "") or "<body>"
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((v, path + (str(k),), depth + 1) for k, v in items)
    return None


def parse_json(raw):
    """Decode a request body; an empty body counts as ``{}``. Nesting is bounded."""
    if not raw or not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise errors.BadRequest(field="<body>", reason="nests objects or arrays deeper "
                                                       "than %d levels" % MAX_DEPTH)
    except (UnicodeDecodeError, ValueError) as err:
        raise errors.BadRequest(field="<body>", reason="is not valid JSON (%s)"
                                % str(err)[:200])
    field = _depth_error(body)
    if field is not None:
        raise errors.BadRequest(field=field, reason="nests objects or arrays deeper "
                                                    "than %d levels" % MAX_DEPTH)
    return body
