"""The settle function (``migplane.core.settle``) never makes two running copies.

Every combination of what the hosts may report is walked, and so is every order
in which their answers arrive (a host unreachable for a while, then answering):
the decisions, carried out on a model of the two hosts, never leave the guest
running twice unless it already ran twice (then the detector pauses a copy).
"""

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from migplane.core import driver
from migplane.core import events
from migplane.core import settle

REASONS = st.sampled_from([None, settle.REASON_MIGRATION, settle.REASON_POSTCOPY,
                           settle.REASON_POSTCOPY_FAILED,
                           settle.REASON_MIGRATION_CANCELED, settle.REASON_HELD,
                           settle.REASON_MIGRATED])
sides = st.builds(settle.Side, state=st.sampled_from(settle.SIDE_STATES), reason=REASONS)
JOBS = st.sampled_from([None, "bogus", *driver.JOB_STATES])
reports = st.builds(settle.Report, source=sides, destination=sides, job=JOBS,
                    postcopy=st.booleans(), handover=st.booleans())
POSTCOPY_JOBS = (driver.JOB_POSTCOPY_RECOVERING, driver.JOB_POSTCOPY_PAUSED)


def _in_postcopy(report):
    return (report.postcopy or report.job in POSTCOPY_JOBS
            or settle.REASON_POSTCOPY_FAILED in (report.source.reason,
                                                 report.destination.reason)
            or (report.source.state == settle.PAUSED
                and report.source.reason == settle.REASON_POSTCOPY))


@given(reports)
def test_every_report_gets_a_decision_from_the_table(report):
    decision = settle.settle(report)
    assert decision.action in settle.ACTIONS
    assert decision.verdict in events.VERDICTS
    assert decision.reason
    assert decision.exit_code == settle.VERDICTS[decision.verdict][0]


@given(reports)
def test_a_copy_is_resumed_only_when_the_other_is_known_stopped(report):
    decision = settle.settle(report)
    if decision.may_resume_source:
        assert report.source.state == settle.PAUSED
        assert report.destination.state == settle.ABSENT
    if decision.may_resume_destination:
        assert report.destination.state == settle.PAUSED
        assert report.source.state in (settle.SHUT_OFF, settle.ABSENT)
        assert report.job != driver.JOB_RUNNING
        assert report.destination.reason != settle.REASON_MIGRATION


@given(reports)
def test_nothing_is_destroyed_undefined_or_resumed_in_post_copy(report):
    decision = settle.settle(report)
    if _in_postcopy(report):
        assert not (decision.may_resume_source or decision.may_resume_destination
                    or decision.may_destroy_source or decision.may_destroy_destination)
        if decision.may_undefine_source:
            # the job says it completed, or the destination's daemon says its
            # incoming migration finished: every page arrived
            assert report.job == driver.JOB_COMPLETED \
                or report.destination.reason == settle.REASON_MIGRATED
            assert report.destination.state == settle.RUNNING
            assert report.source.state in (settle.SHUT_OFF, settle.ABSENT)


@given(reports)
def test_a_running_copy_is_never_destroyed(report):
    decision = settle.settle(report)
    if decision.may_clean_destination:
        assert report.destination.state == settle.ABSENT
    if decision.may_destroy_destination:
        assert report.destination.state not in (settle.RUNNING, settle.UNREACHABLE)
        assert report.source.state in (settle.RUNNING, settle.PAUSED)
    if decision.may_destroy_source:
        assert report.source.state == settle.PAUSED
        assert report.destination.state == settle.RUNNING


@given(reports)
def test_both_running_is_split_and_fenced(report):
    decision = settle.settle(report)
    both = (report.source.state == settle.RUNNING
            and report.destination.state == settle.RUNNING)
    assert (decision.verdict == events.VERDICT_SPLIT) == both
    if both:
        assert decision.action == settle.FENCE
        assert decision.pause_source or decision.pause_destination
        if report.source.reason == settle.REASON_MIGRATION_CANCELED != \
                report.destination.reason:
            assert decision.pause_source and not decision.pause_destination


@given(reports)
def test_unknown_is_never_completed_nor_rolled_back(report):
    decision = settle.settle(report)
    if settle.UNREACHABLE in (report.source.state, report.destination.state):
        assert decision.verdict in (events.VERDICT_UNRESOLVED, events.VERDICT_SPLIT,
                                    events.VERDICT_COMPLETED)
        if decision.verdict == events.VERDICT_COMPLETED:
            # post-copy completed, as the source's own job says: nothing runs there
            assert report.source.state != settle.UNREACHABLE
        assert not (decision.may_resume_source or decision.may_resume_destination)


