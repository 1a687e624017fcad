"""How a migration will move, decided before anything moves.

One path for the run (:class:`~migplane.core.flow.LiveMigration`), the dry run
(``migplane explain``, :func:`migplane.core.flow.preview`) and evacuations: the
link rate, whether the guest's dirty rate is sampled, and the plan. A dry run
that took its own path could promise a plan the run would not choose.

The decisions are pure (:func:`sample_window`, ``convergence.link_rate``,
``strategy.choose``); the two driver calls they need (``link_speed`` and
``measure_dirty_rate``) are made here, each checked against the contract.
"""

import logging
from typing import Optional
from typing import Tuple
from typing import cast

from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import settings as settings_mod
from migplane.core import strategy as strategy_mod

LOG = logging.getLogger(__name__)

#: Most of the first pass's duration a dirty-rate sample may cost; a shorter
#: transfer (or one whose link rate is unknown) learns the rate from its first
#: pass instead: the one choice that needs it before the job's end, post-copy
#: after the first pass, is taken then, and auto-converge and post-copy are
#: armed at the start whenever permitted.
MEASURE_MAX_SHARE = 0.05

NOT_MEASURED_STATIC = "not measured (static)"


def sample_window(strategy: str, window_s: int, link: convergence.LinkRate, memory_bytes: int,
                  can_sample: bool, decides_handover: bool = False
                  ) -> Tuple[Optional[int], Optional[str]]:
    """Whether to sample the guest's dirty rate before the move, and for how long.

    :param strategy: ``strategy.ADAPTIVE`` or ``strategy.STATIC``.
    :param window_s: ``[live_migration] dirty_rate_window``; 0 = never sample.
    :param link: the :class:`~migplane.core.convergence.LinkRate` the plan starts from.
    :param memory_bytes: the guest's RAM.
    :param can_sample: the driver declares dirty-rate sampling.
    :param decides_handover: post-copy is left to the plan (possible, and
        ``permit_post_copy`` unset): only a measurement arms it, and arming it
        gives up the paused handover. The sample is then taken whatever its
        share of the first pass: without it post-copy cannot be armed, and a
        guest that needs it would have no way out.
    :returns: ``(window_s, None)`` to sample, else ``(None, reason)``.
    """
    if strategy != strategy_mod.ADAPTIVE:
        return None, NOT_MEASURED_STATIC
    if not window_s:
        return None, "[live_migration] dirty_rate_window = 0: learned from the first pass"
    if not link.known:
        return None, ("the link rate is unknown until the first pass: both are learned "
                      "from it (a sample now could not be weighed against the link)")
    first_pass = memory_bytes / cast(int, link.rate)  # known: it has a rate
    if window_s > MEASURE_MAX_SHARE * first_pass and not decides_handover:
        return None, ("a %d s sample would cost more than %d %% of the %.1f s first pass: "
                      "learned from the first pass" % (window_s, 100 * MEASURE_MAX_SHARE,
                                                       first_pass))
    if not can_sample:
        return None, "the driver cannot sample: learned from the first pass"
    return window_s, None


def link_speed(driver: driver_mod.SourceDriver, address: str, who: str = "migplane"
               ) -> Optional[int]:
    """The speed ``driver`` reports for its interface towards ``address``,
    bytes/s; None when it cannot tell (a nicety: the first pass tells the rate
    anyway, so a failing or nonsensical answer is logged, never fatal)."""
    try:
        speed = driver.link_speed(address)
    except Exception as err:
        LOG.warning("%s: cannot read the link speed towards %s: %s", who, address, err)
        return None
    if isinstance(speed, bool) or not isinstance(speed, int) or speed <= 0:
        if speed is not None:
            LOG.warning("%s: ignoring link speed %r towards %s (not an int > 0)",
                        who, speed, address)
        return None
    return speed


def _measure(driver: driver_mod.SourceDriver, driver_name: str, instance: str, window_s: int,
             who: str) -> convergence.DirtyRateMeasurement:
    try:
        found = driver.measure_dirty_rate(instance, window_s)
    except exception.MigplaneError as err:
        LOG.warning("%s: cannot measure the dirty rate of %s: %s", who, instance, err)
        return convergence.DirtyRateMeasurement(reason="measuring failed: %s" % err)
    if not isinstance(found, convergence.DirtyRateMeasurement):
        raise exception.DriverContractError(
            driver=driver_name, step="measure_dirty_rate",
            reason="returned %s, not a DirtyRateMeasurement" % type(found).__name__)
    return found


def plan(driver: driver_mod.SourceDriver, instance: str, memory_bytes: int,
         settings: settings_mod.MigrationSettings, bulk_host: str,
         capabilities: caps_mod.Capabilities, driver_name: Optional[str] = None,
         who: str = "migplane"
         ) -> Tuple[convergence.DirtyRateMeasurement, convergence.LinkRate,
                    strategy_mod.MigrationPlan]:
    """Measure what the settings ask for and choose how to move the guest.

    :param driver: the source driver (``link_speed``, ``measure_dirty_rate``).
    :param instance: the guest.
    :param memory_bytes: its RAM.
    :param settings: the source's ``MigrationSettings``.
    :param bulk_host: the address the data goes to (``MigrationURIs.bulk_host``).
    :param capabilities: the source driver's ``Capabilities``.
    :param driver_name: named in a contract error.
    :param who: how log lines name the caller (e.g. the migration).
    :returns: ``(DirtyRateMeasurement, LinkRate, MigrationPlan)``.
    """
    link = convergence.link_rate(settings.bandwidth_mib, link_speed(driver, bulk_host, who))
    window, reason = sample_window(
        settings.strategy, settings.dirty_rate_window, link, memory_bytes,
        capabilities.dirty_rate_sampling,
        decides_handover=strategy_mod.post_copy_left_to_the_plan(settings, capabilities))
    if window is None:
        # No window: sample_window says why.
        measurement = convergence.DirtyRateMeasurement(reason=cast(str, reason))
    else:
        measurement = _measure(driver, driver_name or type(driver).__name__, instance,
                               window, who)
    chosen = strategy_mod.choose(memory_bytes, measurement, link, capabilities, settings)
    return measurement, link, chosen
