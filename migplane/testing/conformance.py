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
        def observe_transfer(self, instance): ...   # what the transfer really did
        def inject_failure(self, role, step): ...   # make the next `step` fail

    class TestAcmeConformance(conformance.DriverConformance):
        driver_name = "acme"
        adapter_class = AcmeAdapter

and runs pytest (``-rs`` lists the checks skipped and why). Each ``test_*``
method checks one clause of the contract documented in
:mod:`migplane.core.driver`:

* ``describe()`` answers a valid :class:`DriverInfo`; every step returns its
  documented type; ``pre_live_migration`` fills ``target_connect_addr`` from
  ``my_live_migration_ip``.
* What the driver *did* is checked, not what it says: through
  :meth:`Adapter.observe_transfer`, the bulk stream went to
  ``target_connect_addr`` and the control connection to the host name (the
  split plane, for every driver), and each declared capability (tunnelled,
  native TLS, post-copy, block migration) was honoured when asked for; an
  undeclared one is refused by the driver itself. An adapter that cannot
  observe something says why, and that check is skipped with the reason.
* ``JobProgress`` goes through the documented states and keeps reporting a
  finished state once finished; abort and force-complete do what they say.
* A failure injected into each step (:meth:`Adapter.inject_failure`) is one of
  the core's typed exceptions, and the flow leaves the guest on the source
  with nothing left on either host; rollbacks are idempotent.
* No step hangs: every call is bounded by :attr:`Adapter.step_deadline`.

