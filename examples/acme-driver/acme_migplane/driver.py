"""The ``acme`` migration driver: steps recorded in an audit trail.

Shows what a third-party driver needs and nothing more: subclass
``MigrationDriver``, register its own options on the ``conf`` it is given,
answer ``describe()``, implement the steps, raise the core's typed errors,
and declare an entry point in ``migplane.drivers``.
"""

import functools
import json
import threading

from oslo_config import cfg

from migplane.core import driver
from migplane.drivers.fake import driver as fake_driver

GROUP = "driver_acme"

acme_opts = [
    cfg.StrOpt("audit_log", default=None,
               help="File to append one JSON line to per migration step run on "
                    "this host; unset: keep the trail in memory only."),
]


def list_opts():
    return [(GROUP, acme_opts)]


def _audited(method):
    @functools.wraps(method)
    def step(self, instance, *args, **kwargs):
        self._record(method.__name__, instance)
        return method(self, instance, *args, **kwargs)
    return step


class AcmeDriver(driver.MigrationDriver):
    """Migrates guests of the simulated world, recording every step."""

    def __init__(self, conf):
        super().__init__(conf)
        conf.register_opts(acme_opts, group=GROUP)
        self.audit_log = conf[GROUP].audit_log
        self.trail = []
        self._lock = threading.Lock()
        # the "hypervisor": the simulated world behind migplane's fake driver
        self._hv = fake_driver.FakeDriver(conf)

    def _record(self, step, instance):
        entry = {"host": self.hostname, "step": step, "instance": instance}
        with self._lock:
            self.trail.append(entry)
            if self.audit_log:
                with open(self.audit_log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")

    def describe(self):
        info = self._hv.describe()
        return driver.DriverInfo(name="acme", version="0.1.0",
                                 capabilities=info.capabilities)

    def local_addresses(self):
        return self._hv.local_addresses()

    def flow_timing(self):
        return self._hv.flow_timing()  # simulated time, like the world it drives

    @_audited
    def get_instance_info(self, instance):
        return self._hv.get_instance_info(instance)

    @_audited
    def check_can_live_migrate_destination(self, instance, block_migration=False):
        return self._hv.check_can_live_migrate_destination(instance, block_migration)

    @_audited
    def pre_live_migration(self, instance, migrate_data):
        self._hv.pre_live_migration(instance, migrate_data)
        # the core's helper applies my_live_migration_ip the same way for everyone
        return self.inbound_migrate_data(migrate_data)

    @_audited
    def post_live_migration_at_destination(self, instance, migrate_data):
        return self._hv.post_live_migration_at_destination(instance, migrate_data)

    @_audited
    def rollback_live_migration_at_destination(self, instance, migrate_data):
        return self._hv.rollback_live_migration_at_destination(instance, migrate_data)

    @_audited
    def check_can_live_migrate_source(self, instance, migrate_data):
        return self._hv.check_can_live_migrate_source(instance, migrate_data)

    @_audited
    def live_migration(self, instance, migrate_data, uris, settings):
        return self._hv.live_migration(instance, migrate_data, uris, settings)

    def get_job_progress(self, instance):  # polled: not audited
        return self._hv.get_job_progress(instance)

    @_audited
    def abort_job(self, instance):
        return self._hv.abort_job(instance)

    @_audited
    def force_complete(self, instance, post_copy):
        return self._hv.force_complete(instance, post_copy)

    @_audited
    def set_max_downtime(self, instance, downtime_ms):
        return self._hv.set_max_downtime(instance, downtime_ms)

    @_audited
    def post_live_migration_at_source(self, instance, migrate_data):
        return self._hv.post_live_migration_at_source(instance, migrate_data)

    @_audited
    def rollback_live_migration_at_source(self, instance, migrate_data):
        return self._hv.rollback_live_migration_at_source(instance, migrate_data)
