"""Drivers that each break one clause of the driver contract.

Every one is the fake driver (which passes the conformance kit) with one
point of the contract violated, as a driver author might get it wrong. The
tests beside this package check that the kit fails each of them, with a
message that shows the values and says what the contract requires.
"""

import dataclasses
import threading

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import migrate_data as md
from migplane.drivers.fake import driver as fake_driver

#: Seconds a hung step blocks at most (the kit's deadline ends the wait first).
HANG_S = 60.0


class DescribesAsDict(fake_driver.FakeDriver):
    """``describe()`` answers a dict instead of a DriverInfo."""

    def describe(self):
        return super().describe().to_dict()


class HonoursNoCapability(fake_driver.FakeDriver):
    """Declares tunnelled, TLS, post-copy and block migration; does none of them."""

    def live_migration(self, instance, migrate_data, uris, settings):
        plain = settings.replace(tunnelled=False, native_tls=False, permit_post_copy=False)
        if settings.tunnelled:  # sends the data directly, to the inbound address
            uris = dataclasses.replace(uris, control_uri="qemu+tcp://%s/system"
                                       % migrate_data.dest_hostname,
                                       data_uri="tcp://%s" % migrate_data.target_connect_addr)
        super().live_migration(instance, migrate_data.replace(block_migration=False),
                               uris, plain)

    def force_complete(self, instance, post_copy):
        super().force_complete(instance, post_copy=False)  # pauses instead


class AcceptsUndeclared(fake_driver.FakeDriver):
    """Declares no tunnelling, TLS, post-copy or block migration, yet runs a
    migration asking for any of them (the core refuses first, so only a kit
    that calls the driver itself sees it)."""

    def describe(self):
        info = super().describe()
        caps = dataclasses.replace(info.capabilities, tunnelled=False, native_tls=False,
                                   post_copy=False, block_migration=False)
        return driver_mod.DriverInfo(name=info.name, version=info.version,
                                     capabilities=caps)


class UntypedCheckFailure(fake_driver.FakeDriver):
    """A failing destination check raises a bare RuntimeError (other steps typed)."""

    def check_can_live_migrate_destination(self, instance, block_migration=False):
        try:
            return super().check_can_live_migrate_destination(instance, block_migration)
        except exception.MigplaneError as err:
            raise RuntimeError("check failed: %s" % err)


class NoTargetConnectAddr(fake_driver.FakeDriver):
    """``pre_live_migration`` ignores ``my_live_migration_ip``."""

    def pre_live_migration(self, instance, migrate_data):
        super().pre_live_migration(instance, migrate_data)
        return md.MigrateData(dest_hostname=self.hostname)


class BulkOnManagement(fake_driver.FakeDriver):
    """Sends the bulk stream to the host name, whatever the data URI says."""

    def live_migration(self, instance, migrate_data, uris, settings):
        super().live_migration(instance, migrate_data,
                               dataclasses.replace(uris, data_uri=None), settings)


class FinishedJobRunsAgain(fake_driver.FakeDriver):
    """A finished job goes back to running."""

    def get_job_progress(self, instance):
        progress = super().get_job_progress(instance)
        if progress.finished and getattr(self, "said_finished", False):
            return dataclasses.replace(progress, state=driver_mod.JOB_RUNNING)
        self.said_finished = progress.finished
        return progress


class SecondSourceRollbackRaises(fake_driver.FakeDriver):
    """``rollback_live_migration_at_source`` is not idempotent."""

    def rollback_live_migration_at_source(self, instance, migrate_data):
        if getattr(self, "rolled_back", False):
            raise exception.MigrationError(instance=instance, step="rollback",
                                           reason="nothing to roll back")
        self.rolled_back = True
        super().rollback_live_migration_at_source(instance, migrate_data)


class LeavesPreparedState(fake_driver.FakeDriver):
    """``rollback_live_migration_at_destination`` removes nothing."""

    def rollback_live_migration_at_destination(self, instance, migrate_data):
        pass


class ForgetsFinishedJobs(fake_driver.FakeDriver):
    """Once it said a job finished, it knows of no job any more."""

    def get_job_progress(self, instance):
        progress = super().get_job_progress(instance)
        if progress.finished:
            self.world.transfers.pop(instance, None)
        return progress


class IgnoresAbort(fake_driver.FakeDriver):
    """``abort_job`` returns without cancelling anything."""

    def abort_job(self, instance):
        self._transfer(instance)


class UnknownState(fake_driver.FakeDriver):
    """A finished job reports a state of its own invention."""

    def get_job_progress(self, instance):
        progress = super().get_job_progress(instance)
        return dataclasses.replace(progress, state="done") if progress.finished \
            else progress


class _Hangs(fake_driver.FakeDriver):
    """Steps named in ``hangs`` block (outside the world's lock, as a daemon that
    stopped answering) until :data:`RELEASE` is set."""

    hangs = ()

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in type(self).hangs:
            def hung(*args, **kwargs):
                RELEASE.wait(HANG_S)
                return attr(*args, **kwargs)
            return hung
        return attr


#: Set to release every hung step (the tests set it when they are done).
RELEASE = threading.Event()


class HangsInPreLiveMigration(_Hangs):
    hangs = ("pre_live_migration",)


class HangsInGetJobProgress(_Hangs):
    hangs = ("get_job_progress",)


class HangsInRollback(_Hangs):
    hangs = ("rollback_live_migration_at_destination",)