Failure messages show the values and say what the contract requires
(``migplane.testing`` registers this module for pytest's assertion rewriting).

Time: the kit waits with the driver's own ``flow_timing()``, so a simulated
driver runs in simulated time and a real one in real time.
"""

import abc
import dataclasses
import functools
import json
from typing import Any
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional
from typing import Tuple

import pytest
from oslo_config import cfg

from migplane.core import address
from migplane.core import capabilities as caps_mod
from migplane.core import deadlines
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow
from migplane.core import loader
from migplane.core import migrate_data as md
from migplane.core import uri as uri_mod

SOURCE = "source"
DESTINATION = "destination"

#: The capabilities the kit migrates with, when declared.
CAPABILITIES = ("tunnelled", "native_tls", "post_copy", "block_migration")

#: Steps the kit makes fail, by role (a rollback or post step failing leaves a
#: host for reconciliation: not a clean rollback the kit could check).
FAILING_STEPS = (
    (DESTINATION, "check_can_live_migrate_destination"),
    (SOURCE, "check_can_live_migrate_source"),
    (DESTINATION, "pre_live_migration"),
    (SOURCE, "get_instance_info"),
    (SOURCE, "live_migration"),
    (SOURCE, "get_job_progress"),
    (SOURCE, "set_max_downtime"),
)

#: Errors each step is documented to raise (any ``MigplaneError`` is typed).
DOCUMENTED_ERRORS = {
    "check_can_live_migrate_destination": "DestinationCheckFailed",
    "check_can_live_migrate_source": "SourceCheckFailed or InstanceNotFound",
    "pre_live_migration": "DestinationCheckFailed or InboundAddressError",
    "get_instance_info": "InstanceNotFound or HypervisorUnavailable",
    "live_migration": "MigrationError",
    "get_job_progress": "NoActiveMigration or HypervisorUnavailable",
    "set_max_downtime": "NoActiveMigration or MigrationError",
}


@dataclasses.dataclass(frozen=True)
class Observed:
    """What a transfer actually did, seen from outside the driver.

    A field left None was not observed; :attr:`unobserved` says why (shown
    when the check that needs it is skipped).
    """

    #: The address the bulk (memory) stream was sent to.
    data_address: Optional[str] = None
    #: Its port, when the adapter sees ports.
    data_port: Optional[int] = None
    #: The host (name or address) the control connection addressed.
    control_host: Optional[str] = None
    #: Whether the data was tunnelled through the control connection.
    tunnelled: Optional[bool] = None
    #: Whether the data stream was encrypted with the hypervisor's native TLS.
    tls: Optional[bool] = None
    #: Whether the job switched to post-copy.
    postcopy: Optional[bool] = None
    #: Whether the guest's local disks were copied to the destination.
    disks_copied: Optional[bool] = None
    #: ``{field: reason}`` for the fields the adapter cannot observe.
    unobserved: Dict[str, str] = dataclasses.field(default_factory=dict)


class Adapter(abc.ABC):
    """What the kit needs to know of a driver's environment.

    One adapter is made per test (``setup()`` then ``cleanup()``); it owns two
    hosts, ``source`` and ``destination``, and the guests it creates.
    """

    #: The destination's ``my_live_migration_ip`` when ``inbound`` is asked for.
    inbound_address: str = ""
    #: Driver-time seconds a migration job may take in the kit's tests.
    job_timeout: float = 300.0
    #: Real seconds the kit waits for one driver call (a hang fails the check).
    step_deadline: float = 120.0

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

    def create_guest_with_disk(self) -> Optional[str]:
        """Start a guest with a local (not shared) disk on the source; return its
        name, or None when the environment cannot (block migration is then not
        checked)."""
        return None

    @abc.abstractmethod
    def runs_on(self, instance: str) -> List[str]:
        """The roles ('source', 'destination') of the hosts where ``instance`` runs."""

    def leftovers(self, role: str, instance: str) -> List[str]:
        """What of ``instance`` is left on ``role``'s host besides a running guest
        (definitions, disks, prepared state...), described; [] when clean."""
        return []

    def migration_settings(self, settings: Any) -> Any:
        """Settings for the kit's migrations that must last (e.g. a bandwidth cap
        so that an abort arrives before a small guest has finished moving)."""
        return settings

    def cannot_run(self, capability: str) -> Optional[str]:
        """Why this environment cannot run a migration with a declared
        ``capability`` (e.g. no TLS certificates on the test hosts), or None.
        The check of that capability is then skipped with the reason."""
        return None

    def break_migration_stream(self, instance: str) -> bool:
        """Break the migration stream of ``instance``'s running job for a while
        (a link down long enough to stall it, or a connection reset), then let
        it heal by itself; False when this environment cannot (the post-copy
        recovery check is then skipped)."""
        return False


    def observe_transfer(self, instance: str) -> Observed:
        """What the last transfer of ``instance`` actually did, as seen from
        outside the driver (the hypervisor, the network), not as the driver
        reports it. Called after the job finished."""
        return Observed(unobserved={
            f.name: "%s does not implement Adapter.observe_transfer()"
                    % type(self).__name__
            for f in dataclasses.fields(Observed) if f.name != "unobserved"})

    def inject_failure(self, role: str, step: str) -> Optional[str]:
        """Make the next call of ``step`` on ``role``'s host fail as the
        hypervisor would fail it (called before the test's guest is created).
        Returns None when done, or the reason it cannot (that check is then
        skipped with the reason)."""
        return "%s does not implement Adapter.inject_failure()" % type(self).__name__


def _unwrap(drv: Any) -> Any:
    return drv.driver if isinstance(drv, deadlines.StepDeadlines) else drv


class _Recorder:
    """A driver whose calls' exceptions are recorded: ``raised[step]``."""

    def __init__(self, drv: Any) -> None:
        self._driver = drv
        self.raised: Dict[str, BaseException] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._driver, name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except Exception as err:
                self.raised.setdefault(name, err)
                raise
        return recorded


def _wait_finished(drv: Any, instance: str, timeout: float, states: List[str]
                   ) -> driver_mod.JobProgress:
    """Poll until the job is finished; check each answer against the contract."""
    clock, sleep = _unwrap(drv).flow_timing()
    deadline = clock() + timeout
    while True:
        progress: driver_mod.JobProgress = drv.get_job_progress(instance)
        problem = driver_mod.progress_problem(progress)
        assert problem is None, (
            "get_job_progress(%r) %s: the contract requires a JobProgress whose state is "
            "one of %s" % (instance, problem, ", ".join(driver_mod.JOB_STATES)))
        states.append(progress.state)
        if progress.finished:
            return progress
        assert clock() < deadline, (
            "the job of %r did not finish within %s s (states seen: %s)"
            % (instance, timeout, ", ".join(states[-5:])))
        sleep(0.2)


def _wait_moving(drv: Any, instance: str, timeout: float) -> None:
    """Wait until the job has sent some memory, as the flow's monitor does before
    it escalates."""
    clock, sleep = _unwrap(drv).flow_timing()
    deadline = clock() + timeout
    while True:
        progress = drv.get_job_progress(instance)
        if progress.finished or progress.memory_processed > 0:
            return
        assert clock() < deadline, "the job of %r sent nothing within %s s (%r)" % (
            instance, timeout, progress)
        sleep(0.2)


class DriverConformance:
    """Base class of a driver's conformance tests (pytest collects subclasses).

    Subclasses set :attr:`driver_name` (the entry point in
    ``migplane.drivers``) and :attr:`adapter_class`; :attr:`driver_class`
    instead checks a class that is not installed (as stevedore's
    ``make_test_instance``).
    """

    driver_name: str = ""
    driver_class: Optional[type] = None
    adapter_class: type = Adapter

    # -- fixtures ----------------------------------------------------------------

    @pytest.fixture
    def adapter(self) -> Iterator[Adapter]:
        adapter = self.adapter_class()
        adapter.setup()
        try:
            yield adapter
        finally:
            adapter.cleanup()

    def load(self, adapter: Adapter, role: str, inbound: bool = True) -> Any:
        """The driver of ``role``'s host, every call bounded by the step deadline."""
        conf = adapter.host_conf(role, inbound=inbound)
        if self.driver_class is None:
            drv = loader.load_driver(conf, self.driver_name)
        else:
            drv = self.driver_class(conf)
            loader.check_driver(self.driver_name or self.driver_class.__name__, drv)
        return deadlines.StepDeadlines(drv, adapter.step_deadline)

    @pytest.fixture
    def source(self, adapter: Adapter) -> Any:
        return self.load(adapter, SOURCE)

    @pytest.fixture
    def destination(self, adapter: Adapter) -> Any:
        return self.load(adapter, DESTINATION)

    @pytest.fixture
    def guest(self, adapter: Adapter) -> str:
        return adapter.create_guest()

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def cross(data: Any, step: str = "a step") -> md.MigrateData:
        """As the flow does: every MigrateData crosses as JSON primitives."""
        assert isinstance(data, md.MigrateData), (
            "%s returned %r: the contract requires a MigrateData" % (step, data))
        return md.MigrateData.from_primitive(json.loads(json.dumps(data.to_primitive())))

    @staticmethod
    def settings(adapter: Adapter, drv: Any, slow: bool = False, **changes: Any) -> Any:
        settings = _unwrap(drv).settings.migration
        if slow:
            settings = adapter.migration_settings(settings)
        return settings.replace(step_deadline=adapter.step_deadline, **changes)

    def prepare(self, source: Any, destination: Any, instance: str,
                block_migration: bool = False, settings: Any = None,
                capabilities: Optional[caps_mod.Capabilities] = None
                ) -> Tuple[md.MigrateData, uri_mod.MigrationURIs]:
        """The steps before the transfer; returns (migrate_data, uris)."""
        data = self.cross(destination.check_can_live_migrate_destination(
            instance, block_migration), "check_can_live_migrate_destination")
        data = self.cross(source.check_can_live_migrate_source(instance, data),
                          "check_can_live_migrate_source")
        data = self.cross(destination.pre_live_migration(instance, data),
                          "pre_live_migration")
        info = source.describe()
        uris = uri_mod.resolve(settings or source.settings.migration, data,
                               capabilities or info.capabilities,
                               dest_hostname=destination.hostname, driver=info.name)
        return data, uris

    def finish(self, adapter: Adapter, source: Any, destination: Any, instance: str,
               data: md.MigrateData) -> driver_mod.JobProgress:
        """Wait for the job to complete, then run the post steps."""
        progress = _wait_finished(source, instance, adapter.job_timeout, [])
        assert progress.state == driver_mod.JOB_COMPLETED, (
            "the job of %r ended %r (%s): the kit expected it to complete"
            % (instance, progress.state, progress.error))
        destination.post_live_migration_at_destination(instance, data)
        source.post_live_migration_at_source(instance, data)
        return progress

    @staticmethod
    def observed(adapter: Adapter, instance: str, *names: str) -> Observed:
        """The adapter's observation; skips the check when a field is unobserved."""
        seen = adapter.observe_transfer(instance)
        for name in names:
            if getattr(seen, name) is None:
                pytest.skip("cannot check: %s is not observed: %s" % (
                    name, seen.unobserved.get(name, "the adapter gave no reason")))
        return seen

    def assert_clean_rollback(self, adapter: Adapter, source: Any, destination: Any,
                              instance: str, data: md.MigrateData) -> None:
        for attempt in ("first", "second"):  # idempotent: twice is fine
            for drv, step in ((source, "rollback_live_migration_at_source"),
                              (destination, "rollback_live_migration_at_destination")):
                try:
                    getattr(drv, step)(instance, data)
                except exception.StepTimedOut:
                    raise
                except Exception as err:
                    pytest.fail("%s(%r) raised %s: %s on its %s call: the contract requires "
                                "rollbacks to be idempotent (a second call, or a call with "
                                "nothing to undo, is harmless)" % (
                                    step, instance, type(err).__name__, err, attempt))
        self.assert_on_source_and_clean(adapter, instance)

    @staticmethod
    def assert_on_source_and_clean(adapter: Adapter, instance: str) -> None:
        where = adapter.runs_on(instance)
        assert where == [SOURCE], (
            "after the rollback %r runs on %s: the contract requires it to run on the "
            "source only" % (instance, where or "no host"))
        for role in (SOURCE, DESTINATION):
            left = adapter.leftovers(role, instance)
            assert left == [], (
                "after the rollback the %s keeps %s of %r: the contract requires "
                "rollbacks to remove whatever the migration left" % (role, left, instance))

    # -- describe() and loading ------------------------------------------------------

    def test_loads_by_entry_point_and_describes_itself(self, source: Any) -> None:
        drv = _unwrap(source)
        assert isinstance(drv, driver_mod.MigrationDriver), (
            "%r is not a migplane.core.driver.MigrationDriver" % (drv,))
        info = source.describe()
        assert isinstance(info, driver_mod.DriverInfo), (
            "describe() returned %r: the contract requires a DriverInfo" % (info,))
        assert isinstance(info.capabilities, caps_mod.Capabilities)
        assert info.name and info.version, "describe() gave no name or version: %r" % (
            info,)
        assert info.capabilities.default_scheme in info.capabilities.schemes, (
            "default scheme %r is not among the declared schemes %s"
            % (info.capabilities.default_scheme, info.capabilities.schemes))
        # it crosses between hosts: it must survive the wire
        again = driver_mod.DriverInfo.from_primitive(
            json.loads(json.dumps(info.to_primitive())))
        assert again == info, "DriverInfo changed crossing the wire: %r -> %r" % (
            info, again)

    def test_local_addresses(self, source: Any) -> None:
        addrs = source.local_addresses()
        assert addrs is None or (isinstance(addrs, list)
                                 and all(isinstance(a, str) for a in addrs)), (
            "local_addresses() returned %r: the contract requires a list of address "
            "strings, or None when unknown" % (addrs,))

    # -- host facts ---------------------------------------------------------------------

    def test_instance_info(self, source: Any, guest: str) -> None:
        info = source.get_instance_info(guest)
        assert isinstance(info, driver_mod.InstanceInfo), (
            "get_instance_info(%r) returned %r: the contract requires an InstanceInfo"
            % (guest, info))
        assert info.name == guest and info.memory_bytes > 0, (
            "get_instance_info(%r) returned %r: the guest's name and its memory size "
            "are required" % (guest, info))

    def test_unknown_instance_is_instance_not_found(self, source: Any) -> None:
        with pytest.raises(exception.InstanceNotFound):
            source.get_instance_info("conformance-no-such-guest")

    # -- destination side -----------------------------------------------------------------

    def test_pre_live_migration_sets_target_connect_addr(self, adapter: Adapter,
            source: Any, destination: Any, guest: str) -> None:
        data, _ = self.prepare(source, destination, guest)
        assert data.target_connect_addr == adapter.inbound_address, (
            "pre_live_migration() returned target_connect_addr=%r with "
            "my_live_migration_ip=%r: the contract requires that address (build the "
            "answer with MigrationDriver.inbound_migrate_data())"
            % (data.target_connect_addr, adapter.inbound_address))
        assert data.inbound_addr_source == md.INBOUND_FROM_OPTION, (
            "inbound_addr_source is %r, not %r" % (data.inbound_addr_source,
                                                   md.INBOUND_FROM_OPTION))
        assert data.dest_hostname == destination.hostname, (
            "dest_hostname is %r, not the destination's host name %r"
            % (data.dest_hostname, destination.hostname))
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_pre_live_migration_without_inbound_address_is_legacy(self, adapter: Adapter,
            source: Any, guest: str) -> None:
        destination = self.load(adapter, DESTINATION, inbound=False)
        data = self.cross(destination.check_can_live_migrate_destination(guest, False))
        data = self.cross(destination.pre_live_migration(guest, data))
        assert (data.target_connect_addr, data.inbound_addr_source) == (
            None, md.INBOUND_NONE), (
            "without my_live_migration_ip pre_live_migration() returned "
            "target_connect_addr=%r (%s): the contract requires None (legacy)"
            % (data.target_connect_addr, data.inbound_addr_source))
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_rollback_of_a_migration_that_never_started_is_harmless(self,
            adapter: Adapter, source: Any, destination: Any, guest: str) -> None:
        self.assert_clean_rollback(adapter, source, destination, guest,
                                   md.MigrateData(dest_hostname=destination.hostname))

    # -- capabilities: declared ones honoured, undeclared ones refused --------------------

    def test_an_undeclared_capability_is_refused_by_the_core(self, adapter: Adapter,
            source: Any, destination: Any, guest: str) -> None:
        caps = source.describe().capabilities
        asked = {"tunnelled": dict(tunnelled=True), "native_tls": dict(native_tls=True)}
        name = next((n for n in asked if not getattr(caps, n)), None)
        if name is None:  # everything declared: ask for a scheme nobody has
            settings = self.settings(adapter, source, scheme="conformance-undeclared")
        else:
            settings = self.settings(adapter, source, **asked[name])
        clock, sleep = _unwrap(source).flow_timing()
        migration = flow.LiveMigration(guest, source, destination, settings,
                                       clock=clock, sleep=sleep)
        with pytest.raises(exception.UnsupportedFeature):
            migration.run()
        self.assert_on_source_and_clean(adapter, guest)

    @pytest.mark.parametrize("capability", CAPABILITIES)
    def test_the_driver_itself_refuses_an_undeclared_capability(self, adapter: Adapter,
            source: Any, destination: Any, capability: str) -> None:
        """A stack may call the driver without the core's check: asked for what it
        did not declare, ``live_migration`` raises UnsupportedFeature."""
        caps = source.describe().capabilities
        if getattr(caps, capability):
            pytest.skip("%s is declared (checked by test_a_declared_capability_is_honoured)"
                        % capability)
        block = capability == "block_migration"
        guest = adapter.create_guest_with_disk() if block else adapter.create_guest()
        if guest is None:
            pytest.skip("the adapter cannot create a guest with a local disk")
        asked = {"tunnelled": dict(tunnelled=True), "native_tls": dict(native_tls=True),
                 "post_copy": dict(permit_post_copy=True)}.get(capability, {})
        settings = self.settings(adapter, source, slow=True, **asked)
        everything = dataclasses.replace(caps, **{capability: True})
        data, uris = self.prepare(source, destination, guest, block_migration=block,
                                  settings=settings, capabilities=everything)
        try:
            source.live_migration(guest, data, uris, settings)
        except exception.UnsupportedFeature:
            self.assert_clean_rollback(adapter, source, destination, guest, data)
            return
        except exception.StepTimedOut:
            raise
        except Exception as err:
            pytest.fail("asked for the undeclared %s, live_migration() raised %s: %s: the "
                        "contract requires UnsupportedFeature" % (
                            capability, type(err).__name__, err))
        try:
            source.abort_job(guest)
        except exception.MigplaneError:
            pass
        _wait_finished(source, guest, adapter.job_timeout, [])
        self.assert_clean_rollback(adapter, source, destination, guest, data)
        pytest.fail("%s does not declare %s, yet live_migration() accepted a migration "
                    "asking for it: the contract requires UnsupportedFeature for a "
                    "capability not declared in describe()" % (
                        source.describe().name, capability))

    @pytest.mark.parametrize("capability", CAPABILITIES)
    def test_a_declared_capability_is_honoured(self, adapter: Adapter, source: Any,
            destination: Any, capability: str) -> None:
        caps = source.describe().capabilities
        if not getattr(caps, capability):
            pytest.skip("%s is not declared" % capability)
        why_not = adapter.cannot_run(capability)
        if why_not is not None:
            pytest.skip("cannot check %s: %s" % (capability, why_not))
        block = capability == "block_migration"
        guest = adapter.create_guest_with_disk() if block else adapter.create_guest()
        if guest is None:
            pytest.skip("cannot check block_migration: the adapter cannot create a guest "
                        "with a local disk (Adapter.create_guest_with_disk)")
        asked = {"tunnelled": dict(tunnelled=True), "native_tls": dict(native_tls=True),
                 "post_copy": dict(permit_post_copy=True)}.get(capability, {})
        settings = self.settings(adapter, source, slow=capability == "post_copy", **asked)
        data, uris = self.prepare(source, destination, guest, block_migration=block,
                                  settings=settings)
        source.live_migration(guest, data, uris, settings)
        if capability == "post_copy":
            _wait_moving(source, guest, adapter.job_timeout)
            source.force_complete(guest, post_copy=True)
        self.finish(adapter, source, destination, guest, data)
        field, expected = {"tunnelled": ("tunnelled", "tunnelled through the control "
                                                      "connection"),
                           "native_tls": ("tls", "encrypted with native TLS"),
                           "post_copy": ("postcopy", "switched to post-copy"),
                           "block_migration": ("disks_copied", "with its local disks "
                                                               "copied")}[capability]
        seen = self.observed(adapter, guest, field)
        assert getattr(seen, field) is True, (
            "%s declares %s and was asked for it, but the transfer was not %s (observed: "
            "%r): the contract requires every declared capability to be honoured"
            % (source.describe().name, capability, expected, seen))
        assert adapter.runs_on(guest) == [DESTINATION]

    def test_the_split_plane_is_kept(self, adapter: Adapter, source: Any,
            destination: Any, guest: str) -> None:
        """The bulk stream goes to ``target_connect_addr``, the control connection
        to the destination's host name (``control_plane = management``)."""
        settings = self.settings(adapter, source, control_plane="management",
                                 tunnelled=False)
        data, uris = self.prepare(source, destination, guest, settings=settings)
        source.live_migration(guest, data, uris, settings)
        self.finish(adapter, source, destination, guest, data)
        seen = self.observed(adapter, guest, "data_address")
        target = address.parse_host(data.target_connect_addr).host
        assert seen.data_address == target, (
            "the bulk stream went to %r, not to target_connect_addr %r (data URI %r): "
            "the contract requires the data to ride the migration plane"
            % (seen.data_address, target, uris.data_uri))
        if seen.data_port is not None and uris.data_uri:
            wanted = address.parse_host(uris.data_uri.partition("://")[2]).port
            assert wanted is None or seen.data_port == wanted, (
                "the bulk stream went to port %r, not %r of the data URI %r"
                % (seen.data_port, wanted, uris.data_uri))
        seen = self.observed(adapter, guest, "control_host")
        assert seen.control_host == destination.hostname, (
            "the control connection went to %r, not to the destination's host name %r "
            "(control URI %r): the contract requires it on the management network"
            % (seen.control_host, destination.hostname, uris.control_uri))

    # -- the transfer --------------------------------------------------------------------

    def test_steps_return_their_types_and_the_job_stays_finished(self, adapter: Adapter,
            source: Any, destination: Any, guest: str) -> None:
        data, uris = self.prepare(source, destination, guest)
        settings = self.settings(adapter, source)  # full speed: it must converge alone
        started = source.live_migration(guest, data, uris, settings)
        assert started is None, "live_migration() returned %r, not None" % (started,)
        states: List[str] = []
        progress = _wait_finished(source, guest, adapter.job_timeout, states)
        assert progress.state == driver_mod.JOB_COMPLETED, progress.error
        assert progress.percent == 100.0
        # documented order: none/running ... then one finished state
        early = [s for s in states[:-1] if s not in (driver_mod.JOB_NONE,
                                                     driver_mod.JOB_RUNNING)]
        assert not early, ("get_job_progress() said %s before it said completed: a job "
                           "reports none/running, then one finished state" % early)
        for poll in range(3):  # once finished, it keeps saying so until post/rollback
            try:
                again = source.get_job_progress(guest).state
            except exception.NoActiveMigration as err:
                again = "NoActiveMigration: %s" % err
            assert again == driver_mod.JOB_COMPLETED, (
                "get_job_progress() said completed, then %r (poll %d after): the contract "
                "requires a finished job to keep reporting its finished state until a "
                "post or rollback step runs" % (again, poll + 1))
        for drv, step in ((destination, "post_live_migration_at_destination"),
                          (source, "post_live_migration_at_source")):
            answer = getattr(drv, step)(guest, data)
            assert answer is None, "%s() returned %r, not None" % (step, answer)
        assert adapter.runs_on(guest) == [DESTINATION]
        assert adapter.leftovers(SOURCE, guest) == []

    def test_abort_keeps_the_guest_on_the_source(self, adapter: Adapter, source: Any,
            destination: Any, guest: str) -> None:
        data, uris = self.prepare(source, destination, guest)
        settings = self.settings(adapter, source, slow=True)
        source.live_migration(guest, data, uris, settings)
        before = source.get_job_progress(guest)
        if before.finished:
            pytest.fail("the job of %r had already ended %r before the kit could abort it, "
                        "with Adapter.migration_settings() giving %r: make that migration "
                        "last longer (e.g. a lower bandwidth cap)"
                        % (guest, before.state, settings))
        try:
            source.abort_job(guest)
        except exception.NoActiveMigration as err:
            pytest.fail("abort_job(%r) raised NoActiveMigration (%s) while "
                        "get_job_progress() said %r: the contract requires a running job "
                        "to be cancelled" % (guest, err, before.state))
        progress = _wait_finished(source, guest, adapter.job_timeout, [])
        assert progress.state in (driver_mod.JOB_CANCELLED, driver_mod.JOB_FAILED), (
            "abort_job(%r) returned while the job was %r with %d bytes to send, yet the "
            "job ended %r: the contract requires an aborted job to end cancelled (or "
            "failed), the guest staying on the source"
            % (guest, before.state, before.data_remaining, progress.state))
        try:  # a second abort: nothing left to abort, a no-op or a typed error
            source.abort_job(guest)
        except exception.NoActiveMigration:
            pass
        again = source.get_job_progress(guest).state
        assert again == progress.state, (
            "after a second abort_job() the job says %r, not %r" % (again, progress.state))
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_force_complete_converges(self, adapter: Adapter, source: Any,
            destination: Any, guest: str) -> None:
        data, uris = self.prepare(source, destination, guest)
        source.live_migration(guest, data, uris, self.settings(adapter, source))
        try:
            source.force_complete(guest, post_copy=False)
        except exception.NoActiveMigration:
            pass  # already finished
        self.finish(adapter, source, destination, guest, data)
        assert adapter.runs_on(guest) == [DESTINATION]

    def test_no_job_is_a_typed_error(self, source: Any, guest: str) -> None:
        for step in ("abort_job", "get_job_progress"):
            with pytest.raises(exception.NoActiveMigration):
                getattr(source, step)(guest)

    # -- failures --------------------------------------------------------------------------

    @pytest.mark.parametrize("role, step", FAILING_STEPS,
                             ids=["%s-%s" % rs for rs in FAILING_STEPS])
    def test_a_failing_step_is_typed_and_rolled_back(self, adapter: Adapter, source: Any,
            destination: Any, role: str, step: str) -> None:
        recorders = {SOURCE: _Recorder(_unwrap(source)),
                     DESTINATION: _Recorder(_unwrap(destination))}
        why_not = adapter.inject_failure(role, step)
        if why_not is not None:
            pytest.skip("cannot make %s fail: %s" % (step, why_not))
        guest = adapter.create_guest()
        clock, sleep = _unwrap(source).flow_timing()
        migration = flow.LiveMigration(guest, recorders[SOURCE], recorders[DESTINATION],
                                       self.settings(adapter, source, slow=True),
                                       clock=clock, sleep=sleep)
        with pytest.raises(exception.MigplaneError) as info:
            migration.run()
        raised = recorders[role].raised.get(step)
        assert raised is not None, (
            "the kit made %s on the %s fail, yet it raised nothing (the flow ended with "
            "%s): a step that fails must raise" % (step, role, info.value))
        assert isinstance(raised, exception.MigplaneError), (
            "%s on the %s failed with %s: %s: the contract requires one of the core's "
            "typed exceptions (migplane.core.exception: %s)"
            % (step, role, type(raised).__name__, raised, DOCUMENTED_ERRORS[step]))
        result = getattr(info.value, "result", None)
        assert result is not None and result.running_on == source.hostname, (
            "after %s failed the flow reports the guest on %r"
            % (step, result and result.running_on))
        self.assert_on_source_and_clean(adapter, guest)
        data = md.MigrateData(dest_hostname=destination.hostname)
        self.assert_clean_rollback(adapter, source, destination, guest, data)

    def test_a_broken_post_copy_recovers_or_stays_paused(
            self, adapter: Adapter, source: Any, destination: Any, guest: str) -> None:
        """Once in post-copy the guest runs on the destination with part of its
        memory on the source: a broken stream must be recovered (the job
        completes) or left paused (``postcopy_paused``), never reported failed."""
        if not source.describe().capabilities.post_copy:
            pytest.skip("the driver does not declare post-copy")
        data, uris = self.prepare(source, destination, guest)
        settings = adapter.migration_settings(source.settings.migration).replace(
            permit_post_copy=True)
        source.live_migration(guest, data, uris, settings)
        clock, sleep = source.flow_timing()
        deadline = clock() + adapter.job_timeout
        source.force_complete(guest, post_copy=True)
        while not source.get_job_progress(guest).postcopy:
            assert not source.get_job_progress(guest).finished, (
                "the job ended before it switched to post-copy: make "
                "Adapter.migration_settings() slow it down (e.g. a bandwidth cap)")
            assert clock() < deadline, "the job never switched to post-copy"
            sleep(0.1)
        if not adapter.break_migration_stream(guest):
            _wait_finished(source, guest, adapter.job_timeout, [])
            destination.post_live_migration_at_destination(guest, data)
            source.post_live_migration_at_source(guest, data)
            pytest.skip("the adapter cannot break a migration stream")
        states: List[str] = []
        progress = _wait_finished(source, guest, adapter.job_timeout, states)
        assert driver_mod.JOB_FAILED not in states and driver_mod.JOB_CANCELLED not in \
            states, "a broken post-copy was reported %s: %s" % (states[-1], progress.error)
        assert progress.state in (driver_mod.JOB_COMPLETED, driver_mod.JOB_POSTCOPY_PAUSED)
        assert progress.postcopy
        if progress.state == driver_mod.JOB_POSTCOPY_PAUSED:
            # Both halves kept: the guest still "runs" on the destination.
            assert DESTINATION in adapter.runs_on(guest)
            return
        destination.post_live_migration_at_destination(guest, data)
        source.post_live_migration_at_source(guest, data)
        assert adapter.runs_on(guest) == [DESTINATION]
        assert adapter.leftovers(SOURCE, guest) == []

    # -- the whole flow ------------------------------------------------------------------

    def test_a_live_migration_through_the_core_flow(self, adapter: Adapter, source: Any,
            destination: Any, guest: str) -> None:
        clock, sleep = _unwrap(source).flow_timing()
        settings = self.settings(adapter, source, slow=True, bandwidth_mib=0)
        result = flow.LiveMigration(guest, source, destination, settings,
                                    clock=clock, sleep=sleep).run()
        assert result.status == flow.COMPLETED
        assert result.uris is not None and result.uris.plane == uri_mod.MIGRATION
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

        def setup(self) -> None:
            self.fixture = mp_fixtures.FakeWorldFixture(**world_kwargs)
            self.fixture.setUp()
            self.world = self.fixture.world
            self.guests = 0

        def cleanup(self) -> None:
            self.fixture.cleanUp()

        def host_conf(self, role: str, inbound: bool = True) -> cfg.ConfigOpts:
            ip = self.inbound_address if role == DESTINATION and inbound else None
            return self.fixture.conf(self.roles[role], ip)

        def _add_guest(self, **kwargs: Any) -> str:
            self.guests += 1
            name = "conformance-%d" % self.guests
            self.world.add_guest(self.roles[SOURCE], name, memory_mib=256, dirty_mib_s=2,
                                 **kwargs)
            return name

        def create_guest(self) -> str:
            return self._add_guest()

        def create_guest_with_disk(self) -> Optional[str]:
            return self._add_guest(disk_mib=64)

        def runs_on(self, instance: str) -> List[str]:
            hosts = {v: k for k, v in self.roles.items()}
            return sorted(hosts[h] for h in self.world.where(instance))

        def leftovers(self, role: str, instance: str) -> List[str]:
            host = self.world.hosts[self.roles[role]]
            left = []
            if instance in host.guests and not host.running(instance):
                left.append("guest definition (%s)" % host.guests[instance].state)
            if instance in host.prepared:
                left.append("prepared state")
            if instance in host.disks and not host.running(instance):
                left.append("disk")
            return left

        def migration_settings(self, settings: Any) -> Any:
            return settings.replace(bandwidth_mib=10)

        def observe_transfer(self, instance: str) -> Observed:
            """The world's record of the transfer: where the simulated hypervisor
            sent the data, not what the driver reported."""
            done = [t for t in self.world.history if t.instance == instance]
            if not done:
                return super().observe_transfer(instance)
            t = done[-1]
            settings: Any = t.settings
            data = address.parse_host(t.data_host)
            return Observed(
                data_address=data.host, data_port=data.port,
                control_host=address.parse_host(t.control_host).host,
                tunnelled=bool(settings.tunnelled), tls=bool(settings.native_tls),
                postcopy=t.postcopy, disks_copied=t.block and t.disk_processed > 0,
                unobserved={} if data.port is not None else {
                    "data_port": "the fake world's data URIs name no port"})

        def inject_failure(self, role: str, step: str) -> Optional[str]:
            host = self.roles[role]
            self.world.fail(host, step, exception.HypervisorUnavailable(
                host=host, reason="failure injected into %s by the conformance kit" % step))
            return None

        def break_migration_stream(self, instance: str) -> bool:
            dest = self.roles[DESTINATION]
            self.world.set_link(dest, "migration", False)
            self.world.at(self.world.clock.now() + 30.0,
                          lambda: self.world.set_link(dest, "migration", True))
            return True

    return FakeAdapter
