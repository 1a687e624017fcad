"""The driver API (migplane.core.driver) and the small value types around it."""

import json

import pytest

from migplane.core import capabilities
from migplane.core import driver
from migplane.core import events
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.core import versioned

ABSTRACT = {
    "describe", "local_addresses", "get_instance_info",
    "check_can_live_migrate_destination", "pre_live_migration",
    "post_live_migration_at_destination", "rollback_live_migration_at_destination",
    "check_can_live_migrate_source", "live_migration", "get_job_progress", "abort_job",
    "force_complete", "set_max_downtime", "post_live_migration_at_source",
}


def _complete_driver_class(addresses, without=()):
    def method(self, *args, **kwargs):
        raise NotImplementedError

    body = {name: method for name in ABSTRACT if name not in without}
    if "local_addresses" not in without:
        body["local_addresses"] = lambda self: addresses
    return type("Complete", (driver.MigrationDriver,), body)


def test_abstract_methods_are_the_documented_steps():
    assert driver.MigrationDriver.__abstractmethods__ == ABSTRACT


@pytest.mark.parametrize("missing", sorted(ABSTRACT))
def test_a_driver_missing_a_step_cannot_be_instantiated(make_conf, missing):
    cls = _complete_driver_class([], without={missing})
    assert cls.__abstractmethods__ == {missing}
    with pytest.raises(TypeError, match=missing):
        cls(make_conf())


def test_a_subclass_missing_a_step_is_abstract_by_abcmeta():
    class Partial(driver.MigrationDriver):
        def describe(self):
            return None

    assert "local_addresses" in Partial.__abstractmethods__
    assert "describe" not in Partial.__abstractmethods__
    with pytest.raises(TypeError, match="abstract"):
        Partial(None)


def test_base_registers_and_validates_the_core_options(make_conf):
    conf = make_conf("[live_migration]\nhostname = host-b\nbandwidth = 9\n")
    drv = _complete_driver_class([])(conf)
    assert drv.conf is conf
    assert drv.hostname == "host-b"
    assert drv.settings.migration.bandwidth_mib == 9
    with pytest.raises(exception.ConfigError):
        _complete_driver_class([])(make_conf("[live_migration]\nbandwidth = -9\n"))


def test_rollback_at_source_is_optional(make_conf):
    drv = _complete_driver_class([])(make_conf())
    assert drv.rollback_live_migration_at_source("vm1", md.MigrateData()) is None


def test_inbound_migrate_data_applies_my_live_migration_ip(make_conf):
    conf = make_conf("[DEFAULT]\nmy_live_migration_ip = 198.51.100.12\n"
                     "[live_migration]\nhostname = host-b\n")
    drv = _complete_driver_class(["192.0.2.12", "198.51.100.12"])(conf)
    first = md.MigrateData(dest_hostname="host-b", block_migration=True,
                           driver_data={"from_source": 1, "shared": "source"})
    data = drv.inbound_migrate_data(first, driver_data={"shared": "dest", "dest": 2},
                                    listen_addrs={"nbd": "198.51.100.12"})
    assert data.target_connect_addr == "198.51.100.12"
    assert data.inbound_addr_source == md.INBOUND_FROM_OPTION
    assert data.block_migration is True
    assert data.dest_hostname == "host-b"
    assert dict(data.driver_data) == {"from_source": 1, "shared": "dest", "dest": 2}
    assert dict(data.listen_addrs) == {"nbd": "198.51.100.12",
                                       "migration": "198.51.100.12"}
    assert dict(first.driver_data) == {"from_source": 1, "shared": "source"}


def test_inbound_migrate_data_checks_the_address_is_local(make_conf):
    conf = make_conf("[DEFAULT]\nmy_live_migration_ip = 198.51.100.99\n"
                     "[live_migration]\nhostname = host-b\n")
    drv = _complete_driver_class(["198.51.100.12"])(conf)
    with pytest.raises(exception.InboundAddressError, match="198.51.100.99"):
        drv.inbound_migrate_data(md.MigrateData(dest_hostname="host-b"))


