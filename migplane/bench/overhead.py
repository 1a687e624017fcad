"""migplane's own costs: the URI policy, the data contract, the monitor loop.

* :func:`micro` times :func:`migplane.core.uri.resolve` and a
  :class:`~migplane.core.migrate_data.MigrateData` round trip through
  ``to_primitive`` / JSON / ``from_primitive`` (what every step of the flow
  does), in operations per second, as the median of a few batches.
* :class:`MonitorMeter` subscribes to a :class:`~migplane.core.flow.LiveMigration`
  and reads the CPU time of the flow's own thread (``time.thread_time``) when
  the transfer starts and when the monitor loop ends: the CPU migplane spends
  watching one running migration (its polls of the hypervisor's job
  statistics, downtime steps, events), against that phase's wall time.
"""

import json
import time

from migplane.bench import stats
from migplane.core import capabilities as caps_mod
from migplane.core import events
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import uri as uri_mod

#: What a libvirt-like driver declares; the policy's most complete path.
CAPABILITIES = caps_mod.Capabilities(
    schemes=("tcp", "tls", "ssh", "unix"), data_uri=True, listen_address=True,
    disks_uri=True, tls_destination=True, tunnelled=True, native_tls=True,
    post_copy=True, auto_converge=True, parallel_connections=True, block_migration=True)


def sample_migrate_data(split=True):
    if split:
        return md.MigrateData(
            dest_hostname="host-b", block_migration=False,
            driver_data={"graphics_listen": "192.0.2.12", "serial_listen": "198.51.100.12"},
            target_connect_addr="198.51.100.12", inbound_addr_source=md.INBOUND_FROM_OPTION,
            listen_addrs={md.LISTEN_MIGRATION: "198.51.100.12"})
    return md.MigrateData(dest_hostname="host-b", block_migration=False)


def _rate(fn, batch, batches, clock):
    """Median operations per second of ``batches`` runs of ``batch`` calls."""
    rates = []
    for _ in range(batches):
        t0 = clock()
        for _ in range(batch):
            fn()
        elapsed = clock() - t0
        if elapsed > 0:
            rates.append(batch / elapsed)
    return stats.spread(rates)


def micro(batch=2000, batches=5, clock=time.perf_counter):
    """Operations per second of the pure parts migplane adds to every migration."""
    settings = settings_mod.MigrationSettings()
    split = sample_migrate_data(split=True)
    legacy = sample_migrate_data(split=False)

    def resolve_split():
        uri_mod.resolve(settings, split, CAPABILITIES, dest_hostname="host-b",
                        driver="libvirt")

    def resolve_legacy():
        uri_mod.resolve(settings, legacy, CAPABILITIES, dest_hostname="host-b",
                        driver="libvirt")

    def round_trip():
        md.MigrateData.from_primitive(json.loads(json.dumps(split.to_primitive())))

    def round_trip_legacy_peer():
        # what an older (1.0) peer is sent and what it sends back
        md.MigrateData.from_primitive(json.loads(json.dumps(
            split.to_primitive(target_version="1.0"))))

    results = {}
    for name, fn in (("uri_resolve_split", resolve_split),
                     ("uri_resolve_legacy", resolve_legacy),
                     ("migrate_data_round_trip", round_trip),
                     ("migrate_data_round_trip_v1_0", round_trip_legacy_peer)):
        fn()  # warm up and fail early
        spread = _rate(fn, batch, batches, clock)
        results[name] = {"ops_per_s": spread["median"], "min_ops_per_s": spread["min"],
                         "max_ops_per_s": spread["max"], "batches": batches,
                         "batch": batch}
    return results


class MonitorMeter:
    """CPU time of a flow's thread while it monitors the running transfer.

    Subscribe it to a :class:`LiveMigration` before ``run()``; listeners run
    in the flow's thread, so ``time.thread_time()`` read in them is the CPU
    time of that very thread. Read :meth:`result` after ``run()``.
    """

    def __init__(self, thread_time=time.thread_time, clock=time.monotonic):
        self._thread_time = thread_time
        self._clock = clock
        self.start_cpu = self.start_wall = None
        self.end_cpu = self.end_wall = None
        self.run_cpu0 = self.run_wall0 = None
        self.polls = 0

    def __call__(self, event):
        if event.kind == events.QUEUED and self.run_cpu0 is None:
            self.run_cpu0, self.run_wall0 = self._thread_time(), self._clock()
        elif event.kind == events.TRANSFER_STARTED:
            self.start_cpu, self.start_wall = self._thread_time(), self._clock()
        elif event.kind == events.PROGRESS and self.start_cpu is not None:
            self.polls += 1
        elif self.start_cpu is not None and self.end_cpu is None and (
                event.kind in (events.COMPLETED, events.FAILED, events.ROLLED_BACK)
                or (event.kind == events.STEP and event.message in (
                    "post_live_migration_at_destination", "rollback"))):
            self.end_cpu, self.end_wall = self._thread_time(), self._clock()

    def result(self):
        if self.start_cpu is None or self.end_cpu is None:
            return None
        cpu = self.end_cpu - self.start_cpu
        wall = self.end_wall - self.start_wall
        return {
            "monitor_cpu_s": cpu,
            "monitor_wall_s": wall,
            "monitor_cpu_share": stats.ratio(cpu, wall),
            "polls": self.polls,
            "cpu_ms_per_poll": (cpu * 1000.0 / self.polls) if self.polls else None,
        }

    def flow_cpu(self):
        """CPU seconds of the flow's thread from QUEUED to the end of monitoring."""
        if self.run_cpu0 is None or self.end_cpu is None:
            return None
        return self.end_cpu - self.run_cpu0
