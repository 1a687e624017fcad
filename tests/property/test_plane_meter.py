"""The plane byte counters (``migplane_plane_bytes_total``): over any order of
transfers starting and ending and bytes crossing the interfaces, they never
fall, and they count exactly the bytes of the planes' interfaces that crossed
while at least one transfer was active, once, however many shared them."""

from hypothesis import given
from hypothesis import strategies as st

from migplane.agent import metrics

PLANES = {"mig0": "migration", "mgmt0": "management"}
IDS = st.sampled_from(["m1", "m2", "m3", ("in", "m1")])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("start"), IDS),
    st.tuples(st.just("stop"), IDS),
    st.tuples(st.just("add"), st.sampled_from(["mig0", "mgmt0", "lo"]),
              st.integers(0, 10 ** 9), st.integers(0, 10 ** 6)),
    st.tuples(st.just("scrape"))), max_size=60)


class Counters:
    def __init__(self):
        self.now = {name: (0, 0) for name in ("mig0", "mgmt0", "lo")}

    def counters(self):
        return dict(self.now)


@given(STEPS)
def test_plane_counters_count_each_byte_of_an_active_period_once(steps):
    facts = Counters()
    meter = metrics.PlaneMeter(facts)
    active, expected, last = set(), {}, {}
    for step in steps:
        if step[0] == "start":
            meter.start(step[1], PLANES)
            active.add(step[1])
        elif step[0] == "stop":
            meter.stop(step[1])
            active.discard(step[1])
        elif step[0] == "add":
            _, ifname, tx, rx = step
            t, r = facts.now[ifname]
            facts.now[ifname] = (t + tx, r + rx)
            if active and ifname in PLANES:
                for direction, amount in (("tx", tx), ("rx", rx)):
                    key = (PLANES[ifname], direction)
                    expected[key] = expected.get(key, 0) + amount
        else:
            totals = meter.totals()
            for key, value in last.items():
                assert totals.get(key, 0) >= value, "a counter fell"
            last = totals
    assert meter.active() == active
    totals = meter.totals()
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in expected.items() if v}