@given(reports)
def test_completed_only_when_the_guest_runs_on_the_destination(report):
    decision = settle.settle(report)
    if decision.verdict == events.VERDICT_COMPLETED:
        assert report.source.state == settle.ABSENT  # no bootable copy left there
        assert report.destination.state == settle.RUNNING
    if decision.verdict == events.VERDICT_ROLLED_BACK:
        assert report.source.state in (settle.RUNNING, settle.PAUSED)
        assert report.destination.state == settle.ABSENT


# -- every order of answers ------------------------------------------------------------

@dataclasses.dataclass
class Host:
    state: str
    reason: object = None


def _apply(decision, source, destination):
    """Carry out what the decision allows, as the flow and the reconciler do."""
    if decision.pause_source and source.state == settle.RUNNING:
        source.state, source.reason = settle.PAUSED, settle.REASON_HELD
    if decision.pause_destination and destination.state == settle.RUNNING:
        destination.state, destination.reason = settle.PAUSED, settle.REASON_HELD
    if decision.may_destroy_destination:
        destination.state, destination.reason = settle.ABSENT, None
    if decision.may_destroy_source:
        source.state, source.reason = settle.ABSENT, None
    if decision.may_undefine_source and source.state == settle.SHUT_OFF:
        source.state = settle.ABSENT
    if decision.may_resume_source:
        source.state, source.reason = settle.RUNNING, None
    if decision.may_resume_destination:
        destination.state, destination.reason = settle.RUNNING, None


TRUE_STATES = st.sampled_from([settle.RUNNING, settle.PAUSED, settle.SHUT_OFF,
                               settle.ABSENT])


@given(source=TRUE_STATES, source_reason=REASONS, destination=TRUE_STATES,
       destination_reason=REASONS, job=JOBS, postcopy=st.booleans(),
       handover=st.booleans(),
       answers=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1,
                        max_size=8))
def test_no_order_of_answers_makes_two_running_copies(
        source, source_reason, destination, destination_reason, job, postcopy,
        handover, answers):
    src, dst = Host(source, source_reason), Host(destination, destination_reason)
    both_at_start = source == destination == settle.RUNNING
    for source_answers, destination_answers in answers:
        seen_src = settle.Side(src.state, src.reason) if source_answers else \
            settle.Side(settle.UNREACHABLE)
        seen_dst = settle.Side(dst.state, dst.reason) if destination_answers else \
            settle.Side(settle.UNREACHABLE)
        running_before = (src.state == settle.RUNNING) + (dst.state == settle.RUNNING)
        decision = settle.settle(settle.Report(source=seen_src, destination=seen_dst,
                                               job=job, postcopy=postcopy,
                                               handover=handover))
        _apply(decision, src, dst)
        running_after = (src.state == settle.RUNNING) + (dst.state == settle.RUNNING)
        # a decision never adds a running copy next to one that runs
        if running_after == 2:
            assert running_before == 2 and both_at_start
        # a copy is never resumed while the other side is unknown
        if decision.may_resume_source or decision.may_resume_destination:
            assert source_answers and destination_answers


@given(reports)
def test_settling_again_after_acting_does_not_undo_it(report):
    """Acting on a decision, then settling what the hosts report next, never
    resumes the copy the first decision paused or destroyed (no flapping)."""
    first = settle.settle(report)
    src = Host(report.source.state, report.source.reason)
    dst = Host(report.destination.state, report.destination.reason)
    if settle.UNREACHABLE in (src.state, dst.state):
        return
    _apply(first, src, dst)
    second = settle.settle(dataclasses.replace(
        report, source=settle.Side(src.state, src.reason),
        destination=settle.Side(dst.state, dst.reason)))
    if first.pause_source and first.pause_destination:
        assert not (second.may_resume_source and second.may_resume_destination)


@given(source=st.sampled_from([settle.RUNNING, settle.PAUSED]), source_reason=REASONS,
       handover=st.booleans())
