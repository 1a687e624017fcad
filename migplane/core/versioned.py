"""Versioned, immutable data that crosses between hosts as JSON primitives.

A small cousin of oslo.versionedobjects without its process-wide registry:
each class is a frozen dataclass with a ``VERSION`` and, per field, the
version that introduced it. ``to_primitive()`` can target an older minor
version (fields that version does not know are left out), and
``from_primitive()`` tolerates what peers of other minor versions send:
unknown fields from a newer peer are ignored, fields an older peer does not
send take their legacy defaults. Another major version is refused.

Versioning rules (every class here follows them; the fingerprint tests in
``tests/unit/core`` fail when fields change without a version bump):

* Adding a field with a legacy default is a minor bump (``1.1`` -> ``1.2``);
  removing a field, renaming it or changing its meaning is a major bump.
* Adding a value to an enumerated field (e.g. ``inbound_addr_source``) is a
  minor bump *and* the sender must not send the new value to a peer of an
  older minor version: ``to_primitive(target_version=...)`` maps it to a value
  that version knows (``_downgrade()``), or raises ``IncompatibleVersion``. A
  receiver refuses a value it does not know as invalid, naming it; it never
  guesses what a newer peer meant.
* Everything from a peer is bounded before it is looked at: at most
  :data:`MAX_DEPTH` levels of nesting, :data:`MAX_NODES` values and
  :data:`MAX_CHARS` characters of strings in all; errors quote at most a short
  prefix of a bad value (``exception.excerpt``).
"""

import dataclasses
import hashlib
import json
import logging
import re
import types
from typing import Any
from typing import Callable
from typing import ClassVar
from typing import Dict
from typing import Mapping
from typing import Optional
from typing import Tuple
from typing import Type
from typing import TypeVar
from typing import Union

from migplane.core import exception

LOG = logging.getLogger(__name__)

NAME_KEY = "migplane.name"
VERSION_KEY = "migplane.version"
DATA_KEY = "migplane.data"

#: Levels of nesting a primitive may have (the envelope counts as one).
MAX_DEPTH = 32
#: Values (scalars and containers) a primitive may hold in all.
MAX_NODES = 10000
#: Characters of strings (keys included) a primitive may hold in all.
MAX_CHARS = 1 << 20


#: A field's check: the (possibly normalised) value, or ``ValueError``.
Check = Callable[[Any], Any]
V = TypeVar("V", bound="VersionedData")


def _fields(obj: Any) -> Tuple["dataclasses.Field[Any]", ...]:
    """The dataclass fields of a versioned class or object (the mixin itself is
    not a dataclass; its subclasses are)."""
    return dataclasses.fields(obj)


#: ``field(..., default=REQUIRED)``: a field every version must send.
REQUIRED = dataclasses.MISSING


def field(since: str, check: Check, default: Any = None,
          default_factory: Optional[Callable[[], Any]] = None) -> Any:
    """Declare a field introduced in version ``since``, validated by ``check``.

    ``check(value)`` returns the (possibly normalised) value or raises
    ``ValueError`` with a reason. A field added in a minor version needs a
    default (what an older peer means by not sending it).
    """
    metadata = {"since": since, "check": check}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _since(f: "dataclasses.Field[Any]") -> str:
    # A field declared without field() (e.g. appended in a hurry) is treated as
    # 1.0 at run time; the fingerprint tests fail until it is declared properly.
    return str(f.metadata.get("since", "1.0"))


def _check(f: "dataclasses.Field[Any]") -> Check:
    check: Check = f.metadata.get("check", _unchecked)
    return check


def _unchecked(value: Any) -> Any:
    return value


# -- checks shared by the wire objects ----------------------------------------------


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def check_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


def check_number(value: Any) -> Union[int, float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    return value


def check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if len(value) > 4096:
        raise ValueError("longer than 4096 characters")
    return value


def check_optional_str(value: Any) -> Optional[str]:
    return None if value is None else check_str(value)


def check_str_tuple(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of strings")
    return tuple(check_str(v) for v in value)


def check_str_mapping(value: Any) -> Mapping[str, str]:
    if not isinstance(value, (dict, types.MappingProxyType)):
        raise ValueError("expected an object of strings")
    for key, item in value.items():
        check_str(key)
        check_str(item)
    frozen: Mapping[str, str] = freeze(dict(value))
    return frozen


def check_choice(*choices: str) -> Check:
    """A check accepting one of ``choices`` only (see the rule for new values)."""
    def check_enum(value: Any) -> str:
        if value not in choices:
            raise ValueError("expected one of %s" % ", ".join(choices))
        return str(value)
    return check_enum


def check_nested(cls: Type[V]) -> Callable[[Any], V]:
    """A check for a field holding another versioned object (or its primitive)."""
    def check(value: Any) -> V:
        if isinstance(value, cls):
            return value
        if isinstance(value, dict) and NAME_KEY in value:
            return cls.from_primitive(value)
        raise ValueError("expected a %s" % cls.__name__)
    check.__name__ = "nested_%s" % cls.__name__
    return check


_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})\Z", re.ASCII)


