"""The conformance kit: does a migration driver keep the contract?

A driver author subclasses :class:`DriverConformance` in their own tests,
names their driver's entry point and gives an :class:`Adapter` that knows
their environment (two configured hosts, a guest on the source)::

    from migplane.testing import conformance

    class AcmeAdapter(conformance.Adapter):
        inbound_address = "198.51.100.12"
        def host_conf(self, role, inbound=True): ...
        def create_guest(self): ...
        def runs_on(self, instance): ...

    class TestAcmeConformance(conformance.DriverConformance):
        driver_name = "acme"
        adapter_class = AcmeAdapter

and runs pytest. Each ``test_*`` method checks one clause of the contract
documented in :class:`migplane.core.driver.MigrationDriver`: ``describe()``
answers a valid :class:`DriverInfo` whose capabilities are honoured; every
step returns its documented type; ``pre_live_migration`` fills
``target_connect_addr`` from ``my_live_migration_ip``; ``JobProgress`` goes
through the documented states and keeps reporting a finished state once
finished; abort and force-complete; rollbacks at source and destination are
idempotent and leave the host clean; errors are the core's typed exceptions.

Time: the kit waits with the driver's own ``flow_timing()``, so a simulated
driver runs in simulated time and a real one in real time.
"""

import abc
import dataclasses
import json
from typing import Any
from typing import List

import pytest
from oslo_config import cfg

from migplane.core import capabilities as caps_mod
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow
from migplane.core import loader
from migplane.core import migrate_data as md
from migplane.core import uri as uri_mod

SOURCE = "source"
DESTINATION = "destination"


class Adapter(abc.ABC):
    """What the kit needs to know of a driver's environment.

    One adapter is made per test (``setup()`` then ``cleanup()``); it owns two
    hosts, ``source`` and ``destination``, and the guests it creates.
    """

    #: The destination's ``my_live_migration_ip`` when ``inbound`` is asked for.
    inbound_address: str = ""
    #: Driver-time seconds a migration job may take in the kit's tests.
    job_timeout: float = 300.0

    def setup(self) -> None:  # noqa: B027 (optional hook)
        """Prepare the environment (called before each test)."""

    def cleanup(self) -> None:  # noqa: B027 (optional hook)
        """Undo everything (called after each test, even a failed one)."""

    @abc.abstractmethod
    def host_conf(self, role: str, inbound: bool = True) -> cfg.ConfigOpts:
        """A configured ``ConfigOpts`` for ``role`` ('source' or 'destination').

        For the destination with ``inbound``, ``[DEFAULT] my_live_migration_ip``
        is :attr:`inbound_address`; without, it is unset (legacy behaviour).
        """

    @abc.abstractmethod
    def create_guest(self) -> str:
        """Start a guest on the source host; return its name."""

    @abc.abstractmethod
    def runs_on(self, instance: str) -> List[str]:
        """The roles ('source', 'destination') of the hosts where ``instance`` runs."""

    def leftovers(self, role: str, instance: str) -> List[str]:
        """What of ``instance`` is left on ``role``'s host besides a running guest
        (definitions, disks, prepared state...), described; [] when clean."""
        return []

    def migration_settings(self, settings):
        """Settings for the kit's migrations (e.g. a bandwidth cap so that an
        abort arrives before a small guest has finished moving)."""
        return settings


def _wait_finished(drv, instance, timeout, states):
    clock, sleep = drv.flow_timing()
    deadline = clock() + timeout
    while True:
        progress = drv.get_job_progress(instance)
        assert isinstance(progress, driver_mod.JobProgress), (
            "get_job_progress() returned %r, not a JobProgress" % (progress,))
        assert progress.state in driver_mod.JOB_STATES, (
            "JobProgress.state %r is not one of %s" % (progress.state,
                                                      driver_mod.JOB_STATES))
        states.append(progress.state)
        if progress.finished:
            return progress
        assert clock() < deadline, "the job did not finish within %s s" % timeout
        sleep(0.2)


