"""A broken post-copy, in the flow with the fake driver (simulated time).

The busy guest of the convergence tests, with post-copy permitted so that it
switches after the first pass; the fault strikes as the flow reports the
switch. Whatever breaks, nothing destroys, undefines or resumes either half:
the driver recovers the stream or the migration ends paused in post-copy.
"""

import pytest

from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import units
from migplane.drivers.fake import world as world_mod

MiB = units.MiB
A, B = "host-a", "host-b"
B_MIG4 = "198.51.100.12"


def kinds(migration):
    return [e.kind for e in migration.events]


@pytest.fixture
def setup(world, make_driver, make_migration):
    guest = world.add_guest(A, "vm1", memory_mib=128, dirty_mib_s=32, working_set_mib=48)

    def make(on_switch, recovery_timeout=120.0, **options):
        source = make_driver(A, strategy="adaptive", bandwidth=16, permit_post_copy=True,
                             **options)
        source.conf.set_override("postcopy_stall_timeout", 5.0, group="driver_fake")
        source.conf.set_override("postcopy_recovery_timeout", recovery_timeout,
                                 group="driver_fake")
        migration = make_migration(source, make_driver(B, my_live_migration_ip=B_MIG4))

        def strike(event):
            if event.kind == events.POST_COPY_STARTED:
                on_switch(world.clock.now())
        migration.subscribe(strike)
        return source, migration

    return guest, make


def link_down(world, seconds, plane=world_mod.MIGRATION):
    def down(now):
        world.set_link(B, plane, False)
        world.at(now + seconds, lambda: world.set_link(B, plane, True))
    return down


def test_a_stalled_post_copy_is_recovered_when_the_link_returns(world, setup):
    guest, make = setup
    boot_id = guest.boot_id
    _, migration = make(link_down(world, 30.0))
    result = migration.run()
    assert result.status == events.COMPLETED and world.where("vm1") == [B]
    assert world.hosts[B].guests["vm1"].boot_id == boot_id
    transfer = world.history[-1]
    assert (transfer.breaks, transfer.resumes) == (1, 1)
    seen = kinds(migration)
    order = [events.POST_COPY_STARTED, events.POST_COPY_RECOVERING,
             events.POST_COPY_RECOVERED, events.POST_COPY_ENDED]
    assert [k for k in seen if k in order] == order
    started = next(e for e in migration.events if e.kind == events.POST_COPY_STARTED)
    assert "loses the guest" in started.message and "about" in started.message
    assert events.ROLLED_BACK not in seen


def test_a_broken_stream_is_recovered_when_the_destination_daemon_returns(world, setup):
    def kill(now):
        world.kill_daemon(B)
        world.at(now + 20.0, lambda: world.restart_daemon(B))
    _, migration = setup[1](kill)
    result = migration.run()
    assert result.status == events.COMPLETED and world.where("vm1") == [B]
    assert world.history[-1].breaks == 1


def test_after_the_deadline_both_halves_stay_paused_then_resume_by_hand(world, setup):
    _, make = setup
    source, migration = make(link_down(world, 600.0), recovery_timeout=60.0)
    with pytest.raises(exception.PostCopyPaused) as caught:
        migration.run()
    assert "migplane resume %s" % migration.id in str(caught.value)
    assert caught.value.result.running_on is None
    # nothing destroyed, undefined or resumed: paused source, destination kept
    assert world.hosts[A].guests["vm1"].state == "paused"
    assert world.hosts[B].guests["vm1"].state == "running"
    assert world.defined_on("vm1") == [A, B]
    assert events.ROLLED_BACK not in kinds(migration)
    assert source.get_job_progress("vm1").state == driver_mod.JOB_POSTCOPY_PAUSED
    with pytest.raises(exception.MigrationError):
        source.abort_job("vm1")   # post-copy cannot be aborted
    # the link comes back; the operator resumes it
    world.clock.sleep(600.0)
    source.resume_postcopy("vm1")
    source.resume_postcopy("vm1")   # a second call joins the recovery
    states = []
    for _ in range(10000):
        states.append(source.get_job_progress("vm1").state)
        if states[-1] == driver_mod.JOB_COMPLETED:
            break
        world.clock.sleep(0.5)
    assert states[-1] == driver_mod.JOB_COMPLETED
    assert world.hosts[A].guests["vm1"].state == "shutoff"


def test_resume_refuses_a_migration_that_is_not_paused(world, setup):
    source, migration = setup[1](lambda now: None)
    migration.run()
    with pytest.raises(exception.NoActiveMigration):
        source.resume_postcopy("vm1")
