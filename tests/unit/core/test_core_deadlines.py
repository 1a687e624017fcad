"""Step deadlines (migplane.core.deadlines): a driver that hangs cannot hang the flow.

The hangs are real (a step blocks on an event until the test releases it);
the deadlines are small so that a hang becomes a failure quickly. Nothing
here asserts how long anything took: only the outcome, the typed error
naming the step and the host.
"""

import logging
import threading

import pytest

from migplane.core import deadlines
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import settings as settings_mod
from migplane.drivers.fake import driver as fake_driver

A, B = "host-a", "host-b"
#: A deadline that turns a hang into a failure soon, and that a fake step which
#: does not hang meets even on a loaded machine (0.2 s did not, beside a lab).
SHORT = 1.0
#: Seconds a test waits for a flow that must end; a hang would exceed it.
GENEROUS = 60.0


class Hangs(fake_driver.FakeDriver):
    """The fake driver, but the steps in ``hang`` block until ``release`` is set
    (outside the world's lock, as a daemon that stopped answering)."""

    hang = ()

    def __init__(self, conf):
        super().__init__(conf)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in type(self).hang:
            def hung(*args, **kwargs):
                self.calls.append(name)
                self.entered.set()
                self.release.wait(GENEROUS)
                return attr(*args, **kwargs)
            return hung
        return attr


def hanging(*steps):
    return type("Hangs_" + "_".join(steps), (Hangs,), {"hang": steps})


@pytest.fixture
def load(host_conf):
    made = []

    def make(cls, host, **overrides):
        drv = cls(host_conf(host, **overrides))
        made.append(drv)
        return drv

    yield make
    for drv in made:  # never leave a worker blocked after the test
        if isinstance(drv, Hangs):
            drv.release.set()


@pytest.fixture
def guest(world):
    world.add_guest(A, "vm1", memory_mib=256, dirty_mib_s=2)
    return "vm1"


def deadline(drv, seconds=SHORT):
    return drv.settings.migration.replace(step_deadline=seconds)


def run_failing(migration):
    with pytest.raises(exception.MigplaneError) as info:
        migration.run()
    return info.value


def test_a_hung_destination_step_ends_in_the_typed_timeout(world, load, guest,
                                                           make_migration):
    source = load(fake_driver.FakeDriver, A)
    dest = load(hanging("pre_live_migration"), B)
    err = run_failing(make_migration(source, dest, settings=deadline(source)))
    assert isinstance(err, exception.StepTimedOut), err
    assert (err.step, err.host) == ("pre_live_migration", B)
    assert "pre_live_migration" in str(err) and B in str(err)
    assert "step_deadline" in str(err)
    assert err.result.status == "failed"
    assert world.where(guest) == [A]


@pytest.mark.parametrize("host, step", [
    (B, "check_can_live_migrate_destination"),
    (A, "check_can_live_migrate_source"),
    (A, "get_instance_info"),
    (A, "live_migration"),
    (A, "get_job_progress"),
])
def test_every_step_is_bounded(world, load, guest, make_migration, host, step):
    cls = {host: hanging(step)}
    source = load(cls.get(A, fake_driver.FakeDriver), A)
    dest = load(cls.get(B, fake_driver.FakeDriver), B)
    err = run_failing(make_migration(source, dest, settings=deadline(source)))
    assert isinstance(err, exception.StepTimedOut), err
    assert (err.step, err.host) == (step, host)


def test_abort_ends_a_flow_stuck_in_a_step_without_waiting_for_the_deadline(
        world, load, guest, make_migration):
    source = load(fake_driver.FakeDriver, A)
    dest = load(hanging("pre_live_migration"), B)
    # A deadline the test would never see the end of: only the abort can end it.
    migration = make_migration(source, dest, settings=deadline(source, 3600))
    outcome = {}

    def run():
        try:
            migration.run()
        except exception.MigplaneError as err:
            outcome["error"] = err

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    assert dest.entered.wait(GENEROUS)
    migration.abort()
    runner.join(GENEROUS)
    assert not runner.is_alive(), "abort() did not end a flow stuck in a step"
    err = outcome["error"]
    assert isinstance(err, exception.StepTimedOut)
    assert (err.step, err.host) == ("pre_live_migration", B)
    assert "abort" in str(err)


