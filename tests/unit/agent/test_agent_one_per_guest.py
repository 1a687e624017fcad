"""One active migration per guest on a source agent (issue 10, part 3)."""

import concurrent.futures
import threading
import time

from migplane.agent import errors
from migplane.agent import testing
from migplane.core import exception

MIG_B = "198.51.100.12"
N = 30


def _post(c, dest, instance="vm1", retry=False, **body):
    """``(status, record or message)``; ``retry`` a connection the server reset
    (a loaded machine: that request never reached the agent's decision)."""
    for _ in range(5 if retry else 1):
        status, answer = _post_once(c, dest, instance, **body)
        if status != 502 or "reset" not in answer:
            break
        time.sleep(0.2)
    return status, answer


def _post_once(c, dest, instance, **body):
    try:
        return 202, c.post("/v1/migrations", dict({"instance": instance,
                                                   "destination": {"url": dest.url}},
                                                  **body))
    except exception.MigrationError as err:
        return err.status, str(err)
    except errors.AgentError as err:
        return err.status, str(err)


def test_concurrent_starts_of_one_guest_accept_exactly_one(world, start_agent, client):
    # never converges by itself: the accepted one stays active while the others try
    world.add_guest("host-a", "vm1", memory_mib=512, dirty_mib_s=150)
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip=MIG_B)
    rollbacks = []
    original = b.agent.driver.rollback_live_migration_at_destination

    def counting_rollback(instance, data):
        rollbacks.append(instance)
        return original(instance, data)

    b.agent.driver.rollback_live_migration_at_destination = counting_rollback
    barrier = threading.Barrier(N)

    def go(_):
        barrier.wait()
        return _post(client(a), b, retry=True, options={"completion_timeout": 0})

    with concurrent.futures.ThreadPoolExecutor(N) as pool:
        answers = list(pool.map(go, range(N)))
    accepted = [body for status, body in answers if status == 202]
    refused = [body for status, body in answers if status == 409]
    assert len(accepted) == 1, answers
    assert len(refused) == N - 1, answers
    assert all("already" in text for text in refused)
    # accepted: it queues for its slots, then runs (202 may come before either)
    deadline = time.monotonic() + 60  # a hang guard
    status = None
    while status != "running" and time.monotonic() < deadline:
        status = client(a).get("/v1/migrations/%s" % accepted[0]["id"])["status"]
        assert status in ("pending", "queued", "running"), status
        time.sleep(0.01)
    assert status == "running"
    assert rollbacks == []  # no duplicate touched the destination
    deadline = time.monotonic() + 60
    while "vm1" not in world.transfers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert world.hosts["host-b"].guests["vm1"].state == "incoming"
    assert len(client(a).get("/v1/migrations")["migrations"]) == 1
    client(a).post("/v1/migrations/%s/abort" % accepted[0]["id"])
    assert testing.wait_for(client(a), accepted[0]["id"])["status"] == "aborted"
    assert rollbacks == ["vm1"]  # its own, once


def test_a_refused_start_frees_the_guest_for_the_next(pair, world, start_agent, client):
    a, b = pair
    # the first attempt names an unreachable destination: refused, nothing held
    c = start_agent("host-c")
    c.stop()
    status, _ = _post(client(a), c)
    assert status == 502
    status, record = _post(client(a), b)
    assert status == 202
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"
