"""Every object that crosses between hosts is versioned like MigrateData.

DriverInfo and its Capabilities, the resolved MigrationURIs, MigrationSettings
and per-migration overrides of them, a job's JobProgress, the dirty-rate and
link measurements and the MigrationPlan built on them: a newer minor version's unknown fields
are ignored, an older one's missing fields take their defaults, another major
version is refused with an error naming it. (Fingerprints: in
test_core_migrate_data.py, one table for every wire object.)
"""

import dataclasses
import json
import logging

import pytest

from migplane.core import capabilities
from migplane.core import convergence
from migplane.core import driver
from migplane.core import exception
from migplane.core import settings
from migplane.core import strategy
from migplane.core import uri
from migplane.core import versioned

CAPS = capabilities.Capabilities(schemes=("tcp", "tls"), data_uri=True, post_copy=True)
INFO = driver.DriverInfo(name="acme", version="2.3", capabilities=CAPS)
URIS = uri.MigrationURIs(control_uri="qemu+tcp://host-b/system",
                         data_uri="tcp://198.51.100.12", listen_address="198.51.100.12",
                         disks_uri=None, tls_destination=None, bulk_host="198.51.100.12",
                         plane=uri.MIGRATION, reasons={"data_uri": "migration plane"})
SETTINGS = settings.MigrationSettings(bandwidth_mib=200, control_plane="migration")
PROGRESS = driver.JobProgress(state=driver.JOB_RUNNING, data_total=1 << 30,
                              data_remaining=1 << 29, iteration=2, downtime_ms=None,
                              error=None, postcopy=False)
MEASUREMENT = convergence.DirtyRateMeasurement(
    50 << 20, convergence.SAMPLING, 1.0, "sampled", working_set=1 << 28)
LINK = convergence.LinkRate(100 << 20, convergence.BANDWIDTH_LIMIT, "the limit")
PLAN = strategy.choose(1 << 30, MEASUREMENT, LINK, CAPS, SETTINGS)
OBJECTS = [CAPS, INFO, URIS, SETTINGS, PROGRESS, MEASUREMENT, LINK, PLAN]


def ids(obj):
    return type(obj).__name__


def over_json(primitive):
    return json.loads(json.dumps(primitive, allow_nan=False))


def bump(primitive, version):
    return dict(primitive, **{versioned.VERSION_KEY: version})


@pytest.mark.parametrize("obj", OBJECTS, ids=ids)
def test_round_trip_through_json(obj):
    again = type(obj).from_primitive(over_json(obj.to_primitive()))
    assert again == obj


@pytest.mark.parametrize("obj", OBJECTS, ids=ids)
def test_a_newer_minor_versions_unknown_fields_are_ignored(obj):
    major = versioned.parse_version(obj.VERSION)[0]
    prim = bump(obj.to_primitive(), "%d.99" % major)
    prim[versioned.DATA_KEY]["from_the_future"] = {"x": 1}
    assert type(obj).from_primitive(over_json(prim)) == obj


@pytest.mark.parametrize("obj", OBJECTS, ids=ids)
def test_another_major_version_is_refused_naming_it(obj):
    major = versioned.parse_version(obj.VERSION)[0]
    prim = bump(obj.to_primitive(), "%d.0" % (major + 1))
    with pytest.raises(exception.IncompatibleVersion) as info:
        type(obj).from_primitive(prim)
    assert type(obj).__name__ in str(info.value) and "%d.0" % (major + 1) in str(info.value)


def test_a_new_capability_from_a_newer_peer_is_ignored_not_a_type_error():
    """What broke before: a newer agent's new capability flag gave TypeError."""
    prim = bump(INFO.to_primitive(), "1.4")
    caps = prim[versioned.DATA_KEY]["capabilities"]
    caps[versioned.VERSION_KEY] = "1.7"
    caps[versioned.DATA_KEY]["teleport"] = True
    assert driver.DriverInfo.from_primitive(over_json(prim)) == INFO
    # and the plain form of a peer that predates versioning
    plain = INFO.to_dict()
    plain["capabilities"]["teleport"] = True
    assert driver.DriverInfo.from_dict(over_json(plain)) == INFO


