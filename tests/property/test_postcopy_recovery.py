"""Property tests of the post-copy recovery rule (drivers/libvirt/recovery.py).

Whatever the source domain and the probes say, in whatever order: the rule
only waits, pauses a stalled stream, resumes the migration, reports it
completed or gives up; it resumes only a paused (post-copy-failed) job whose
destination answers, before the deadline; it never goes past the deadline;
it reports completed only when the source domain is gone.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

recovery = pytest.importorskip("migplane.drivers.libvirt.recovery")

domains = st.sampled_from([recovery.FAILED, recovery.ACTIVE, recovery.GONE,
                           recovery.DIED, recovery.OTHER, recovery.UNKNOWN])
seconds = st.floats(0, 1e5, allow_nan=False)


@given(domains, st.booleans(), seconds, seconds, seconds, st.floats(0.1, 600),
       st.integers(0, 1000), st.booleans())
def test_each_step_is_allowed_by_what_the_hosts_say(domain, peer_up, since, timeout,
                                                   stalled, stall_timeout, attempt,
                                                   peer_half_gone):
    step = recovery.next_step(domain, peer_up, since, timeout, stalled, stall_timeout,
                              attempt, peer_half_gone)
    assert step.action in recovery.ACTIONS and step.reason
    assert (step.action == recovery.COMPLETED) == (domain == recovery.GONE)
    if domain != recovery.GONE and (domain == recovery.DIED or peer_half_gone):
        # a half whose QEMU died cannot be resumed: stop at once, touch nothing
        assert step.action == recovery.GIVE_UP
    if step.action == recovery.RESUME:
        assert domain == recovery.FAILED and peer_up and since < timeout
        assert not peer_half_gone
    if step.action == recovery.PAUSE:
        assert domain == recovery.ACTIVE and stalled >= stall_timeout and since < timeout
    if domain != recovery.GONE and since >= timeout:
        assert step.action == recovery.GIVE_UP
    if domain == recovery.UNKNOWN and since < timeout and not peer_half_gone:
        assert step.action == recovery.WAIT   # the daemon is asked again, nothing done
    if step.action == recovery.WAIT:
        assert 0 <= step.delay_s <= recovery.RETRY_MAX_S
        assert since + step.delay_s <= timeout + 1e-9   # never sleeps past the deadline


@given(st.lists(st.tuples(domains, st.booleans(), st.floats(0, 30)), min_size=1,
                max_size=60), st.floats(1, 600))
def test_a_recovery_walk_ends_by_its_deadline(trace, timeout):
    """Over any sequence of observations the walk gives up at the deadline at the
    latest, and nothing after a give-up or completion is needed."""
    since, attempt = 0.0, 0
    for domain, peer_up, stalled in trace:
        step = recovery.next_step(domain, peer_up, since, timeout, stalled, 10.0, attempt)
        if step.action in (recovery.GIVE_UP, recovery.COMPLETED):
            return
        if step.action == recovery.RESUME:
            attempt += 1
            since += recovery.backoff(attempt - 1)
        else:
            since += max(step.delay_s, 0.01)
        assert since < timeout + recovery.RETRY_MAX_S + 30


@given(st.integers(0, 100))
def test_the_backoff_grows_and_is_bounded(attempt):
    assert recovery.RETRY_FIRST_S <= recovery.backoff(attempt) <= recovery.RETRY_MAX_S
    assert recovery.backoff(attempt) <= recovery.backoff(attempt + 1)