def parse_version(text: Any) -> Tuple[int, int]:
    """``(major, minor)`` of ``'major.minor'``: ASCII digits, nothing around them."""
    match = _VERSION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("%r is not a 'major.minor' version" % (text,))
    return int(match.group(1)), int(match.group(2))


def freeze(value: Any) -> Any:
    """Deep-freeze JSON data: dicts become read-only mappings, lists tuples."""
    if isinstance(value, (dict, types.MappingProxyType)):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`, giving plain JSON-serialisable data.

    It also walks plain dicts and lists, which may hold frozen values (e.g. a
    driver's ``dict(migrate_data.driver_data)`` updated with its own keys).
    """
    if isinstance(value, (dict, types.MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, VersionedData):
        return value.to_primitive()
    return value


def check_bounds(value: Any, what: str = "<primitive>", max_depth: int = MAX_DEPTH,
                 max_nodes: int = MAX_NODES, max_chars: int = MAX_CHARS) -> None:
    """Raise ``ValueError`` when ``value`` is nested or sized beyond the limits.

    Iterative, so that a hostile value nested thousands deep costs a loop, not
    a ``RecursionError``.
    """
    nodes = chars = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise ValueError("%s holds more than %d values" % (what, max_nodes))
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, (dict, types.MappingProxyType, list, tuple)):
            if depth > max_depth:
                raise ValueError("%s is nested more than %d levels deep"
                                 % (what, max_depth))
            if isinstance(item, (dict, types.MappingProxyType)):
                for key, child in item.items():
                    chars += len(key) if isinstance(key, str) else 0
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        if chars > max_chars:
            raise ValueError("%s holds more than %d characters" % (what, max_chars))


def check_json(value: Any) -> Any:
    """Accept only bounded data that survives a JSON round trip unchanged."""
    check_bounds(value, "the value")
    plain = thaw(value)
    try:
        if json.loads(json.dumps(plain, allow_nan=False)) != plain:
            raise ValueError("does not survive a JSON round trip")
    except (TypeError, ValueError) as err:
        raise ValueError("not JSON-serialisable data (%s)" % err)
    return freeze(value)


class VersionedData:
    """Mixin for frozen dataclasses that form part of a cross-host contract."""

    VERSION: ClassVar[str] = "1.0"
    #: Values and characters a primitive of this class may hold (``check_bounds``).
    MAX_NODES: ClassVar[int] = MAX_NODES
    MAX_CHARS: ClassVar[int] = MAX_CHARS

    def __post_init__(self) -> None:
        for f in _fields(self):
            value = getattr(self, f.name)
            try:
                checked = _check(f)(value)
            except ValueError as err:
                raise self._invalid(f.name, value, str(err))
            object.__setattr__(self, f.name, checked)
        self._validate()

    def _validate(self) -> None:
        """Cross-field rules; subclasses raise ``self._invalid(...)``."""

    @classmethod
    def _invalid(cls, field: str, value: Any, reason: str) -> exception.InvalidWireData:
        """The typed error for a bad field (``InvalidWireData`` naming the class)."""
        return exception.InvalidWireData(name=cls._name(), field=field, value=value,
                                         reason=reason)

    @classmethod
    def _name(cls) -> str:
        return cls.__name__

    def _downgrade(self, data: Dict[str, Any], target: Tuple[int, int]) -> Dict[str, Any]:
        """Adjust ``data`` (this object's fields as primitives) for an older
        minor version ``target`` (a ``(major, minor)`` tuple), e.g. map an
        enumerated value that version does not know. Default: nothing to do."""
        return data

    def to_primitive(self, target_version: Optional[str] = None) -> Dict[str, Any]:
        """JSON-safe primitives of this object, optionally for an older peer."""
        version = target_version or self.VERSION
        target = self._check_version(version)
        if target > parse_version(self.VERSION):
            raise exception.IncompatibleVersion(name=self._name(), version=version,
                                                supported="up to %s" % self.VERSION)
        data = {}
        for f in _fields(self):
            if parse_version(_since(f)) <= target:
                data[f.name] = thaw(getattr(self, f.name))
        if target < parse_version(self.VERSION):
            data = self._downgrade(data, target)
        return {NAME_KEY: self._name(), VERSION_KEY: version, DATA_KEY: data}

    @classmethod
    def _check_version(cls, version: Any) -> Tuple[int, int]:
        try:
            theirs = parse_version(version)
        except ValueError:
            raise cls._invalid(VERSION_KEY, version, "not a 'major.minor' version")
        ours = parse_version(cls.VERSION)
        if theirs[0] != ours[0]:
            raise exception.IncompatibleVersion(name=cls._name(), version=version,
                                                supported=ours[0])
        return theirs

    @classmethod
    def from_primitive(cls: Type[V], primitive: Any) -> V:
        """Build an object from a peer's primitives, tolerating other minor versions."""
        if not isinstance(primitive, dict):
            raise cls._invalid("<primitive>", primitive, "expected a JSON object")
        try:
            check_bounds(primitive, max_nodes=cls.MAX_NODES, max_chars=cls.MAX_CHARS)
        except ValueError as err:
            raise cls._invalid("<primitive>", primitive, str(err))
        name = primitive.get(NAME_KEY)
        if name != cls._name():
            raise cls._invalid(NAME_KEY, name, "expected %r" % cls._name())
        theirs = cls._check_version(primitive.get(VERSION_KEY))
        data = primitive.get(DATA_KEY)
        if not isinstance(data, dict):
            raise cls._invalid(DATA_KEY, data, "expected a JSON object")
        known = {f.name for f in _fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            if theirs <= parse_version(cls.VERSION):
                raise cls._invalid(unknown[0], data.get(unknown[0]),
                                   "unknown field for version %s" % primitive[VERSION_KEY])
            LOG.debug("Ignoring %d field(s) of %s %s from a newer peer, e.g. %s",
                      len(unknown), cls._name(), primitive[VERSION_KEY],
                      exception.excerpt(unknown[0]))
        return cls._from_fields(cls._known(data, "missing (version %s)"
                                           % primitive[VERSION_KEY]))

    @classmethod
    def from_dict(cls: Type[V], data: Any) -> V:
        """From :meth:`to_primitive`, or from the plain dict of a peer that
        predates versioning (its unknown fields ignored, missing ones defaulted,
        as for a newer or older minor version)."""
        if isinstance(data, dict) and NAME_KEY in data:
            return cls.from_primitive(data)
        if not isinstance(data, (dict, types.MappingProxyType)):
            raise cls._invalid("<%s>" % cls._name(), data, "expected a JSON object")
        try:
            check_bounds(data, max_nodes=cls.MAX_NODES, max_chars=cls.MAX_CHARS)
        except ValueError as err:
            raise cls._invalid("<%s>" % cls._name(), data, str(err))
        return cls._from_fields(cls._known(data, "missing"))

    @classmethod
    def _known(cls, data: Mapping[str, Any], missing: str) -> Dict[str, Any]:
        """The fields of ``data`` this class knows; every required one present
        (else invalid, ``missing`` saying why)."""
        for f in _fields(cls):
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            if required and f.name not in data:
                raise cls._invalid(f.name, None, missing)
        known = {f.name for f in _fields(cls)}
        return {k: v for k, v in data.items() if k in known}

    @classmethod
    def _from_fields(cls: Type[V], fields: Dict[str, Any]) -> V:
        """Build from the known fields of a primitive; subclasses holding other
        versioned objects turn their primitives back into objects here."""
        return cls(**fields)

    @classmethod
    def fingerprint(cls) -> str:
        """Version plus a hash of the fields: changes when the contract changes."""
        def default(f: "dataclasses.Field[Any]") -> str:
            if f.default is not dataclasses.MISSING:
                return repr(f.default)
            if f.default_factory is not dataclasses.MISSING:
                return repr(f.default_factory())
            return "required"

        spec = [(f.name, f.metadata.get("since"), _check(f).__name__, default(f))
                for f in _fields(cls)]
        digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:16]
        return "%s-%s" % (cls.VERSION, digest)