def test_a_capability_an_older_peer_does_not_send_defaults_to_unsupported():
    prim = over_json(CAPS.to_primitive())
    del prim[versioned.DATA_KEY]["post_copy"]
    assert capabilities.Capabilities.from_primitive(prim).post_copy is False


def test_a_new_uris_field_from_a_newer_peer_is_ignored():
    plain = dict(URIS.to_dict(), multipath_uris=["tcp://198.51.100.13"])
    assert uri.MigrationURIs.from_dict(over_json(plain)) == URIS
    prim = bump(URIS.to_primitive(), "1.3")
    prim[versioned.DATA_KEY]["multipath_uris"] = []
    assert uri.MigrationURIs.from_primitive(over_json(prim)) == URIS


def test_uris_missing_a_required_field_is_a_typed_error():
    prim = over_json(URIS.to_primitive())
    del prim[versioned.DATA_KEY]["control_uri"]
    with pytest.raises(exception.InvalidWireData, match="MigrationURIs.*'control_uri'"):
        uri.MigrationURIs.from_primitive(prim)
    with pytest.raises(exception.InvalidWireData, match="'control_uri'"):
        uri.MigrationURIs.from_dict({"data_uri": None})


@pytest.mark.parametrize("cls, field, value", [
    (uri.MigrationURIs, "plane", "carrier-pigeon"),
    (uri.MigrationURIs, "control_uri", 42),
    (capabilities.Capabilities, "tunnelled", "yes"),
    (capabilities.Capabilities, "schemes", "tcp"),
    (capabilities.Capabilities, "control_uri_format", "qemu+tcp://fixed/system"),
    (settings.MigrationSettings, "bandwidth_mib", "fast"),
    (settings.MigrationSettings, "bandwidth_mib", True),
])
def test_bad_peer_values_are_typed_errors_naming_class_field_and_value(cls, field, value):
    obj = {c.__class__: c for c in OBJECTS}[cls]
    prim = over_json(obj.to_primitive())
    prim[versioned.DATA_KEY][field] = value
    with pytest.raises(exception.InvalidWireData) as info:
        cls.from_primitive(prim)
    assert cls.__name__ in str(info.value) and repr(field) in str(info.value)
    assert repr(value) in str(info.value)


def test_settings_for_an_older_peer_leave_out_the_newer_fields():
    prim = SETTINGS.to_primitive(target_version="1.0")
    assert "control_plane" not in prim[versioned.DATA_KEY]
    older = settings.MigrationSettings.from_primitive(over_json(prim))
    assert older.control_plane == "management" and older.bandwidth_mib == 200


def test_settings_cross_rules_still_apply_to_peer_data():
    prim = over_json(settings.MigrationSettings().to_primitive())
    prim[versioned.DATA_KEY].update(tunnelled=True, native_tls=True)
    with pytest.raises(exception.ConflictingOptions):
        settings.MigrationSettings.from_primitive(prim)


def test_settings_from_an_unversioned_peer():
    plain = dataclasses.asdict(SETTINGS)
    plain["future_knob"] = 3
    assert settings.MigrationSettings.from_dict(plain) == SETTINGS


# -- per-migration overrides ----------------------------------------------------------


def test_overrides_round_trip():
    prim = settings.MigrationSettings.overrides_to_primitive({"bandwidth_mib": 50})
    got = settings.MigrationSettings.overrides_from_primitive(over_json(prim))
    assert got == {"bandwidth_mib": 50}
    assert SETTINGS.replace(**got).bandwidth_mib == 50


def test_an_override_the_peer_does_not_know_is_refused_before_sending():
    with pytest.raises(exception.IncompatibleVersion, match="control_plane"):
        settings.MigrationSettings.overrides_to_primitive({"control_plane": "migration"},
                                                          target_version="1.0")
    prim = settings.MigrationSettings.overrides_to_primitive({"bandwidth_mib": 1},
                                                             target_version="1.0")
    assert prim[versioned.VERSION_KEY] == "1.0"


