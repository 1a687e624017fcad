"""One planning path: ``migplane explain`` (``flow.preview``) promises the plan
the run starts with, whatever the settings, the guest and the driver's reach;
and the rule for sampling the dirty rate before the move."""

import dataclasses

from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from migplane import testing as testing_mod
from migplane.core import convergence
from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.core import loader
from migplane.core import planning
from migplane.core import strategy
from migplane.drivers.fake import opts as fake_opts
from migplane.drivers.fake import world as world_mod

WORLD = "property-planning"

links = st.one_of(
    st.just(convergence.LinkRate()),
    st.integers(1, 10 * 1024).map(lambda mib: convergence.link_rate(mib)))


@given(strategy=st.sampled_from(strategy.STRATEGIES), window=st.integers(0, 10),
       link=links, memory=st.integers(0, 64 * 1024 ** 3), can_sample=st.booleans(),
       decides_handover=st.booleans())
def test_a_sample_is_taken_only_when_it_is_cheap_or_decides_the_handover(
        strategy, window, link, memory, can_sample, decides_handover):
    taken, reason = planning.sample_window(strategy, window, link, memory, can_sample,
                                           decides_handover)
    assert (taken is None) != (reason is None)
    if taken is not None:
        assert taken == window and can_sample and link.known
        # dear only where it decides whether post-copy is armed (and the
        # paused handover given up)
        assert decides_handover or window <= planning.MEASURE_MAX_SHARE * memory / link.rate
    elif strategy != "static" and window and link.known and can_sample:
        assert not decides_handover   # a sample that decides the handover is taken
    if strategy == "static" or window == 0 or not link.known:
        assert taken is None


def _world(mig_bw_mib, reports_link_speed, can_sample, memory_mib, dirty_mib_s,
           working_set_mib):
    world_mod.reset_world(WORLD)
    world = world_mod.get_world(WORLD)
    world.add_host("host-a", mgmt="192.0.2.11", mig=["198.51.100.11"], mig_bw_mib=mig_bw_mib)
    world.add_host("host-b", mgmt="192.0.2.12", mig=["198.51.100.12"], mig_bw_mib=mig_bw_mib)
    world.hosts["host-a"].reports_link_speed = reports_link_speed
    world.hosts["host-a"].dirty_rate_sampling = can_sample
    world.add_guest("host-a", "vm1", memory_mib=memory_mib, dirty_mib_s=dirty_mib_s,
                    working_set_mib=min(working_set_mib, memory_mib))
    return world


def _driver(host, **overrides):
    conf = testing_mod.host_conf(host)
    conf.set_override("world", WORLD, group=fake_opts.GROUP)
    for name, value in overrides.items():
        conf.set_override(name, value)
    return loader.load_driver(conf, "fake")


@hyp_settings(max_examples=60)
@given(strategy=st.sampled_from(strategy.STRATEGIES),
       bandwidth=st.sampled_from([0, 4, 16, 64, 400]),
       window=st.integers(0, 3),
       permit_post_copy=st.sampled_from([None, True, False]),
       permit_auto_converge=st.sampled_from([None, True, False]),
       mig_bw_mib=st.sampled_from([8, 100, 1000]),
       reports_link_speed=st.booleans(), can_sample=st.booleans(),
       memory_mib=st.sampled_from([64, 512, 4096]),
       dirty_mib_s=st.integers(0, 64), working_set_mib=st.integers(1, 512))
def test_explain_promises_the_plan_the_run_starts_with(
        strategy, bandwidth, window, permit_post_copy, permit_auto_converge, mig_bw_mib,
        reports_link_speed, can_sample, memory_mib, dirty_mib_s, working_set_mib):
    world = _world(mig_bw_mib, reports_link_speed, can_sample, memory_mib, dirty_mib_s,
                   working_set_mib)
    try:
        source = _driver("host-a")
        destination = _driver("host-b", my_live_migration_ip="198.51.100.12")
        settings = dataclasses.replace(
            source.settings.migration, strategy=strategy, bandwidth_mib=bandwidth,
            dirty_rate_window=window, permit_post_copy=permit_post_copy,
            permit_auto_converge=permit_auto_converge)
        migration = flow.LiveMigration("vm1", source, destination, settings,
                                       clock=world.clock.now, sleep=world.clock.sleep)
        started = []

        def stop_once_planned(event):
            if event.kind == events.PLANNED:
                started.append((migration.measurement, migration.link, migration.plan))
                migration.abort()

        migration.subscribe(stop_once_planned)
        try:
            migration.run()
        except exception.MigrationAborted:
            pass
        assert world.where("vm1") == ["host-a"]
        explained = flow.preview(source, "vm1", source.get_instance_info("vm1"), settings,
                                 migration.uris, source.describe().capabilities)
        assert started == [explained]
    finally:
        world_mod.reset_world(WORLD)
