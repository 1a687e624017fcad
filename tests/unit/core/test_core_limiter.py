"""Per-host limit on concurrent live migrations (migplane.core.limiter)."""

import threading
import time

import pytest

from migplane.core import exception
from migplane.core import limiter
from migplane.core.settings import ConcurrencySettings


def make(max_concurrent=1, when_busy="wait", busy_timeout=600):  # a hang guard
    return limiter.HostLimiter(ConcurrencySettings(max_concurrent=max_concurrent,
                                                   when_busy=when_busy,
                                                   busy_timeout=busy_timeout))


def start_and_join(job, jobs):
    """Run ``job(i)`` for each i < ``jobs`` in its own thread; each must end in 60 s."""
    threads = [threading.Thread(target=job, args=(i,)) for i in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()


def run_threads(lim, jobs, hosts, hold=0.02):
    """Run ``jobs`` threads that each hold a slot on ``hosts``; return their errors."""
    errors = []
    inside = []
    start = threading.Barrier(jobs)

    def job(i):
        start.wait()
        try:
            with lim.slot(*hosts(i)):
                inside.append(i)
                time.sleep(hold)
        except Exception as err:
            errors.append(err)

    start_and_join(job, jobs)
    return errors, inside


def test_wait_never_exceeds_the_limit():
    lim = make(max_concurrent=2, when_busy="wait")
    errors, inside = run_threads(lim, 8, lambda i: ("host-a", "host-b"))
    assert errors == []
    assert sorted(inside) == list(range(8))
    assert lim.peak("host-a") == lim.peak("host-b") == 2
    assert lim.running("host-a") == lim.running("host-b") == 0


def test_limit_applies_per_host():
    lim = make(max_concurrent=1, when_busy="wait")
    # host-a is the source of all; destinations differ: host-a still limits to 1
    errors, _ = run_threads(lim, 4, lambda i: ("host-a", f"host-{i}"))
    assert errors == []
    assert lim.peak("host-a") == 1
    assert all(lim.peak(f"host-{i}") == 1 for i in range(4))


def test_independent_hosts_run_concurrently():
    lim = make(max_concurrent=1)
    lim.acquire("host-a", "host-b")
    lim.acquire("host-c", "host-d")  # would block if the limit were global
    assert lim.running("host-a") == lim.running("host-c") == 1
    lim.release("host-a", "host-b")
    lim.release("host-c", "host-d")


def test_refuse_names_host_running_count_and_limit():
    lim = make(max_concurrent=2, when_busy="refuse")
    lim.acquire("host-a", "host-b")
    lim.acquire("host-c", "host-b")
    with pytest.raises(exception.TooManyMigrations) as info:
        lim.acquire("host-a2", "host-b")
    err = info.value
    assert err.kwargs == {"host": "host-b", "running": 2, "limit": 2}
    assert "host-b" in str(err) and "2 live migration(s)" in str(err)
    assert "max_concurrent_live_migrations=2" in str(err)
    # the refused request took nothing
    assert lim.running("host-a2") == 0 and lim.running("host-b") == 2


def test_refuse_under_threads_never_exceeds_the_limit():
    lim = make(max_concurrent=3, when_busy="refuse")
    jobs, errors, inside, tried = 10, [], [], []
    everyone_tried = threading.Event()
    start = threading.Barrier(jobs)

    def attempted():
        tried.append(1)
        if len(tried) == jobs:
            everyone_tried.set()

    def job(i):
        start.wait()
        try:
            with lim.slot("host-a", "host-b"):
                inside.append(i)
                attempted()
                # hold the slot until every thread has tried, however slowly they run
                assert everyone_tried.wait(60)
        except exception.TooManyMigrations as err:
            errors.append(err)
            attempted()

    start_and_join(job, jobs)
    assert lim.peak("host-a") == 3
    assert len(inside) == 3 and len(errors) == jobs - 3
    assert lim.running("host-a") == 0


def test_zero_means_unlimited():
    lim = make(max_concurrent=0, when_busy="refuse")
    for _ in range(50):
        lim.acquire("host-a", "host-b")
    assert lim.running("host-a") == 50 and lim.peak("host-b") == 50


def test_busy_timeout_gives_up_waiting():
    lim = limiter.HostLimiter(ConcurrencySettings(max_concurrent=1, when_busy="wait",
                                                  busy_timeout=0.1))
    lim.acquire("host-a", "host-b")
    began = time.monotonic()
    with pytest.raises(exception.TooManyMigrations) as info:
        lim.acquire("host-b", "host-c")
    waited = time.monotonic() - began
    assert waited >= 0.09  # it waited its busy_timeout (a slow machine waits longer)
    assert info.value.kwargs["host"] == "host-b"
    assert lim.running("host-c") == 0


def test_busy_timeout_uses_the_injected_clock():
    now = [100.0]

    def clock():
        now[0] += 7200  # every look at the clock is two hours later
        return now[0]

    lim = limiter.HostLimiter(ConcurrencySettings(max_concurrent=1, busy_timeout=3600),
                              clock=clock)
    lim.acquire("host-a")
    raised = []

    def second():
        with pytest.raises(exception.TooManyMigrations):
            lim.acquire("host-a")
        raised.append(True)

    waiter = threading.Thread(target=second, daemon=True)
    waiter.start()
    # On the real clock it would wait an hour: the minute only turns that into
    # a failure; on the injected one the deadline has passed at the first look.
    waiter.join(60)
    assert raised == [True]


def test_waiting_request_gets_the_slot_when_released():
    lim = make(max_concurrent=1, when_busy="wait", busy_timeout=0)  # 0 = wait forever
    lim.acquire("host-a", "host-b")
    got = threading.Event()

    def waiter():
        lim.acquire("host-b")
        got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not got.wait(0.1)
    lim.release("host-a", "host-b")
    assert got.wait(60)
    thread.join(60)
    assert lim.running("host-b") == 1 and lim.running("host-a") == 0


def test_slot_releases_on_error():
    lim = make(max_concurrent=1)
    with pytest.raises(RuntimeError), lim.slot("host-a", "host-a", "host-b"):
        assert lim.running("host-a") == 1  # a host named twice takes one slot
        raise RuntimeError("boom")
    assert lim.running("host-a") == lim.running("host-b") == 0
    assert lim.limit == 1
