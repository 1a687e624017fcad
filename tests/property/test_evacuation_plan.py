"""Property tests of the evacuation planner (migplane.core.evacuation_plan)."""

from hypothesis import given
from hypothesis import strategies as st

from migplane.core import evacuation_plan as ep
from migplane.core import units

guest_lists = st.lists(
    st.builds(lambda mem, dirty: (mem * units.MiB, None if dirty is None else dirty * units.MiB),
              st.integers(1, 4096), st.one_of(st.none(), st.integers(0, 200))),
    min_size=0, max_size=14).map(
        lambda items: [ep.GuestSpec("vm%02d" % i, mem, dirty)
                       for i, (mem, dirty) in enumerate(items)])
dest_lists = st.lists(
    st.builds(lambda free, load, limit: (free * units.MiB, load, limit),
              st.integers(0, 16384), st.integers(0, 3), st.integers(0, 4)),
    min_size=1, max_size=4).map(
        lambda items: [ep.DestinationSpec("host-%d" % i, free, load, limit)
                       for i, (free, load, limit) in enumerate(items)])
plan_settings = st.builds(
    ep.PlanSettings, fixed_cost_s=st.floats(0, 20), stream_rate=st.one_of(
        st.none(), st.integers(10, 2000).map(lambda r: r * units.MiB)),
    source_max_concurrent=st.integers(0, 6), pipeline=st.booleans(),
    reserve_bytes=st.integers(0, 512).map(lambda r: r * units.MiB),
    switchover_s=st.floats(0, 5))
link_rates = st.integers(10, 3000).map(lambda r: r * units.MiB)


def _peak(intervals):
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                    key=lambda p: (p[0], p[1]))
    peak = count = 0
    for _, delta in points:
        count += delta
        peak = max(peak, count)
    return peak


@given(guest_lists, dest_lists, link_rates, plan_settings)
def test_every_guest_is_placed_once_or_reported_with_a_reason(guests, dests, rate, cfg):
    plan = ep.plan(guests, dests, rate, cfg)
    placed = [g.name for g in plan.guests]
    stays = [u.name for u in plan.unplaceable]
    assert sorted(placed + stays) == sorted(g.name for g in guests)
    assert len(set(placed)) == len(placed)
    assert all(u.reason and "needs" in u.reason for u in plan.unplaceable)
    assert all(g.reason for g in plan.guests)
    assert [g.order for g in plan.guests] == list(range(len(plan.guests)))


@given(guest_lists, dest_lists, link_rates, plan_settings)
def test_capacity_and_limits_are_never_exceeded(guests, dests, rate, cfg):
    plan = ep.plan(guests, dests, rate, cfg)
    for dest in dests:
        mine = [g for g in plan.guests if g.destination == dest.name]
        assert sum(g.memory_bytes for g in mine) <= max(0, dest.free_memory_bytes
                                                        - cfg.reserve_bytes)
        if dest.max_concurrent and mine:
            assert _peak([(g.start_s, g.finish_s) for g in mine]) + dest.load \
                <= dest.max_concurrent
    every = [(g.start_s, g.finish_s) for g in plan.guests]
    assert _peak(every) <= plan.max_running
    if cfg.source_max_concurrent:
        assert _peak(every) <= cfg.source_max_concurrent
    # never more transfers at once than streams: the link is shared by design
    assert _peak([(g.transfer_s, g.link_free_s) for g in plan.guests
                  if g.link_free_s > g.transfer_s]) <= plan.streams
    # preparing ahead holds slots too: within the source's limit
    assert plan.max_running == plan.streams + plan.prepare_ahead


@given(guest_lists, dest_lists, link_rates, plan_settings)
def test_predicted_finish_is_never_below_the_ideal(guests, dests, rate, cfg):
    plan = ep.plan(guests, dests, rate, cfg)
    assert plan.predicted_s >= plan.ideal_s * (1 - 1e-9)
    assert plan.total_bytes >= sum(g.memory_bytes for g in plan.guests)
    assert 0 <= plan.overlapped_s <= cfg.fixed_cost_s * len(plan.guests) + 1e-6
    for g in plan.guests:
        assert g.start_s <= g.transfer_s <= g.link_free_s <= g.finish_s
        assert g.transfer_s - g.start_s >= cfg.fixed_cost_s - 1e-6
        assert abs(g.finish_s - g.link_free_s - cfg.switchover_s) < 1e-6
        assert 0 <= g.overlap_s <= cfg.fixed_cost_s + 1e-9
    if not cfg.pipeline:
        assert plan.overlapped_s == 0 and plan.prepare_ahead == 0


