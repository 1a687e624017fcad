"""What the settler reads from a host (migplane.core.settling): a host that
cannot answer, for whatever reason (a step that timed out included), is
unreachable; a job state no driver may report is unknown, never waited for."""

import pytest

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import settle
from migplane.core import settling


class Host:
    hostname = "host-x"

    def __init__(self, info=None, error=None, progress=None):
        self.info, self.error, self.progress = info, error, progress

    def get_instance_info(self, instance):
        if self.error is not None:
            raise self.error
        return self.info

    def get_job_progress(self, instance):
        if self.error is not None:
            raise self.error
        return self.progress


class TimedOut(exception.MigplaneError):
    msg_fmt = "step %(step)s on %(host)s did not answer in time"


@pytest.mark.parametrize("error", [
    exception.HypervisorUnavailable(host="host-x", reason="libvirtd down"),
    TimedOut(step="get_instance_info", host="host-x"),
    RuntimeError("a driver bug"),
])
def test_a_host_that_cannot_answer_is_unreachable(error):
    assert settling.side(Host(error=error), "vm1").state == settle.UNREACHABLE


def test_absent_and_reasons_are_read_as_reported():
    gone = Host(error=exception.InstanceNotFound(instance="vm1", host="host-x"))
    assert settling.side(gone, "vm1") == settle.Side(settle.ABSENT)
    held = Host(driver_mod.InstanceInfo("vm1", "paused", 1, reason="held"))
    assert settling.side(held, "vm1") == settle.Side(settle.PAUSED, "held")
    incoming = Host(driver_mod.InstanceInfo("vm1", "incoming", 1))
    assert settling.side(incoming, "vm1") == settle.Side(settle.PAUSED, "migration")
    odd = Host(driver_mod.InstanceInfo("vm1", "unknown", 1))
    assert settling.side(odd, "vm1").state == settle.UNREACHABLE


@pytest.mark.parametrize("progress", [driver_mod.JobProgress(state="exploded"), "junk"])
def test_a_job_state_no_driver_may_report_is_unknown(progress):
    assert settling.job_state(Host(progress=progress), "vm1") == (None, None)


def test_a_job_that_cannot_be_read_is_unknown():
    host = Host(error=TimedOut(step="get_job_progress", host="host-x"))
    assert settling.job_state(host, "vm1") == (None, None)


def test_a_post_copy_whose_hosts_cannot_answer_is_asked_again_while_the_settler_may():
    """Both daemons restarting under a post-copy: a settler that stopped at
    the first answer left the migration unresolved though the daemons were
    back a second later; it waits (nothing acts) and asks again."""
    down = exception.HypervisorUnavailable(host="host-x", reason="libvirtd restarting")
    asked = []

    class Restarting(Host):
        def get_instance_info(self, instance):
            asked.append(instance)
            return super().get_instance_info(instance)

    source, destination = Restarting(error=down), Host(error=down)
    now = [0.0]
    settler = settling.Settler("vm1", source, destination, None, lambda: now[0],
                               lambda s: now.__setitem__(0, now[0] + s), poll_interval=1.0)
    decision = settler.run(driver_mod.JOB_POSTCOPY_RECOVERING, 5.0, postcopy=True)
    assert decision.action == settle.WAIT and not decision.final
    assert len(asked) == 6 and not settler.done
