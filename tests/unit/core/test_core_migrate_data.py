"""The pre-migration data contract (migplane.core.migrate_data, migplane.core.versioned)."""

import dataclasses
import json
import logging

import pytest

from migplane.core import capabilities
from migplane.core import convergence
from migplane.core import driver
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import settings
from migplane.core import strategy
from migplane.core import uri
from migplane.core import versioned

# When a test below fails, read its message: the contract between hosts changed.
EXPECTED_FINGERPRINTS = {
    md.MigrateData: "1.1-73934e8be39d25d1",
    capabilities.Capabilities: "1.3-662893487dbb92a7",
    driver.DriverInfo: "1.0-b3912756f7b80282",
    uri.MigrationURIs: "1.0-f5489f6d8c716569",
    settings.MigrationSettings: "1.7-f8baad30559f22ef",
    driver.JobProgress: "1.1-c2892cf185c652fd",
    convergence.DirtyRateMeasurement: "1.0-3eb46435f7424d87",
    convergence.LinkRate: "1.0-203ed1e1f8397b08",
    strategy.MigrationPlan: "1.1-91cb758ef013ed82",
}


def split_plane(**kwargs):
    values = dict(dest_hostname="host-b", block_migration=True,
                  driver_data={"memory_bytes": 1024, "nested": {"list": [1, "two", None]}},
                  target_connect_addr="198.51.100.12", inbound_addr_source="option",
                  listen_addrs={"migration": "198.51.100.12"})
    values.update(kwargs)
    return md.MigrateData(**values)


def primitive(version="1.1", **data):
    return {versioned.NAME_KEY: "MigrateData", versioned.VERSION_KEY: version,
            versioned.DATA_KEY: data}


@pytest.mark.parametrize("cls", sorted(EXPECTED_FINGERPRINTS, key=lambda c: c.__name__))
def test_fingerprint(cls):
    expected = EXPECTED_FINGERPRINTS[cls]
    undeclared = [f.name for f in dataclasses.fields(cls) if "since" not in f.metadata]
    assert not undeclared, (
        f"{cls.__name__} fields {undeclared} are not declared with "
        "versioned.field(since, check, default): they cross between hosts.")
    actual = cls.fingerprint()
    name = cls.__name__
    assert actual == expected, (
        f"The fields of {name} changed (fingerprint {actual}, expected {expected}). It "
        f"crosses between hosts, possibly of different releases: bump {name}.VERSION "
        "(minor for an added field with a legacy default, major otherwise), add a "
        "'Version X.Y: ...' history comment next to VERSION, give new fields "
        "since='X.Y', then update EXPECTED_FINGERPRINTS in this file.")


def test_fingerprint_changes_with_the_fields():
    @dataclasses.dataclass(frozen=True)
    class Changed(md.MigrateData):
        extra: int = versioned.field("1.1", int, default=0)

    Changed._name = classmethod(lambda cls: "MigrateData")
    assert Changed.fingerprint() != md.MigrateData.fingerprint()
    assert Changed.fingerprint().startswith("1.1-")


def test_round_trip_through_json():
    data = split_plane()
    prim = data.to_primitive()
    text = json.dumps(prim, allow_nan=False)
    again = md.MigrateData.from_primitive(json.loads(text))
    assert again == data
    assert again.to_primitive() == prim
    assert prim[versioned.NAME_KEY] == "MigrateData"
    assert prim[versioned.VERSION_KEY] == md.MigrateData.VERSION == "1.1"
    assert prim[versioned.DATA_KEY]["driver_data"] == {
        "memory_bytes": 1024, "nested": {"list": [1, "two", None]}}
    assert prim[versioned.DATA_KEY]["listen_addrs"] == {"migration": "198.51.100.12"}


def test_primitive_holds_only_plain_json_types():
    def walk(value):
        if isinstance(value, dict):
            assert type(value) is dict
            for k, v in value.items():
                assert type(k) is str
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or type(value) in (str, int, float, bool)

    walk(split_plane().to_primitive())


