"""Versioned, immutable data that crosses between hosts as JSON primitives.

A small cousin of oslo.versionedobjects without its process-wide registry:
each class is a frozen dataclass with a ``VERSION`` and, per field, the
version that introduced it. ``to_primitive()`` can target an older minor
version (fields that version does not know are left out), and
``from_primitive()`` tolerates what peers of other minor versions send:
unknown fields from a newer peer are ignored, fields an older peer does not
send take their legacy defaults. Another major version is refused.
"""

import dataclasses
import hashlib
import json
import logging
import types
from typing import ClassVar

from migplane.core import exception

LOG = logging.getLogger(__name__)

NAME_KEY = "migplane.name"
VERSION_KEY = "migplane.version"
DATA_KEY = "migplane.data"


def field(since, check, default=None, default_factory=None):
    """Declare a field introduced in version ``since``, validated by ``check``.

    ``check(value)`` returns the (possibly normalised) value or raises
    ``ValueError`` with a reason.
    """
    metadata = {"since": since, "check": check}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_version(text):
    try:
        major, minor = text.split(".")
        return int(major), int(minor)
    except (AttributeError, ValueError):
        raise ValueError("%r is not a 'major.minor' version" % (text,))


def freeze(value):
    """Deep-freeze JSON data: dicts become read-only mappings, lists tuples."""
    if isinstance(value, (dict, types.MappingProxyType)):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value):
    """The inverse of :func:`freeze`, giving plain JSON-serialisable data.

    It also walks plain dicts and lists, which may hold frozen values (e.g. a
    driver's ``dict(migrate_data.driver_data)`` updated with its own keys).
    """
    if isinstance(value, (dict, types.MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def check_json(value):
    """Accept only data that survives a JSON round trip unchanged."""
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

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                checked = f.metadata["check"](value)
            except ValueError as err:
                raise exception.InvalidMigrateData(field=f.name, value=thaw(value),
                                                   reason=str(err))
            object.__setattr__(self, f.name, checked)
        self._validate()

    def _validate(self):
        """Cross-field rules; subclasses raise InvalidMigrateData."""

    @classmethod
    def _name(cls):
        return cls.__name__

    def to_primitive(self, target_version=None):
        """JSON-safe primitives of this object, optionally for an older peer."""
        version = target_version or self.VERSION
        target = self._check_version(version)
        if target > parse_version(self.VERSION):
            raise exception.IncompatibleVersion(name=self._name(), version=version,
                                                supported="up to %s" % self.VERSION)
        data = {}
        for f in dataclasses.fields(self):
            if parse_version(f.metadata["since"]) <= target:
                data[f.name] = thaw(getattr(self, f.name))
        return {NAME_KEY: self._name(), VERSION_KEY: version, DATA_KEY: data}

    @classmethod
    def _check_version(cls, version):
        try:
            theirs = parse_version(version)
        except ValueError:
            raise exception.InvalidMigrateData(field=VERSION_KEY, value=version,
                                               reason="not a 'major.minor' version")
        ours = parse_version(cls.VERSION)
        if theirs[0] != ours[0]:
            raise exception.IncompatibleVersion(name=cls._name(), version=version,
                                                supported=ours[0])
        return theirs

    @classmethod
    def from_primitive(cls, primitive):
        """Build an object from a peer's primitives, tolerating other minor versions."""
        if not isinstance(primitive, dict):
            raise exception.InvalidMigrateData(field="<primitive>", value=primitive,
                                               reason="expected a JSON object")
        name = primitive.get(NAME_KEY)
        if name != cls._name():
            raise exception.InvalidMigrateData(field=NAME_KEY, value=name,
                                               reason="expected %r" % cls._name())
        theirs = cls._check_version(primitive.get(VERSION_KEY))
        data = primitive.get(DATA_KEY)
        if not isinstance(data, dict):
            raise exception.InvalidMigrateData(field=DATA_KEY, value=data,
                                               reason="expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            if theirs <= parse_version(cls.VERSION):
                raise exception.InvalidMigrateData(
                    field=unknown[0], value=data[unknown[0]],
                    reason="unknown field for version %s" % primitive[VERSION_KEY])
            LOG.debug("Ignoring fields %s of %s %s from a newer peer", unknown,
                      cls._name(), primitive[VERSION_KEY])
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def fingerprint(cls):
        """Version plus a hash of the fields: changes when the contract changes."""
        spec = [(f.name, f.metadata["since"], f.metadata["check"].__name__,
                 repr(f.default) if f.default is not dataclasses.MISSING
                 else repr(f.default_factory()))
                for f in dataclasses.fields(cls)]
        digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:16]
        return "%s-%s" % (cls.VERSION, digest)