def test_an_unknown_job_with_the_guest_still_arriving_is_waited_for(
        source, source_reason, handover):
    """A source that cannot tell how its job goes (e.g. the agent that started
    it restarted) while the destination's copy is still incoming: libvirt may
    still be migrating, so nothing is destroyed, resumed or rolled back yet."""
    report = settle.Report(source=settle.Side(source, source_reason),
                           destination=settle.Side(settle.PAUSED, settle.REASON_MIGRATION),
                           job=None, handover=handover)
    if _in_postcopy(report):
        return
    decision = settle.settle(report)
    assert decision.action == settle.WAIT
    assert decision.verdict == events.VERDICT_UNRESOLVED
    assert not any((decision.may_destroy_source, decision.may_destroy_destination,
                    decision.may_resume_source, decision.may_resume_destination,
                    decision.may_undefine_source))


@given(sides, sides)
def test_a_split_is_released_only_when_one_copy_at_most_is_left(source, destination):
    """``migplane release``: never while a host cannot answer, two copies are
    held, or a shut-off definition could be booted beside the copy left."""
    allowed, reason = settle.may_release_split(source, destination)
    assert reason
    states = {source.state, destination.state}
    live = [s for s in (source, destination) if s.state in (settle.RUNNING, settle.PAUSED)]
    if settle.UNREACHABLE in states or len(live) > 1 or (
            live and settle.SHUT_OFF in states):
        assert not allowed
    else:
        assert allowed


def test_a_finished_incoming_post_copy_settles_completed_with_no_job_to_ask():
    """An agent back from a restart has no job left to ask; the destination's
    daemon says its incoming migration finished and the source holds nothing."""
    decision = settle.settle(settle.Report(
        source=settle.Side(settle.ABSENT),
        destination=settle.Side(settle.RUNNING, settle.REASON_MIGRATED),
        job=None, postcopy=True))
    assert decision.verdict == events.VERDICT_COMPLETED
    assert decision.running_on == "destination"
    still_arriving = settle.settle(settle.Report(
        source=settle.Side(settle.ABSENT),
        destination=settle.Side(settle.RUNNING, settle.REASON_POSTCOPY),
        job=None, postcopy=True))
    assert still_arriving.verdict != events.VERDICT_COMPLETED


@given(st.sampled_from([None, settle.REASON_MIGRATION_CANCELED, settle.REASON_HELD]),
       st.sampled_from([None, driver.JOB_FAILED, driver.JOB_CANCELLED, driver.JOB_NONE,
                        driver.JOB_COMPLETED]))
def test_a_post_copy_asked_for_but_never_begun_is_rolled_back_true(reason, job):
    """The flow asked for post-copy as the source's daemon died: the source's
    copy runs and the destination holds none, so the switch never happened
    (a post-copy's source never runs again) and the guest is on the source,
    not lost."""
    decision = settle.settle(settle.Report(
        source=settle.Side(settle.RUNNING, reason), destination=settle.Side(settle.ABSENT),
        job=job, postcopy=True))
    assert decision.verdict == events.VERDICT_ROLLED_BACK
    assert decision.running_on == "source"
    assert not (decision.may_resume_source or decision.may_destroy_source
                or decision.may_destroy_destination or decision.may_undefine_source)


@given(st.sampled_from([driver.JOB_FAILED, driver.JOB_CANCELLED, driver.JOB_NONE,
                        driver.JOB_COMPLETED]))
def test_a_post_copy_libvirt_gave_up_on_before_the_switch_is_rolled_back(job):
    """libvirt gave up on the migration as the flow asked for post-copy (the
    peer-to-peer connection closed): it resumed the source's copy (reason
    migration-canceled: it never does so after the switch), and the destination
    holds the incoming copy, which never ran. That copy is removed and the guest
    stays on the source; with any other reason the rows of post-copy hold."""
    report = settle.Report(
        source=settle.Side(settle.RUNNING, settle.REASON_MIGRATION_CANCELED),
        destination=settle.Side(settle.PAUSED, settle.REASON_MIGRATION),
        job=job, postcopy=True)
    decision = settle.settle(report)
    assert decision.action == settle.ROLL_BACK and decision.running_on == "source"
    assert decision.may_destroy_destination
    assert not (decision.may_resume_source or decision.may_destroy_source
                or decision.may_undefine_source or decision.may_resume_destination)
    after = settle.settle(dataclasses.replace(report, destination=settle.Side(settle.ABSENT)))
    assert after.verdict == events.VERDICT_ROLLED_BACK
    unsure = settle.settle(dataclasses.replace(report, source=settle.Side(settle.RUNNING)))
    assert not (unsure.may_destroy_destination or unsure.may_resume_destination)
