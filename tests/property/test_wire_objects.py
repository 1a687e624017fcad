"""Property tests: any peer data into any wire object gives the object or a typed error.

A hostile or broken peer may send anything JSON can carry (deeply nested,
wrong types, other versions, huge strings); ``from_primitive`` answers with
the object or a ``MigplaneError`` whose message stays short, never a
``TypeError``, ``KeyError`` or ``RecursionError``.
"""

import json

from hypothesis import given
from hypothesis import strategies as st

from migplane.core import capabilities
from migplane.core import driver
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings
from migplane.core import uri
from migplane.core import versioned

CLASSES = [md.MigrateData, capabilities.Capabilities, driver.DriverInfo,
           uri.MigrationURIs, settings.MigrationSettings]
SAMPLES = {
    md.MigrateData: md.MigrateData(dest_hostname="host-b",
                                   target_connect_addr="198.51.100.12",
                                   inbound_addr_source="option"),
    capabilities.Capabilities: capabilities.Capabilities(data_uri=True),
    driver.DriverInfo: driver.DriverInfo("acme", "1", capabilities.Capabilities()),
    uri.MigrationURIs: uri.MigrationURIs(
        control_uri="qemu+tcp://host-b/system", data_uri=None, listen_address=None,
        disks_uri=None, tls_destination=None, bulk_host="host-b", plane="management"),
    settings.MigrationSettings: settings.MigrationSettings(),
}

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


def deep(depth):
    value = "x"
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


versions = st.sampled_from(["1.0", "1.1", "1.9", "2.0", "0.1", "x", "", None, 1])


def check(cls, primitive):
    try:
        obj = cls.from_primitive(primitive)
    except exception.MigplaneError as err:
        assert len(str(err)) < 4000, len(str(err))
        return
    assert isinstance(obj, cls)
    assert cls.from_primitive(json.loads(json.dumps(obj.to_primitive()))) == obj


@given(st.sampled_from(CLASSES), json_values)
def test_any_json_at_all(cls, value):
    check(cls, value)


@given(st.sampled_from(CLASSES), versions, st.dictionaries(
    st.text(max_size=20), json_values, max_size=8))
def test_any_fields_in_a_well_formed_envelope(cls, version, data):
    check(cls, {versioned.NAME_KEY: cls.__name__, versioned.VERSION_KEY: version,
                versioned.DATA_KEY: data})


@given(st.sampled_from(CLASSES), st.data())
def test_one_field_replaced_by_anything(cls, data):
    primitive = json.loads(json.dumps(SAMPLES[cls].to_primitive()))
    fields = sorted(primitive[versioned.DATA_KEY])
    name = data.draw(st.sampled_from(fields))
    value = data.draw(json_values | st.integers(1, 600).map(deep)
                      | st.sampled_from([300, 70000, 1_100_000]).map(lambda n: "a" * n))
    primitive[versioned.DATA_KEY][name] = value
    check(cls, primitive)
