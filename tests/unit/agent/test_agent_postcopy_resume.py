"""``POST /v1/migrations/<id>/resume``: a post-copy left paused, resumed by hand."""

import pytest

from migplane.agent import testing
from migplane.core import events
from migplane.core import exception
from tests.unit.agent.test_agent_migrations import start
from tests.unit.agent.test_agent_migrations import wait_status

MIG_B = "198.51.100.12"


def paused_post_copy(world, start_agent, client):
    """A post-copy whose migration link broke, left paused by the recovery's
    deadline: ``(source agent, record)``."""
    world.add_guest("host-a", "vm1", memory_mib=128, dirty_mib_s=32, working_set_mib=48)
    a = start_agent("host-a", strategy="adaptive", bandwidth=16, permit_post_copy=True)
    a.agent.driver.conf.set_override("postcopy_stall_timeout", 2.0, group="driver_fake")
    a.agent.driver.conf.set_override("postcopy_recovery_timeout", 5.0, group="driver_fake")
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    cut = []

    def strike():
        transfer = world.transfers.get("vm1")
        if transfer is not None and transfer.postcopy and not cut:
            cut.append(world.clock.now())
            world.set_link("host-b", "migration", False)
        elif not cut:
            world.at(world.clock.now() + 0.1, strike)
    world.at(0.0, strike)
    record = start(client(a), b)
    paused = wait_status(client(a), record["id"], events.FINISHED, timeout=60)
    assert paused["status"] == events.FAILED and "migplane resume" in paused["error"]
    assert world.hosts["host-a"].guests["vm1"].state == "paused"
    assert world.defined_on("vm1") == ["host-a", "host-b"]
    return a, record


def test_a_paused_post_copy_is_resumed_by_an_operator_and_finished(world, start_agent,
                                                                   client):
    a, record = paused_post_copy(world, start_agent, client)
    world.set_link("host-b", "migration", True)
    answer = client(a).post("/v1/migrations/%s/resume" % record["id"])
    assert answer["status"] == events.RUNNING
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == events.COMPLETED, done["error"]
    assert world.where("vm1") == ["host-b"] and world.defined_on("vm1") == ["host-b"]


def test_resume_is_refused_for_a_migration_that_did_not_pause(pair, world, client):
    a, b = pair
    done = testing.wait_for(client(a), start(client(a), b)["id"])
    assert done["status"] == events.COMPLETED
    with pytest.raises(exception.NoActiveMigration):
        client(a).post("/v1/migrations/%s/resume" % done["id"])


def test_a_resume_that_pauses_again_keeps_the_postcopy_paused_verdict(world, start_agent,
                                                                      client):
    a, record = paused_post_copy(world, start_agent, client)
    # the link is still down: the resumed recovery passes its deadline again
    answer = client(a).post("/v1/migrations/%s/resume" % record["id"])
    assert answer["status"] == events.RUNNING
    done = testing.wait_for(client(a), record["id"])
    assert done["status"] == events.FAILED
    assert done["result"]["verdict"] == events.VERDICT_POSTCOPY_PAUSED, done["result"]
    assert world.hosts["host-a"].guests["vm1"].state == "paused"
    assert world.defined_on("vm1") == ["host-a", "host-b"]