@given(guest_lists, dest_lists, link_rates, plan_settings, st.randoms())
def test_the_plan_is_deterministic(guests, dests, rate, cfg, rnd):
    shuffled_g, shuffled_d = list(guests), list(dests)
    rnd.shuffle(shuffled_g)
    rnd.shuffle(shuffled_d)
    assert ep.plan(guests, dests, rate, cfg) == ep.plan(shuffled_g, shuffled_d, rate, cfg)


@given(guest_lists, dest_lists, link_rates, plan_settings)
def test_enough_streams_to_fill_the_link_and_no_more(guests, dests, rate, cfg):
    plan = ep.plan(guests, dests, rate, cfg)
    per_stream = cfg.stream_rate or rate
    capped = (cfg.source_max_concurrent and plan.streams == cfg.source_max_concurrent) \
        or plan.streams == max(1, len(plan.guests))
    assert plan.streams == 1 or (plan.streams - 1) * per_stream < rate  # no more
    assert plan.streams * per_stream >= rate or capped                   # enough
    assert plan.pipelined_lanes <= plan.streams
    if cfg.source_max_concurrent:
        assert plan.max_running <= max(cfg.source_max_concurrent, 1)


@given(st.lists(st.integers(1, 512), min_size=1, max_size=12), st.floats(0, 10),
       st.floats(0, 3), st.sampled_from([0, 3, 4, 8]), link_rates)
def test_pipelined_fixed_costs_hide_behind_long_enough_transfers(sizes, fixed, switch,
                                                                 limit, rate):
    """One stream, transfers each at least a fixed cost and a switch-over long,
    slots to prepare ahead: the link idles only for the first guest's fixed
    cost, and the total only adds the last switch-over."""
    shortest = fixed + switch
    guests = [ep.GuestSpec("vm%02d" % i, max(int(mib * units.MiB), int(shortest * rate) + 1))
              for i, mib in enumerate(sizes)]
    dests = [ep.DestinationSpec("host-b", 1 << 50), ep.DestinationSpec("host-c", 1 << 50)]
    plan = ep.plan(guests, dests, rate, ep.PlanSettings(
        fixed_cost_s=fixed, switchover_s=switch, source_max_concurrent=limit))
    assert plan.streams == 1
    assert plan.predicted_s <= plan.ideal_s + fixed + switch + 1e-6
    assert plan.overlapped_s >= fixed * (len(guests) - 1) - 1e-6


in_flight = st.lists(st.one_of(
    st.builds(ep.InFlight, remaining_bytes=st.integers(0, 1 << 32),
              dirty_rate=st.floats(0, 1e8)),
    st.builds(ep.InFlight, remaining_bytes=st.none(), dirty_rate=st.floats(0, 1e8),
              predicted_bytes=st.integers(0, 1 << 32), ready_in_s=st.floats(0, 60))),
    max_size=6)


@given(in_flight, st.integers(1, 4), link_rates, st.floats(0, 30), st.integers(-2, 4))
def test_next_start_needs_a_slot_and_a_lane_freeing_within_the_lead(items, streams, rate,
                                                                   lead, slots):
    step = ep.next_start(items, streams, rate, lead, slots)
    assert step.reason
    assert step.link_busy_s >= 0
    if step.start:
        assert slots > 0 and step.link_busy_s <= lead
    if slots > 0 and (len(items) < streams or not items):
        assert step.start  # an unused lane: start at once


@given(in_flight, in_flight, st.integers(1, 4), link_rates)
def test_more_work_started_never_frees_the_link_sooner(first, more, streams, rate):
    assert ep.link_busy_for(first + more, streams, rate) >= \
        ep.link_busy_for(first, streams, rate) - 1e-9


@given(in_flight, link_rates)
def test_one_lane_is_busy_for_all_the_bytes_started(items, rate):
    busy = ep.link_busy_for(items, 1, rate)
    sending = sum(f.remaining_bytes for f in items if f.remaining_bytes is not None)
    assert busy >= sending / rate * (1 - 1e-9)
    for f in items:
        if f.remaining_bytes is None:
            assert busy >= f.ready_in_s + f.predicted_bytes / rate * (1 - 1e-9)