def test_defaults_mean_legacy():
    data = md.MigrateData(dest_hostname="host-b")
    assert data.target_connect_addr is None
    assert data.inbound_addr_source == md.INBOUND_NONE
    assert dict(data.listen_addrs) == {} and dict(data.driver_data) == {}
    assert data.block_migration is False
    assert not data.uses_split_plane
    assert split_plane().uses_split_plane


def test_is_immutable():
    data = split_plane()
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.target_connect_addr = "198.51.100.13"
    with pytest.raises(TypeError):
        data.driver_data["memory_bytes"] = 1
    with pytest.raises(TypeError):
        data.driver_data["nested"]["list"] = []
    with pytest.raises(AttributeError):
        data.driver_data["nested"]["list"].append(2)
    with pytest.raises(TypeError):
        data.listen_addrs["migration"] = "198.51.100.13"


def test_caller_mutation_does_not_leak_in():
    driver_data = {"a": [1]}
    data = md.MigrateData(dest_hostname="host-b", driver_data=driver_data)
    driver_data["a"].append(2)
    driver_data["b"] = 1
    assert versioned.thaw(data.driver_data) == {"a": [1]}


def test_replace_validates_again():
    data = split_plane()
    assert data.replace(block_migration=False).block_migration is False
    assert data.replace(driver_data={"x": 1}).driver_data == {"x": 1}
    with pytest.raises(exception.InvalidMigrateData, match="target_connect_addr"):
        data.replace(target_connect_addr="host/evil")


def test_newer_minor_version_unknown_fields_are_tolerated(caplog):
    prim = split_plane().to_primitive()
    prim[versioned.VERSION_KEY] = "1.7"
    prim[versioned.DATA_KEY]["future_field"] = {"anything": True}
    with caplog.at_level(logging.DEBUG, logger="migplane.core.versioned"):
        data = md.MigrateData.from_primitive(prim)
    assert data == split_plane()
    assert "future_field" in caplog.text


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_unknown_field_at_our_version_or_older_is_refused(version):
    prim = primitive(version, dest_hostname="host-b", bogus_field=1)
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(prim)
    assert info.value.kwargs["field"] == "bogus_field"
    assert "'bogus_field'" in str(info.value)


def test_version_1_0_primitive_means_legacy():
    prim = primitive("1.0", dest_hostname="host-b", block_migration=True,
                     driver_data={"k": "v"})
    data = md.MigrateData.from_primitive(prim)
    assert data.dest_hostname == "host-b" and data.block_migration
    assert data.target_connect_addr is None
    assert data.inbound_addr_source == md.INBOUND_NONE
    assert not data.uses_split_plane


def test_to_primitive_1_0_drops_1_1_fields():
    prim = split_plane().to_primitive("1.0")
    assert prim[versioned.VERSION_KEY] == "1.0"
    assert set(prim[versioned.DATA_KEY]) == {"dest_hostname", "block_migration",
                                              "driver_data"}
    # an older peer reads it as a legacy migration
    old = md.MigrateData.from_primitive(prim)
    assert old.target_connect_addr is None and old.block_migration


@pytest.mark.parametrize("version", ["2.0", "0.9", "3.1"])
def test_other_major_version_is_incompatible(version):
    with pytest.raises(exception.IncompatibleVersion) as info:
        md.MigrateData.from_primitive(primitive(version, dest_hostname="host-b"))
    assert version in str(info.value)
    assert "major version 1" in str(info.value)
    with pytest.raises(exception.IncompatibleVersion):
        split_plane().to_primitive(version)


@pytest.mark.parametrize("version", [None, "1", "one.two", "1.1.1", 1.1, ""])
def test_malformed_version_is_refused(version):
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(primitive(version, dest_hostname="host-b"))
    assert info.value.kwargs["field"] == versioned.VERSION_KEY