def test_inbound_migrate_data_with_cidr(make_conf):
    conf = make_conf("[live_migration]\nhostname = host-b\n"
                     "inbound_cidr = 2001:db8:2::/64\n")
    drv = _complete_driver_class(["192.0.2.12", "2001:db8:2::11"])(conf)
    data = drv.inbound_migrate_data(md.MigrateData(dest_hostname="host-b"))
    assert (data.target_connect_addr, data.inbound_addr_source) == ("2001:db8:2::11",
                                                                    md.INBOUND_FROM_CIDR)


def test_inbound_migrate_data_unset_is_legacy(make_conf):
    drv = _complete_driver_class(["192.0.2.12"])(make_conf("[live_migration]\n"
                                                          "hostname = host-b\n"))
    data = drv.inbound_migrate_data(md.MigrateData(dest_hostname="host-b"))
    assert data == md.MigrateData(dest_hostname="host-b")


# -- value types --------------------------------------------------------------------


def test_driver_info_round_trip():
    info = driver.DriverInfo("fake", "1.0", capabilities.Capabilities(
        schemes=("tcp", "tls"), data_uri=True, post_copy=True))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["capabilities"]["schemes"] == ["tcp", "tls"]
    assert driver.DriverInfo.from_dict(data) == info


def test_driver_info_from_dict_missing_fields_take_the_defaults():
    data = {"name": "x", "version": "1", "capabilities": {"data_uri": True}}
    info = driver.DriverInfo.from_dict(data)
    assert info.capabilities.schemes == ("tcp",) and info.capabilities.data_uri
    assert not info.capabilities.tunnelled


def test_capabilities_defaults_are_the_legacy_minimum():
    caps = capabilities.Capabilities()
    assert caps.schemes == ("tcp",) and caps.default_scheme == "tcp"
    assert not any(v for k, v in caps.to_dict().items()
                   if isinstance(v, bool))


def test_instance_info_to_dict():
    info = driver.InstanceInfo("vm1", "running", 1024, 2048)
    assert info.to_dict() == {"name": "vm1", "state": "running", "memory_bytes": 1024,
                              "disk_bytes": 2048, "reason": None}


@pytest.mark.parametrize("progress, percent", [
    (driver.JobProgress(), 0.0),
    (driver.JobProgress(state=driver.JOB_RUNNING, data_total=200, data_remaining=50),
     75.0),
    (driver.JobProgress(state=driver.JOB_RUNNING, data_total=100, data_remaining=150),
     0.0),
    (driver.JobProgress(state=driver.JOB_RUNNING, data_total=100, data_remaining=-5),
     100.0),
    (driver.JobProgress(state=driver.JOB_COMPLETED, data_total=100, data_remaining=9),
     100.0),
])
def test_job_progress_percent(progress, percent):
    assert progress.percent == percent


@pytest.mark.parametrize("state, finished", [
    (driver.JOB_NONE, False), (driver.JOB_RUNNING, False), (driver.JOB_COMPLETED, True),
    (driver.JOB_FAILED, True), (driver.JOB_CANCELLED, True),
])
def test_job_progress_finished(state, finished):
    assert driver.JobProgress(state=state).finished is finished


def test_job_progress_from_dict_ignores_unknown_keys():
    progress = driver.JobProgress(state=driver.JOB_RUNNING, data_total=5, postcopy=True,
                                  error="x")
    data = dict(progress.to_dict(), from_the_future=1)
    assert driver.JobProgress.from_dict(data) == progress


def test_event_to_dict():
    progress = driver.JobProgress(state=driver.JOB_RUNNING, data_total=5)
    event = events.MigrationEvent(kind=events.PROGRESS, migration_id="m", instance="vm1",
                                  elapsed=1.5, step="live_migration", progress=progress)
    data = json.loads(json.dumps(event.to_dict()))
    assert data["progress"]["data_total"] == 5 and data["kind"] == "progress"
    bare = events.MigrationEvent(kind=events.QUEUED, migration_id="m", instance="vm1",
                                 elapsed=0.0)
    assert bare.to_dict()["progress"] is None