def test_an_override_of_a_newer_minor_is_ignored_with_a_warning(caplog):
    """As every versioned object's fields; the agent's record says what it applied."""
    prim = {versioned.NAME_KEY: settings.MigrationSettings.OVERRIDES,
            versioned.VERSION_KEY: "1.9", versioned.DATA_KEY: {"warp": 9,
                                                               "bandwidth_mib": 5}}
    with caplog.at_level(logging.WARNING, logger="migplane.core.settings"):
        got = settings.MigrationSettings.overrides_from_primitive(prim)
    assert got == {"bandwidth_mib": 5}
    assert "Ignoring the override 'warp'" in caplog.text


def test_an_unknown_override_of_this_version_is_refused():
    prim = {versioned.NAME_KEY: settings.MigrationSettings.OVERRIDES,
            versioned.VERSION_KEY: settings.MigrationSettings.VERSION,
            versioned.DATA_KEY: {"warp": 9}}
    with pytest.raises(exception.InvalidWireData, match="'warp'.*cannot apply"):
        settings.MigrationSettings.overrides_from_primitive(prim)


@pytest.mark.parametrize("data, match", [
    ({"bandwidth_mib": "lots"}, "expected an integer"),
    ({"tunnelled": 1}, "expected true or false"),
])
def test_bad_overrides_name_the_setting(data, match):
    prim = {versioned.NAME_KEY: settings.MigrationSettings.OVERRIDES,
            versioned.VERSION_KEY: "1.1", versioned.DATA_KEY: data}
    with pytest.raises(exception.InvalidWireData, match=match):
        settings.MigrationSettings.overrides_from_primitive(prim)


def test_replace_refuses_an_unknown_setting():
    with pytest.raises(exception.InvalidWireData, match="'warp'"):
        SETTINGS.replace(warp=9)


def test_the_agents_wire_loaders_take_both_forms():
    from migplane.agent import wire
    assert wire.load_uris(over_json(URIS.to_primitive())) == URIS
    assert wire.load_uris(over_json(dict(URIS.to_dict(), new_field=1))) == URIS
    assert wire.load_settings(over_json(SETTINGS.to_primitive())) == SETTINGS
    assert wire.load_settings(wire.dump_settings(SETTINGS)) == SETTINGS
    assert wire.load_driver_info(over_json(INFO.to_primitive())) == INFO
    assert wire.load_driver_info(over_json(INFO.to_dict())) == INFO


def test_wire_pins_emulate_an_older_peer(monkeypatch):
    from migplane.agent import wire
    from migplane.core import migrate_data as md

    data = md.MigrateData(dest_hostname="host-b", target_connect_addr="198.51.100.12",
                          inbound_addr_source="option")
    assert wire.dump_data(data)[versioned.VERSION_KEY] == md.MigrateData.VERSION
    monkeypatch.setenv(wire.PINS_ENV, "MigrationSettings=1.0, MigrateData=1.0")
    assert wire.pinned("MigrateData") == "1.0" and wire.pinned("Nope") is None
    old = wire.dump_data(data)
    assert old[versioned.VERSION_KEY] == "1.0"
    assert "target_connect_addr" not in old[versioned.DATA_KEY]
    assert wire.load_data(old).target_connect_addr is None  # legacy: as before


@pytest.mark.parametrize("obj", [PROGRESS, MEASUREMENT, LINK, PLAN], ids=ids)
def test_the_plain_form_of_records_reads_back_and_so_does_the_envelope(obj):
    cls = type(obj)
    assert cls.from_dict(over_json(obj.to_dict())) == obj
    assert cls.from_dict(over_json(obj.to_primitive())) == obj
    plain = dict(over_json(obj.to_dict()), from_a_newer_peer=1)
    assert cls.from_dict(plain) == obj


def test_a_bad_progress_field_from_a_peer_is_named():
    prim = over_json(PROGRESS.to_primitive())
    prim[versioned.DATA_KEY]["data_remaining"] = "lots"
    with pytest.raises(exception.InvalidWireData, match="data_remaining"):
        driver.JobProgress.from_primitive(prim)