@pytest.mark.parametrize("prim, field", [
    ([], "<primitive>"),
    ("MigrateData", "<primitive>"),
    ({versioned.NAME_KEY: "Other", versioned.VERSION_KEY: "1.1", versioned.DATA_KEY: {}},
     versioned.NAME_KEY),
    ({versioned.VERSION_KEY: "1.1", versioned.DATA_KEY: {}}, versioned.NAME_KEY),
    ({versioned.NAME_KEY: "MigrateData", versioned.VERSION_KEY: "1.1",
      versioned.DATA_KEY: ["x"]}, versioned.DATA_KEY),
    ({versioned.NAME_KEY: "MigrateData", versioned.VERSION_KEY: "1.1"},
     versioned.DATA_KEY),
])
def test_malformed_envelope_is_refused(prim, field):
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(prim)
    assert info.value.kwargs["field"] == field


@pytest.mark.parametrize("field, value, reason", [
    ("target_connect_addr", "300.1.2.3", "not a valid IPv4 address"),
    ("target_connect_addr", "198.51.100.12/evil", "not allowed in a host"),
    ("target_connect_addr", "198.51.100.12?x=1", "not allowed in a host"),
    ("target_connect_addr", "a@198.51.100.12", "not allowed in a host"),
    ("target_connect_addr", "198.51.100.12 --x", "not allowed in a host"),
    ("target_connect_addr", "198.51.100.12\r\n", "not allowed in a host"),
    ("target_connect_addr", 3325256716, "expected a string"),
    ("dest_hostname", "host-b:22", "a port is not allowed here"),
    ("dest_hostname", "host-b/system", "not allowed in a host"),
    ("block_migration", "true", "expected true or false"),
    ("block_migration", 1, "expected true or false"),
    ("block_migration", None, "expected true or false"),
    ("inbound_addr_source", "guess", "expected one of option, cidr, none"),
    ("listen_addrs", ["198.51.100.12"], "expected an object"),
    ("listen_addrs", {"migration": "198.51.100.12#x"}, "not allowed in a host"),
    ("listen_addrs", {"migration": "198.51.100.12:49152"}, "a port is not allowed"),
    ("listen_addrs", {"": "198.51.100.12"}, "is not a non-empty string"),
    ("driver_data", ["x"], "expected a JSON object"),
    ("driver_data", {"x": float("nan")}, "not JSON-serialisable"),
    ("driver_data", {"x": {1, 2}}, "not JSON-serialisable"),
    ("driver_data", {"x": object()}, "not JSON-serialisable"),
    ("driver_data", {1: "int key"}, "does not survive a JSON round trip"),
])
def test_bad_peer_value_names_field_and_value(field, value, reason):
    prim = split_plane().to_primitive()
    prim[versioned.DATA_KEY][field] = value
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(prim)
    err = info.value
    assert err.kwargs["field"] == field
    assert reason in str(err)
    assert repr(field) in str(err)
    if isinstance(value, str):
        assert repr(value) in str(err)


@pytest.mark.parametrize("addr, source", [
    ("198.51.100.12", "none"),
    (None, "option"),
    (None, "cidr"),
])
def test_inbound_addr_source_must_match_the_address(addr, source):
    with pytest.raises(exception.InvalidMigrateData) as info:
        split_plane(target_connect_addr=addr, inbound_addr_source=source)
    assert info.value.kwargs["field"] == "inbound_addr_source"
    assert info.value.kwargs["value"] == source


@pytest.mark.parametrize("addr", ["198.51.100.12:49152", "[2001:db8:2::11]:49152",
                                  "fe80::12%mig0", "mig.host-b.example"])
def test_target_connect_addr_forms(addr):
    data = split_plane(target_connect_addr=addr)
    assert md.MigrateData.from_primitive(data.to_primitive()).target_connect_addr == addr


def test_ipv6_dest_hostname_is_kept_as_written_without_brackets():
    """The legacy control URI must read as configured, as Nova's does."""
    assert md.MigrateData(dest_hostname="[2001:DB8::1]").dest_hostname == "2001:DB8::1"
    assert md.MigrateData(dest_hostname="0:0:0:0:0:0:0:1").dest_hostname == "0:0:0:0:0:0:0:1"
    assert md.MigrateData(dest_hostname="192.0.2.12").dest_hostname == "192.0.2.12"


