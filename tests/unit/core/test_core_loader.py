"""Loading drivers by entry point (migplane.core.loader)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from migplane.core import exception
from migplane.core import loader
from migplane.drivers.fake import driver as fake_driver
from migplane.drivers.fake import world as world_mod

THIRD_PARTY_MODULE = '''
from migplane.core import capabilities, driver


class ThirdPartyDriver(driver.MigrationDriver):
    """A driver shipped by another distribution."""

    def describe(self):
        return driver.DriverInfo("thirdparty", "0.1", capabilities.Capabilities())

    def local_addresses(self):
        return ["203.0.113.1"]

    def _unused(self, *args, **kwargs):
        raise NotImplementedError

    get_instance_info = check_can_live_migrate_destination = _unused
    pre_live_migration = post_live_migration_at_destination = _unused
    rollback_live_migration_at_destination = check_can_live_migrate_source = _unused
    live_migration = get_job_progress = abort_job = force_complete = _unused
    set_max_downtime = post_live_migration_at_source = _unused
'''

PROBE = '''
import json
from oslo_config import cfg
from migplane.core import exception, loader
from migplane.core import migrate_data as md

conf = cfg.ConfigOpts()
conf(args=[], project="migplane", default_config_files=[])
out = {"installed": loader.installed_drivers()}
drv = loader.load_driver(conf, "thirdparty")
out["class"] = "%s.%s" % (type(drv).__module__, type(drv).__name__)
out["describe"] = drv.describe().to_dict()
out["inbound"] = drv.inbound_migrate_data(md.MigrateData()).to_primitive()
try:
    loader.load_driver(conf, "broken")
except exception.DriverLoadError as err:
    out["broken"] = [str(err), type(err.__cause__).__name__]
try:
    loader.load_driver(conf, "nope")
except exception.DriverNotFound as err:
    out["missing"] = str(err)
print(json.dumps(out))
'''


def _dist(site, name, entry_points):
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """Run PROBE in a process that has a second distribution on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("thirdparty")
    site = tmp / "site"
    site.mkdir()
    (site / "thirdparty_migplane_driver.py").write_text(THIRD_PARTY_MODULE)
    (site / "thirdparty_broken_driver.py").write_text(
        "import migplane_no_such_dependency  # noqa: F401\n")
    _dist(site, "thirdparty_migplane", """
        [migplane.drivers]
        thirdparty = thirdparty_migplane_driver:ThirdPartyDriver
        broken = thirdparty_broken_driver:BrokenDriver
    """)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"),
               PYTHONPATH=os.pathsep.join(
                   filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env=env, cwd=str(tmp), timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_a_driver_from_another_distribution_plugs_in_by_entry_point(third_party):
    assert third_party["class"] == "thirdparty_migplane_driver.ThirdPartyDriver"
    assert third_party["describe"]["name"] == "thirdparty"
    assert third_party["inbound"]["migplane.data"]["target_connect_addr"] is None


def test_installed_drivers_lists_third_party_drivers(third_party):
    assert {"fake", "libvirt", "thirdparty", "broken"} <= set(third_party["installed"])
    assert third_party["installed"] == sorted(third_party["installed"])


def test_a_driver_whose_import_fails_raises_that_failure(third_party):
    message, cause = third_party["broken"]
    assert cause == "ModuleNotFoundError"
    assert "'broken'" in message
    assert "migplane_no_such_dependency" in message
    assert "not installed" not in message


def test_not_found_lists_installed_drivers_including_third_party(third_party):
    assert "'nope'" in third_party["missing"]
    assert "thirdparty" in third_party["missing"]


# -- in this process ---------------------------------------------------------------


def test_installed_drivers():
    installed = loader.installed_drivers()
    assert "fake" in installed and "libvirt" in installed
    assert installed == sorted(set(installed))


def test_unknown_driver_lists_the_installed_ones(make_conf):
    with pytest.raises(exception.DriverNotFound) as info:
        loader.load_driver(make_conf(), "no-such-driver")
    message = str(info.value)
    assert "'no-such-driver'" in message
    assert loader.NAMESPACE in message
    assert ", ".join(loader.installed_drivers()) in message


def test_unknown_driver_when_none_is_installed(make_conf, monkeypatch):
    monkeypatch.setattr(loader, "installed_drivers", lambda: [])
    with pytest.raises(exception.DriverNotFound, match="installed drivers: none"):
        loader.load_driver(make_conf(), "no-such-driver")


def test_load_by_name(make_driver):
    drv = make_driver("host-a")
    assert isinstance(drv, fake_driver.FakeDriver)
    assert drv.hostname == "host-a"
    assert drv.describe().name == "fake"


def test_load_the_configured_driver(host_conf):
    conf = host_conf("host-b", driver="fake")
    drv = loader.load_driver(conf)
    assert isinstance(drv, fake_driver.FakeDriver) and drv.host.name == "host-b"


def test_the_configured_unknown_driver(host_conf):
    with pytest.raises(exception.DriverNotFound, match="'vmware'"):
        loader.load_driver(host_conf("host-b", driver="vmware"))


def test_a_migplane_error_of_the_driver_is_raised_as_is(host_conf):
    with pytest.raises(exception.ConfigError) as info:
        loader.load_driver(host_conf("host-z"), "fake")
    assert info.value.kwargs["value"] == "host-z"
    assert "host-a, host-b, host-c" in str(info.value)


def test_a_bad_configuration_is_raised_as_is(host_conf, write_config):
    conf = host_conf("host-a", config="[live_migration]\nbandwidth = -3\n")
    with pytest.raises(exception.ConfigError) as info:
        loader.load_driver(conf, "fake")
    assert info.value.kwargs["option"] == "bandwidth"


def test_other_errors_of_the_driver_become_driver_load_error(host_conf, monkeypatch):
    def explode(name):
        raise OSError("disk on fire")

    monkeypatch.setattr(world_mod, "get_world", explode)
    with pytest.raises(exception.DriverLoadError) as info:
        loader.load_driver(host_conf("host-a"), "fake")
    assert isinstance(info.value.__cause__, OSError)
    assert "'fake'" in str(info.value) and "OSError: disk on fire" in str(info.value)


# -- what load_driver checks before anyone uses the driver -------------------------


@pytest.fixture
def entry_point(monkeypatch):
    """Make ``load_driver`` find ``plugin`` under the name 'acme' (no install needed)."""
    from stevedore import driver as stevedore_driver
    from stevedore import extension

    real = stevedore_driver.DriverManager

    def install(plugin):
        def manager(namespace, name, **kwargs):
            if name != "acme":
                raise AssertionError(name)
            ext = extension.Extension("acme", None, plugin, None)
            return real.make_test_instance(ext, namespace)
        monkeypatch.setattr(loader.stevedore_driver, "DriverManager", manager)

    return install


class NotADriver:
    def __init__(self, conf):
        self.conf = conf


def _fake_with(describe):
    return type("AcmeDriver", (fake_driver.FakeDriver,), {"describe": describe})


def test_an_entry_point_that_is_not_a_migration_driver_is_refused(host_conf, entry_point):
    entry_point(NotADriver)
    with pytest.raises(exception.DriverLoadError) as info:
        loader.load_driver(host_conf("host-a"), "acme")
    message = str(info.value)
    assert "'acme'" in message and "NotADriver" in message
    assert "not a subclass of migplane.core.driver.MigrationDriver" in message


def test_an_entry_point_that_is_a_function_is_refused(host_conf, entry_point):
    entry_point(lambda conf: fake_driver.FakeDriver(conf))
    with pytest.raises(exception.DriverLoadError, match="'acme'.*not a subclass"):
        loader.load_driver(host_conf("host-a"), "acme")


@pytest.mark.parametrize("answer", [None, {"name": "acme"}, "acme 1.0"])
def test_describe_must_return_a_driver_info(host_conf, entry_point, answer):
    entry_point(_fake_with(lambda self: answer))
    with pytest.raises(exception.DriverLoadError) as info:
        loader.load_driver(host_conf("host-a"), "acme")
    assert "'acme'" in str(info.value)
    assert "describe() returned %r, not a DriverInfo" % (answer,) in str(info.value)


def test_describe_failing_is_a_load_error_naming_the_driver(host_conf, entry_point):
    def describe(self):
        raise KeyError("capabilities")

    entry_point(_fake_with(describe))
    with pytest.raises(exception.DriverLoadError) as info:
        loader.load_driver(host_conf("host-a"), "acme")
    assert "'acme'" in str(info.value) and "describe() raised KeyError" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_a_good_third_party_class_loads(host_conf, entry_point):
    entry_point(_fake_with(fake_driver.FakeDriver.describe))
    drv = loader.load_driver(host_conf("host-a"), "acme")
    assert type(drv).__name__ == "AcmeDriver" and drv.describe().name == "fake"
