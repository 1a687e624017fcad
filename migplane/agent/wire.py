"""How the core's objects cross HTTP, in both directions.

One place for the client and the server, so the two cannot drift:
``MigrateData`` always crosses as ``to_primitive()``; URIs, settings,
progress and driver facts as their ``to_dict()`` forms for now (the request
schemas are closed and expect them). Every loader accepts both forms: a
versioned primitive (``to_primitive()``: newer minor versions' fields
ignored, older ones' defaulted, another major refused) or a plain dict of
a peer that predates versioning (unknown fields ignored).
"""

import dataclasses
import os

from migplane.core import driver as driver_mod
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import uri as uri_mod

#: Environment variable pinning the versions this process sends, e.g.
#: ``MigrateData=1.0,MigrationSettings=1.0``: what an agent of the next release
#: does until every host is upgraded (and how the rolling-upgrade test
#: emulates an agent of the previous release).
PINS_ENV = "MIGPLANE_WIRE_PINS"


def pinned(name):
    """The version pinned for object ``name`` in :data:`PINS_ENV`, or None."""
    for item in os.environ.get(PINS_ENV, "").split(","):
        key, sep, version = item.strip().partition("=")
        if sep and key.strip() == name:
            return version.strip()
    return None


def dump_data(migrate_data):
    return migrate_data.to_primitive(target_version=pinned("MigrateData"))


def load_data(primitive):
    return md.MigrateData.from_primitive(primitive)


def dump_uris(uris):
    return uris.to_dict()


def load_uris(data):
    return uri_mod.MigrationURIs.from_dict(data)


def dump_settings(settings):
    return dataclasses.asdict(settings)


def load_settings(data):
    return settings_mod.MigrationSettings.from_dict(data)


def load_progress(data):
    return driver_mod.JobProgress.from_dict(data)


def load_info(data):
    return driver_mod.InstanceInfo(**{k: data[k] for k in
                                      ("name", "state", "memory_bytes", "disk_bytes")
                                      if k in data})


def load_driver_info(data):
    return driver_mod.DriverInfo.from_dict(data)
