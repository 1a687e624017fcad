"""The reconcile decision (``migplane.agent.reconcile.decide``) never destroys the
only running copy of a guest and never declares a migration done that did not move it."""

from hypothesis import given
from hypothesis import strategies as st

from migplane.agent import reconcile
from migplane.core import driver

STATES = st.sampled_from([None, "running", "paused", "shutoff", "incoming", "crashed"])
observations = st.builds(
    reconcile.Observation,
    step=st.sampled_from([None, "check_can_live_migrate_destination",
                          "pre_live_migration", "resolve_uris", "live_migration",
                          "post_live_migration_at_destination", "rollback"]),
    source_state=STATES, destination_state=STATES,
    job_state=st.sampled_from([None, *driver.JOB_STATES]),
    abort_requested=st.booleans())


@given(observations)
def test_completes_only_when_the_guest_runs_on_the_destination_alone(obs):
    decision = reconcile.decide(obs)
    assert decision.action in (reconcile.WATCH, reconcile.COMPLETE, reconcile.ROLLBACK,
                               reconcile.UNKNOWN)
    assert decision.reason
    if decision.action == reconcile.COMPLETE:
        assert obs.destination_state == "running"
        assert obs.source_state != "running"


@given(observations)
def test_never_rolls_back_a_destination_where_the_guest_runs(obs):
    decision = reconcile.decide(obs)
    if decision.action == reconcile.ROLLBACK:
        assert obs.destination_state != "running"
        assert obs.source_state in reconcile.ALIVE


@given(observations)
def test_a_running_job_is_watched_unless_aborted(obs):
    decision = reconcile.decide(obs)
    if obs.job_state == driver.JOB_RUNNING and not obs.abort_requested:
        assert decision.action == reconcile.WATCH


@given(observations)
def test_guest_on_both_or_neither_host_is_left_alone(obs):
    both = obs.source_state == "running" and obs.destination_state == "running"
    neither = (obs.source_state not in reconcile.ALIVE
               and obs.destination_state != "running")
    if (both or neither) and obs.job_state != driver.JOB_RUNNING:
        assert reconcile.decide(obs).action == reconcile.UNKNOWN