class DriverConformance:
    """Base class of a driver's conformance tests (pytest collects subclasses).

    Subclasses set :attr:`driver_name` (the entry point in
    ``migplane.drivers``) and :attr:`adapter_class`.
    """

    driver_name: str = ""
    adapter_class: type = Adapter

    # -- fixtures ----------------------------------------------------------------

    @pytest.fixture
    def adapter(self):
        adapter = self.adapter_class()
        adapter.setup()
        try:
            yield adapter
        finally:
            adapter.cleanup()

    def load(self, adapter, role, inbound=True):
        return loader.load_driver(adapter.host_conf(role, inbound=inbound),
                                  self.driver_name)

    @pytest.fixture
    def source(self, adapter):
        return self.load(adapter, SOURCE)

    @pytest.fixture
    def destination(self, adapter):
        return self.load(adapter, DESTINATION)

    @pytest.fixture
    def guest(self, adapter):
        return adapter.create_guest()

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def cross(data):
        """As the flow does: every MigrateData crosses as JSON primitives."""
        assert isinstance(data, md.MigrateData), "%r is not a MigrateData" % (data,)
        return md.MigrateData.from_primitive(json.loads(json.dumps(data.to_primitive())))

    def prepare(self, source, destination, instance):
        """The steps before the transfer; returns (migrate_data, uris)."""
        data = self.cross(destination.check_can_live_migrate_destination(instance, False))
        data = self.cross(source.check_can_live_migrate_source(instance, data))
        data = self.cross(destination.pre_live_migration(instance, data))
        info = source.describe()
        uris = uri_mod.resolve(source.settings.migration, data, info.capabilities,
                               dest_hostname=destination.hostname, driver=info.name)
        return data, uris

    def assert_clean_rollback(self, adapter, source, destination, instance, data):
        for _ in range(2):  # idempotent: twice is fine
            source.rollback_live_migration_at_source(instance, data)
            destination.rollback_live_migration_at_destination(instance, data)
        assert adapter.runs_on(instance) == [SOURCE]
        assert adapter.leftovers(DESTINATION, instance) == []

    # -- describe() and loading ------------------------------------------------------

    def test_loads_by_entry_point_and_describes_itself(self, source):
        assert isinstance(source, driver_mod.MigrationDriver)
        info = source.describe()
        assert isinstance(info, driver_mod.DriverInfo)
        assert isinstance(info.capabilities, caps_mod.Capabilities)
        assert info.name and info.version
        assert info.capabilities.default_scheme in info.capabilities.schemes
        # it crosses between hosts: it must survive the wire
        assert driver_mod.DriverInfo.from_primitive(
            json.loads(json.dumps(info.to_primitive()))) == info

    def test_local_addresses(self, source):
        addrs = source.local_addresses()
        assert addrs is None or all(isinstance(a, str) for a in addrs)

    # -- host facts ---------------------------------------------------------------------

    def test_instance_info(self, source, guest):
        info = source.get_instance_info(guest)
        assert isinstance(info, driver_mod.InstanceInfo)
        assert info.name == guest and info.memory_bytes > 0

    def test_unknown_instance_is_instance_not_found(self, source):
        with pytest.raises(exception.InstanceNotFound):
            source.get_instance_info("conformance-no-such-guest")

    # -- destination side -----------------------------------------------------------------

    def test_pre_live_migration_sets_target_connect_addr(self, adapter, source,
                                                         destination, guest):
        data = self.cross(destination.check_can_live_migrate_destination(guest, False))
        data = self.cross(source.check_can_live_migrate_source(guest, data))
        data = self.cross(destination.pre_live_migration(guest, data))
        assert data.target_connect_addr == adapter.inbound_address
        assert data.inbound_addr_source == md.INBOUND_FROM_OPTION
        assert data.dest_hostname == destination.hostname
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_pre_live_migration_without_inbound_address_is_legacy(self, adapter, source,
                                                                  guest):
        destination = self.load(adapter, DESTINATION, inbound=False)
        data = self.cross(destination.check_can_live_migrate_destination(guest, False))
        data = self.cross(destination.pre_live_migration(guest, data))
        assert data.target_connect_addr is None
        assert data.inbound_addr_source == md.INBOUND_NONE
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_rollback_of_a_migration_that_never_started_is_harmless(
            self, adapter, source, destination, guest):
        self.assert_clean_rollback(adapter, source, destination, guest,
                                   md.MigrateData(dest_hostname=destination.hostname))

    # -- capabilities are honoured -----------------------------------------------------------

    def test_an_undeclared_capability_is_refused(self, adapter, source, destination,
                                                  guest):
        caps = source.describe().capabilities
        asked = {"tunnelled": dict(tunnelled=True), "native_tls": dict(native_tls=True)}
        name = next((n for n in asked if not getattr(caps, n)), None)
        settings = source.settings.migration
        if name is None:  # everything declared: ask for a scheme nobody has
            settings = settings.replace(scheme="conformance-undeclared")
        else:
            settings = settings.replace(**asked[name])
        clock, sleep = source.flow_timing()
        migration = flow.LiveMigration(guest, source, destination, settings,
                                       clock=clock, sleep=sleep)
        with pytest.raises(exception.UnsupportedFeature):
            migration.run()
        assert adapter.runs_on(guest) == [SOURCE]
        assert adapter.leftovers(DESTINATION, guest) == []

    # -- the transfer --------------------------------------------------------------------

    def test_steps_return_their_types_and_the_job_stays_finished(
            self, adapter, source, destination, guest):
        data, uris = self.prepare(source, destination, guest)
        settings = source.settings.migration  # full speed: it must converge alone
        assert source.live_migration(guest, data, uris, settings) is None
        states: List[str] = []
        progress = _wait_finished(source, guest, adapter.job_timeout, states)
        assert progress.state == driver_mod.JOB_COMPLETED, progress.error
        assert progress.percent == 100.0
        # documented order: none/running ... then one finished state
        assert all(s in (driver_mod.JOB_NONE, driver_mod.JOB_RUNNING) for s in states[:-1])
        for _ in range(3):  # once finished, it keeps saying so until post/rollback
            assert source.get_job_progress(guest).state == driver_mod.JOB_COMPLETED
        assert destination.post_live_migration_at_destination(guest, data) is None
        assert source.post_live_migration_at_source(guest, data) is None
        assert adapter.runs_on(guest) == [DESTINATION]
        assert adapter.leftovers(SOURCE, guest) == []

    def test_abort_keeps_the_guest_on_the_source(self, adapter, source, destination,
                                                 guest):
        data, uris = self.prepare(source, destination, guest)
        settings = adapter.migration_settings(source.settings.migration)
        source.live_migration(guest, data, uris, settings)
        try:
            source.abort_job(guest)
        except exception.NoActiveMigration:
            pass  # finished before the abort arrived: allowed, checked below
        progress = _wait_finished(source, guest, adapter.job_timeout, [])
        assert progress.state != driver_mod.JOB_COMPLETED, (
            "the migration completed before the abort arrived: make "
            "Adapter.migration_settings() slow it down (e.g. a bandwidth cap)")
        assert progress.state in (driver_mod.JOB_CANCELLED, driver_mod.JOB_FAILED)
        try:  # a second abort: nothing left to abort, a no-op or a typed error
            source.abort_job(guest)
        except exception.NoActiveMigration:
            pass
        assert source.get_job_progress(guest).state == progress.state
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_force_complete_converges(self, adapter, source, destination, guest):
        data, uris = self.prepare(source, destination, guest)
        settings = source.settings.migration
        source.live_migration(guest, data, uris, settings)
        try:
            source.force_complete(guest, post_copy=False)
        except exception.NoActiveMigration:
            pass  # already finished
        progress = _wait_finished(source, guest, adapter.job_timeout, [])
        assert progress.state == driver_mod.JOB_COMPLETED, progress.error
        destination.post_live_migration_at_destination(guest, data)
        source.post_live_migration_at_source(guest, data)
        assert adapter.runs_on(guest) == [DESTINATION]

    def test_no_job_is_a_typed_error(self, source, guest):
        with pytest.raises(exception.NoActiveMigration):
            source.abort_job(guest)
        with pytest.raises(exception.NoActiveMigration):
            source.get_job_progress(guest)

    # -- the whole flow ------------------------------------------------------------------

    def test_a_live_migration_through_the_core_flow(self, adapter, source, destination,
                                                    guest):
        clock, sleep = source.flow_timing()
        settings = adapter.migration_settings(source.settings.migration)
        settings = dataclasses.replace(settings, bandwidth_mib=0)
        result = flow.LiveMigration(guest, source, destination, settings,
                                    clock=clock, sleep=sleep).run()
        assert result.status == flow.COMPLETED
        assert result.uris.plane == uri_mod.MIGRATION
        assert result.running_on == destination.hostname
        assert adapter.runs_on(guest) == [DESTINATION]
        assert adapter.leftovers(SOURCE, guest) == []