# -- versioned helpers ------------------------------------------------------------------


def test_freeze_and_thaw_are_inverse():
    plain = {"a": [1, {"b": (2, 3)}], "c": None}
    frozen = versioned.freeze(plain)
    assert isinstance(frozen["a"], tuple)
    assert versioned.thaw(frozen) == {"a": [1, {"b": [2, 3]}], "c": None}
    assert versioned.freeze(frozen) == frozen


@pytest.mark.parametrize("text, expected", [("1.0", (1, 0)), ("12.34", (12, 34))])
def test_parse_version(text, expected):
    assert versioned.parse_version(text) == expected


@pytest.mark.parametrize("text", ["1", "a.b", None, "1.2.3"])
def test_parse_version_refuses(text):
    with pytest.raises(ValueError, match="is not a 'major.minor' version"):
        versioned.parse_version(text)


def test_to_primitive_refuses_a_version_newer_than_ours():
    data = md.MigrateData(dest_hostname="host-b")
    with pytest.raises(exception.IncompatibleVersion, match="1.5"):
        data.to_primitive(target_version="1.5")


# -- bounds: what a hostile peer can make from_primitive spend ---------------------


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return value


def test_deeply_nested_driver_data_is_a_typed_error_not_recursion_error():
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(primitive(driver_data=_nested(500)))
    assert "nested more than %d levels deep" % versioned.MAX_DEPTH in str(info.value)
    assert len(str(info.value)) < 2000


def test_nesting_within_the_limit_is_accepted():
    data = md.MigrateData.from_primitive(primitive(driver_data=_nested(versioned.MAX_DEPTH - 3)))
    assert data.driver_data["d"]["d"]["d"]


def test_locally_built_deep_driver_data_is_refused_too():
    with pytest.raises(exception.InvalidMigrateData, match="nested more than"):
        md.MigrateData(driver_data=_nested(5000))


def test_too_many_values_are_refused():
    with pytest.raises(exception.InvalidMigrateData, match="more than %d values"
                       % versioned.MAX_NODES):
        md.MigrateData.from_primitive(primitive(driver_data={"l": list(range(20000))}))


def test_too_many_characters_are_refused():
    big = ["x" * 100000] * 11
    with pytest.raises(exception.InvalidMigrateData, match="more than %d characters"
                       % versioned.MAX_CHARS):
        md.MigrateData.from_primitive(primitive(driver_data={"l": big}))


@pytest.mark.parametrize("field", ["target_connect_addr", "dest_hostname"])
def test_a_huge_bad_value_is_quoted_as_a_short_prefix(field):
    value = "a/" * 400000  # 800 kB, below the size bound, invalid as an address
    data = {field: value, "inbound_addr_source": "option"}
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(primitive(**data))
    message = str(info.value)
    assert len(message) < 2 * exception.QUOTE_LIMIT + 500
    assert "a/a/a/" in message and "(800000 characters)" in message
    assert info.value.kwargs["value"] == value  # the whole value stays for callers


def test_a_huge_unknown_field_name_is_quoted_short():
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(primitive(**{"k" * 500000: 1}))
    assert len(str(info.value)) < 1500


def test_excerpt_bounds_containers_and_strings():
    assert exception.excerpt("short") == "'short'"
    long = exception.excerpt("x" * 10 ** 6)
    assert long.endswith("... (1000000 characters)") and len(long) < 300
    assert len(exception.excerpt({"a": [list(range(10 ** 5))] * 10})) <= 2 * 256 + 3


def test_a_newer_minor_may_not_send_an_enum_value_an_older_peer_does_not_know():
    """The rule for new enum values: the receiver refuses a value it does not
    know, naming it, instead of guessing what a newer peer meant."""
    with pytest.raises(exception.InvalidMigrateData) as info:
        md.MigrateData.from_primitive(primitive(
            "1.9", target_connect_addr="198.51.100.12", inbound_addr_source="dhcp"))
    assert "'dhcp'" in str(info.value) and "inbound_addr_source" in str(info.value)
