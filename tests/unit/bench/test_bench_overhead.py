"""migplane's own costs: the micro-benchmarks and the monitor-loop CPU meter."""

import itertools

from migplane.bench import overhead
from migplane.core import events
from migplane.core import migrate_data as md


def test_micro_reports_positive_rates():
    out = overhead.micro(batch=50, batches=2)
    assert set(out) == {"uri_resolve_split", "uri_resolve_legacy",
                        "migrate_data_round_trip", "migrate_data_round_trip_v1_0"}
    for m in out.values():
        assert m["ops_per_s"] > 0
        assert m["min_ops_per_s"] <= m["ops_per_s"] <= m["max_ops_per_s"]
        assert m["batch"] == 50 and m["batches"] == 2


def test_sample_migrate_data_is_valid_both_ways():
    split = overhead.sample_migrate_data(split=True)
    assert split.uses_split_plane
    assert md.MigrateData.from_primitive(split.to_primitive()) == split
    assert not overhead.sample_migrate_data(split=False).uses_split_plane


def _event(kind, message=None):
    return events.MigrationEvent(kind=kind, migration_id="m", instance="vm1", elapsed=0.0,
                                 message=message)


def test_monitor_meter_measures_the_monitor_phase_only():
    cpu = itertools.count(0.0, 0.001)     # each read: 1 ms more CPU
    wall = itertools.count(100.0, 1.0)    # each read: 1 s later
    meter = overhead.MonitorMeter(thread_time=lambda: next(cpu), clock=lambda: next(wall))
    meter(_event(events.QUEUED))
    meter(_event(events.PROGRESS))        # before the transfer: not a monitor poll
    meter(_event(events.TRANSFER_STARTED))
    for _ in range(4):
        meter(_event(events.PROGRESS))
    meter(_event(events.STEP, "post_live_migration_at_destination"))
    meter(_event(events.COMPLETED))       # after the end: ignored
    res = meter.result()
    assert res["polls"] == 4
    assert res["monitor_cpu_s"] == 0.001 * 1       # second read minus first
    assert res["monitor_wall_s"] == 1.0
    assert res["cpu_ms_per_poll"] == 0.25
    assert meter.flow_cpu() == 0.002


def test_monitor_meter_without_a_transfer():
    meter = overhead.MonitorMeter()
    meter(_event(events.QUEUED))
    meter(_event(events.FAILED))
    assert meter.result() is None
    assert meter.flow_cpu() is None


def test_monitor_meter_on_a_real_flow(world, drivers, make_migration):
    """With the fake driver: the meter sees the polls of a whole migration."""
    world.add_guest("host-a", "vm1", memory_mib=512, dirty_mib_s=10)
    source, destination = drivers
    migration = make_migration(source, destination)
    meter = overhead.MonitorMeter()
    migration.subscribe(meter)
    result = migration.run()
    assert result.status == "completed"
    res = meter.result()
    assert res is not None and res["polls"] >= 1
    assert res["monitor_cpu_s"] >= 0