def fake_adapter_class(**world_kwargs: Any) -> type:
    """An :class:`Adapter` over a :class:`~migplane.testing.fixtures.FakeWorldFixture`
    (for drivers that drive the fake world, such as ``fake`` itself)."""
    from migplane.testing import fixtures as mp_fixtures

    class FakeAdapter(Adapter):
        inbound_address = "198.51.100.12"
        job_timeout = 600.0
        roles = {SOURCE: "host-a", DESTINATION: "host-b"}

        def setup(self):
            self.fixture = mp_fixtures.FakeWorldFixture(**world_kwargs)
            self.fixture.setUp()
            self.world = self.fixture.world
            self.guests = 0

        def cleanup(self):
            self.fixture.cleanUp()

        def host_conf(self, role, inbound=True):
            ip = self.inbound_address if role == DESTINATION and inbound else None
            return self.fixture.conf(self.roles[role], ip)

        def create_guest(self):
            self.guests += 1
            name = "conformance-%d" % self.guests
            self.world.add_guest(self.roles[SOURCE], name, memory_mib=256, dirty_mib_s=2)
            return name

        def runs_on(self, instance):
            hosts = {v: k for k, v in self.roles.items()}
            return sorted(hosts[h] for h in self.world.where(instance))

        def leftovers(self, role, instance):
            host = self.world.hosts[self.roles[role]]
            left = []
            if instance in host.guests and not host.running(instance):
                left.append("guest definition (%s)" % host.guests[instance].state)
            if instance in host.prepared:
                left.append("prepared state")
            if instance in host.disks:
                left.append("disk")
            return left

        def migration_settings(self, settings):
            return settings.replace(bandwidth_mib=10)

    return FakeAdapter
