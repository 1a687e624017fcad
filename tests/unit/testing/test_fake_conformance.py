"""The fake driver passes the conformance kit it is the model for."""

from migplane.testing import conformance


class TestFakeDriverConformance(conformance.DriverConformance):
    driver_name = "fake"
    adapter_class = conformance.fake_adapter_class()


# -- the kit fails drivers that break the contract ------------------------------------

import pytest  # noqa: E402

from migplane.core import driver as driver_mod  # noqa: E402
from migplane.core import exception  # noqa: E402
from migplane.core import migrate_data as md  # noqa: E402
from migplane.drivers.fake import driver as fake_driver  # noqa: E402


class IgnoresInboundAddress(fake_driver.FakeDriver):
    def pre_live_migration(self, instance, migrate_data):
        super().pre_live_migration(instance, migrate_data)
        return md.MigrateData(dest_hostname=self.hostname)


class LeavesPreparedState(fake_driver.FakeDriver):
    def rollback_live_migration_at_destination(self, instance, migrate_data):
        pass


class ForgetsFinishedJobs(fake_driver.FakeDriver):
    def get_job_progress(self, instance):
        progress = super().get_job_progress(instance)
        if progress.finished:
            self.world.transfers.pop(instance, None)
        return progress


class SaysDone(fake_driver.FakeDriver):
    def get_job_progress(self, instance):
        progress = super().get_job_progress(instance)
        return driver_mod.JobProgress(state="done") if progress.finished else progress


@pytest.mark.parametrize("cls, check, error", [
    (IgnoresInboundAddress, "test_pre_live_migration_sets_target_connect_addr",
     AssertionError),
    (LeavesPreparedState, "test_rollback_of_a_migration_that_never_started_is_harmless",
     AssertionError),
    (ForgetsFinishedJobs, "test_steps_return_their_types_and_the_job_stays_finished",
     exception.NoActiveMigration),
    (SaysDone, "test_steps_return_their_types_and_the_job_stays_finished",
     AssertionError),
])
def test_the_kit_catches_a_broken_driver(cls, check, error):
    kit = TestFakeDriverConformance()
    adapter = kit.adapter_class()
    adapter.setup()
    try:
        def load(role, inbound=True):
            return cls(adapter.host_conf(role, inbound))
        source, destination = load("source"), load("destination")
        guest = adapter.create_guest()
        if cls is LeavesPreparedState:  # something to leave behind
            destination.pre_live_migration(guest, md.MigrateData(dest_hostname="host-b"))
        with pytest.raises(error):
            getattr(kit, check)(adapter, source, destination, guest)
    finally:
        adapter.cleanup()