def test_a_step_that_answers_normally_is_not_cut_short_by_an_abort():
    aborted = threading.Event()
    release = threading.Event()

    class Slow:
        hostname = "host-x"

        def check(self):
            aborted.set()  # the abort arrives while the step runs...
            release.wait(GENEROUS)
            return "answer"

    wrapped = deadlines.StepDeadlines(Slow(), 3600, aborted)
    threading.Timer(0.05, release.set).start()  # ...and it answers soon after
    assert wrapped.check() == "answer"


def test_a_late_answer_is_ignored_and_logged(caplog):
    release, done = threading.Event(), threading.Event()

    class Late:
        hostname = "host-x"

        def get_instance_info(self, instance):
            release.wait(GENEROUS)
            done.set()
            return driver_mod.InstanceInfo(name=instance, state="running",
                                           memory_bytes=1)

    wrapped = deadlines.StepDeadlines(Late(), SHORT)
    with pytest.raises(exception.StepTimedOut) as info:
        wrapped.get_instance_info("vm1")
    assert (info.value.step, info.value.host) == ("get_instance_info", "host-x")
    with caplog.at_level(logging.WARNING, logger="migplane.core.deadlines"):
        release.set()
        assert done.wait(GENEROUS)
        for _ in range(100):  # the warning follows the answer in the worker
            if "is ignored" in caplog.text:
                break
            threading.Event().wait(0.05)
    assert "get_instance_info on host-x answered" in caplog.text
    assert "is ignored" in caplog.text


def test_answers_and_typed_errors_pass_through_unchanged():
    class Plain:
        hostname = "host-x"
        settings = "not a method"

        def answer(self, value, twice=False):
            return value * 2 if twice else value

        def refuse(self, instance):
            raise exception.InstanceNotFound(instance=instance, host=self.hostname)

    wrapped = deadlines.StepDeadlines(Plain(), SHORT)
    assert wrapped.answer(3, twice=True) == 6
    assert wrapped.answer.__name__ == "answer"
    assert wrapped.settings == "not a method" and wrapped.hostname == "host-x"
    with pytest.raises(exception.InstanceNotFound, match="vm9"):
        wrapped.refuse("vm9")
    # wrapping a wrapped driver does not stack the workers
    assert deadlines.StepDeadlines(wrapped, 1).driver is wrapped.driver


def test_an_unknown_job_state_fails_at_once_after_aborting_the_job(
        world, load, guest, make_migration):
    class SaysDone(fake_driver.FakeDriver):
        polls = 0
        aborts = 0

        def get_job_progress(self, instance):
            SaysDone.polls += 1
            progress = super().get_job_progress(instance)
            return driver_mod.JobProgress(state="done", postcopy=progress.postcopy)

        def abort_job(self, instance):
            SaysDone.aborts += 1
            return super().abort_job(instance)

    source = load(SaysDone, A)
    dest = load(fake_driver.FakeDriver, B)
    err = run_failing(make_migration(source, dest))
    assert isinstance(err, exception.DriverContractError)
    assert "'done'" in str(err) and "get_job_progress" in str(err) and "fake" in str(err)
    # the monitor's poll and the failure path's one look, nothing like 600 polls
    assert SaysDone.polls <= 3, SaysDone.polls
    assert SaysDone.aborts == 1
    assert world.where(guest) == [A]
    assert guest not in world.transfers or world.transfers[guest].state != "running"


def test_the_step_deadline_is_an_option_checked_at_load(host_conf):
    conf = host_conf(A, step_deadline=7.5)
    assert settings_mod.load(conf).migration.step_deadline == 7.5
    with pytest.raises(exception.ConfigError, match="step_deadline"):
        settings_mod.MigrationSettings(step_deadline=0)