# -- errors ---------------------------------------------------------------------------


def test_errors_format_their_arguments():
    err = exception.TooManyMigrations(host="host-b", running=2, limit=2)
    assert str(err) == ("Host host-b already runs 2 live migration(s), the limit set by "
                        "max_concurrent_live_migrations=2")
    assert err.kwargs == {"host": "host-b", "running": 2, "limit": 2}
    assert err.message == str(err)


def test_error_with_an_explicit_message():
    err = exception.MigrationError("plain words")
    assert str(err) == "plain words" and err.kwargs == {}
    assert str(exception.MigplaneError()) == exception.MigplaneError.msg_fmt


def test_error_hierarchy():
    for cls in (exception.DestinationCheckFailed, exception.SourceCheckFailed,
                exception.InboundAddressError, exception.MigrationAborted,
                exception.MigrationTimeout):
        assert issubclass(cls, exception.MigrationError)
    assert issubclass(exception.MigrationError, exception.MigplaneError)


def test_inbound_migrate_data_keeps_nested_driver_data(make_driver):
    dest = make_driver("host-b", my_live_migration_ip="198.51.100.12")
    data = md.MigrateData(dest_hostname="host-b",
                          driver_data={"disks": [{"path": "/d.qcow2", "size": 1}]})
    out = dest.inbound_migrate_data(data, driver_data={"extra": {"k": [1, 2]}})
    assert versioned.thaw(out.driver_data) == {
        "disks": [{"path": "/d.qcow2", "size": 1}], "extra": {"k": [1, 2]}}
    assert out.target_connect_addr == "198.51.100.12"


# -- the two roles ---------------------------------------------------------------------

DESTINATION_STEPS = {"hostname", "describe", "get_instance_info",
                     "check_can_live_migrate_destination", "pre_live_migration",
                     "post_live_migration_at_destination",
                     "rollback_live_migration_at_destination"}


def test_a_driver_is_both_roles_and_each_role_is_its_steps():
    assert issubclass(driver.MigrationDriver, driver.SourceDriver)
    assert issubclass(driver.MigrationDriver, driver.DestinationDriver)
    assert driver.DestinationDriver.__abstractmethods__ == DESTINATION_STEPS
    assert driver.SourceDriver.__abstractmethods__ & {
        "check_can_live_migrate_destination", "pre_live_migration"} == set()


def test_a_destination_proxy_implements_only_the_destination_role(world, make_driver):
    """What an embedding stack writes for a destination behind its own RPC."""
    from migplane.core import flow

    class Proxy(driver.DestinationDriver):
        def __init__(self, backend):
            self.backend = backend

        hostname = property(lambda self: self.backend.hostname)

        def describe(self):
            return self.backend.describe()

        def get_instance_info(self, instance):
            return self.backend.get_instance_info(instance)

        def check_can_live_migrate_destination(self, instance, block_migration=False):
            return self.backend.check_can_live_migrate_destination(instance,
                                                                   block_migration)

        def pre_live_migration(self, instance, migrate_data):
            return self.backend.pre_live_migration(instance, migrate_data)

        def post_live_migration_at_destination(self, instance, migrate_data):
            self.backend.post_live_migration_at_destination(instance, migrate_data)

        def rollback_live_migration_at_destination(self, instance, migrate_data):
            self.backend.rollback_live_migration_at_destination(instance, migrate_data)

    world.add_guest("host-a", "vm1", memory_mib=256)
    source = make_driver("host-a")
    dest = Proxy(make_driver("host-b", my_live_migration_ip="198.51.100.12"))
    result = flow.LiveMigration("vm1", source, dest, source.settings.migration,
                                clock=world.clock.now, sleep=world.clock.sleep).run()
    assert result.status == flow.COMPLETED and result.running_on == "host-b"
    assert result.uris.data_uri == "tcp://198.51.100.12"
    assert world.where("vm1") == ["host-b"]
