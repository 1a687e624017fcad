"""How to move a guest: a pure choice from its size, dirty rate and link.

:func:`choose` takes what was measured (``convergence``), what the driver can
do (``Capabilities``) and what the operator permits (``MigrationSettings``)
and returns a frozen :class:`MigrationPlan`: the method to start with, what
the hypervisor must have armed at the start (auto-converge and post-copy
cannot be switched on once a job runs), the order of the escalations the
monitor may take, the downtime budget, a prediction, and a reason for each
choice.

``strategy = static`` is Nova's algorithm exactly: the permissions as
configured (unset means no), post-copy winning over auto-converge, the
downtime steps and the completion timeout; nothing is measured or escalated.

Post-copy is the one method that can lose a guest: from the switch until the
last page arrives the guest runs on the destination with part of its memory
still on the source, so it needs both hosts, both QEMUs and the link (a broken
link is recovered by the driver; a crashed host or QEMU is not). The adaptive
strategy therefore uses it by default only when it pays
(:func:`post_copy_pays`): when pre-copy, with the escalations it may use
(downtime within the budget, auto-converge), is predicted not to converge, or
to take at least ``post_copy_min_gain`` times as long from now.
``permit_post_copy = True`` uses it whenever it is predicted faster, ``False``
never. It is armed at the start only when the rule says, from the measurement
before the move, that it may be needed: a migration that does not arm it can
be handed over paused instead, which libvirt refuses with post-copy armed.

The prediction simulates pre-copy pass by pass: a pass sends what remains at
the link rate while the guest dirties ``dirty_rate`` bytes per second of at
most its working set; QEMU's auto-converge throttles the vCPUs by
``initial`` % once two passes in a row dirtied more than half of what they
sent, then by ``increment`` % more each time it happens again, up to 99 %; a
pass that would fit into the downtime budget is the switch-over. It is a
model, not a promise: the monitor (``monitor``) corrects the course from the
real statistics.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any
from typing import Dict
from typing import Optional
from typing import Tuple
from typing import cast

from migplane.core import capabilities as caps_mod
from migplane.core import convergence
from migplane.core import settings as settings_mod
from migplane.core import units
from migplane.core import versioned

ADAPTIVE = "adaptive"
STATIC = "static"
STRATEGIES = (ADAPTIVE, STATIC)

#: Methods, the way a plan starts (``MigrationPlan.method``; its values cross the
#: wire, so they keep their spelling).
METHOD_PRE_COPY = "pre-copy"
METHOD_AUTO_CONVERGE = "pre-copy+auto-converge"
METHOD_POST_COPY = "pre-copy, then post-copy after the first pass"

#: Compression the strategy may arm (QEMU's XBZRLE: deltas of pages sent before).
XBZRLE = "xbzrle"

#: Escalations, in the only order the monitor takes them.
RAISE_DOWNTIME = "raise-downtime"
ESCALATE_AUTO_CONVERGE = "auto-converge"
ESCALATE_POST_COPY = "post-copy"
LADDER = (RAISE_DOWNTIME, ESCALATE_AUTO_CONVERGE, ESCALATE_POST_COPY)

#: The max downtime (ms) of a job that armed post-copy, held until it switches
#: over. libvirt refuses the paused handover (``VIR_MIGRATE_PAUSED``) with
#: post-copy, so such a job keeps the guest on one host by switching over
#: through post-copy, after which libvirt never resumes the source. Held this
#: low, the hypervisor ends the job in pre-copy itself only when a pass leaves
#: less than a millisecond's worth to send; not zero, because QEMU then takes
#: an empty pass as the end and stops the guest after the first one.
ARMED_DOWNTIME_MS = 1

#: QEMU's auto-converge defaults (cpu-throttle-initial/increment, max-cpu-throttle).
THROTTLE_INITIAL = 20
THROTTLE_INCREMENT = 10
THROTTLE_MAX = 99
#: Share of a pass's bytes that, dirtied again, QEMU counts as not converging.
THROTTLE_TRIGGER = 0.5
#: Estimated pause of a switch to post-copy (device state, dirty bitmap).
POST_COPY_SWITCH_MS = 100
#: Pre-copy passes simulated at most.
MAX_PASSES = 400
#: A prediction slower than this many times RAM/link counts as not converging.
HORIZON = 20.0
#: An escalation replaces plain pre-copy only when predicted this much faster
#: (post-copy's page faults and auto-converge's throttle cost what the model omits).
DISPLACE = 1.25
#: Auto-converge is preferred to post-copy (which puts the guest at the mercy of
#: the link) unless post-copy is predicted faster by more than this factor.
AUTO_CONVERGE_PREFERENCE = 1.25
#: Default of ``[live_migration] post_copy_min_gain``.
POST_COPY_MIN_GAIN = 2.0
#: Before the move, post-copy is armed when the rule would take it for a guest
#: dirtying this many times the measured rate: a one-second sample can
#: under-read a guest whose load rises, and what is not armed cannot be used.
ARM_MARGIN = 1.5
#: What post-copy risks, said wherever it is planned or taken.
POST_COPY_RISK = ("until the last page arrives the guest needs both hosts, both QEMUs "
                  "and the migration link: a broken link is recovered, but a host or "
                  "QEMU crash in that window loses the guest")
#: The same, with a driver that cannot recover a broken post-copy stream.
POST_COPY_RISK_UNRECOVERABLE = (
    "until the last page arrives the guest needs both hosts, both QEMUs and the "
    "migration link: this driver cannot recover a broken stream, so a broken link, "
    "or a host or QEMU crash, in that window loses the guest")


def post_copy_risk(recoverable: bool = True) -> str:
    """What post-copy risks with a driver that does (not) recover its stream."""
    return POST_COPY_RISK if recoverable else POST_COPY_RISK_UNRECOVERABLE


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the model expects of one method."""

    converges: bool
    total_s: Optional[float] = None
    downtime_ms: Optional[float] = None
    passes: int = 0
    #: Seconds in post-copy at the end of ``total_s`` (the guest's exposure).
    post_copy_s: Optional[float] = None

    @property
    def post_copy_from_s(self) -> Optional[float]:
        """Seconds from now until the switch to post-copy, if any."""
        if self.post_copy_s is None or self.total_s is None:
            return None
        return round(self.total_s - self.post_copy_s, 3)

    def describe(self) -> str:
        if not self.converges:
            return "does not converge (%d passes simulated)" % self.passes
        # A prediction that converges has its times.
        return "%.1f s, %.0f ms downtime, %d pass(es)" % (
            cast(float, self.total_s), cast(float, self.downtime_ms), self.passes)


def _optional_int(value: Any) -> Optional[int]:
    return None if value is None else versioned.check_int(value)


def _optional_number(value: Any) -> Optional[float]:
    return None if value is None else versioned.check_number(value)


_f = versioned.field


@dataclasses.dataclass(frozen=True)
class MigrationPlan(versioned.VersionedData):
    """How one migration starts and may adapt; ``reasons`` explain each field.

    Versioned: agents send it with their plans (``migplane explain``) and records.
    """

    # Version 1.0: strategy ... reasons.
    # Version 1.1: Adds post_copy_from_s and post_copy_for_s (post-copy's exposure).
    VERSION = "1.1"

    strategy: str = _f("1.0", versioned.check_str, default=versioned.REQUIRED)
    method: str = _f("1.0", versioned.check_str, default=versioned.REQUIRED)
    #: Arm the hypervisor's auto-converge (CPU throttling) at the start.
    auto_converge: bool = _f("1.0", versioned.check_bool, default=versioned.REQUIRED)
    #: Arm post-copy at the start, so that the monitor may switch to it.
    post_copy: bool = _f("1.0", versioned.check_bool, default=versioned.REQUIRED)
    #: Escalations the monitor may take, in order (empty in static mode).
    escalations: Tuple[str, ...] = _f("1.0", versioned.check_str_tuple,
                                      default=versioned.REQUIRED)
    downtime_budget_ms: int = _f("1.0", versioned.check_int, default=versioned.REQUIRED)
    bandwidth_mib: int = _f("1.0", versioned.check_int, default=0)
    #: Data connections of the job (QEMU's multifd above 1).
    parallel_connections: int = _f("1.0", versioned.check_int, default=1)
    #: Compression methods armed at the start.
    compression: Tuple[str, ...] = _f("1.0", versioned.check_str_tuple, default=())
    auto_converge_initial: Optional[int] = _f("1.0", _optional_int)
    auto_converge_increment: Optional[int] = _f("1.0", _optional_int)
    #: Switch to post-copy as soon as the first pass is done.
    post_copy_after_first_pass: bool = _f("1.0", versioned.check_bool, default=False)
    #: When post-copy is planned: seconds from the job's start to the switch,
    #: and seconds the guest is predicted to spend in post-copy (its exposure).
    post_copy_from_s: Optional[float] = _f("1.1", _optional_number)
    post_copy_for_s: Optional[float] = _f("1.1", _optional_number)
    predicted_time_s: Optional[float] = _f("1.0", _optional_number)
    predicted_downtime_ms: Optional[float] = _f("1.0", _optional_number)
    memory_bytes: int = _f("1.0", versioned.check_int, default=0)
    dirty_rate: Optional[int] = _f("1.0", _optional_int)
    dirty_rate_source: str = _f("1.0", versioned.check_str, default=convergence.UNAVAILABLE)
    link_rate: Optional[int] = _f("1.0", _optional_int)
    link_rate_source: str = _f("1.0", versioned.check_str, default=convergence.UNKNOWN)
    reasons: Mapping[str, str] = _f("1.0", versioned.check_str_mapping, default_factory=dict)

    def transfer_settings(self, settings: settings_mod.MigrationSettings
                          ) -> settings_mod.MigrationSettings:
        """``settings`` as the driver must start the job for this plan."""
        return settings.replace(
            permit_auto_converge=self.auto_converge, permit_post_copy=self.post_copy,
            auto_converge_initial=self.auto_converge_initial,
            auto_converge_increment=self.auto_converge_increment,
            parallel_connections=self.parallel_connections,
            compression=tuple(self.compression))

    def to_dict(self) -> Dict[str, Any]:
        """The plain form (displays, records); :meth:`from_dict` reads it back."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["reasons"] = versioned.thaw(self.reasons)
        data["escalations"] = list(self.escalations)
        data["compression"] = list(self.compression)
        return data


def predict(memory: int, rate: float, link: float, budget_ms: float,
            working_set: Optional[int] = None, throttle: Optional[Tuple[int, int]] = None,
            post_copy_after_first_pass: bool = False, start: Optional[float] = None
            ) -> Prediction:
    """Simulate pre-copy (optionally throttled, or switching to post-copy).

    :param memory: guest RAM in bytes; ``rate``, ``link``: bytes per second.
    :param throttle: ``(initial, increment)`` percent when auto-converge is armed.
    :param start: bytes left to send now (default: all of ``memory``, a job
        that has not started); the first simulated pass sends them.
    :returns: a :class:`Prediction`.
    """
    if link <= 0:
        return Prediction(converges=False)
    working_set = memory if working_set is None else min(working_set, memory)
    budget_s = budget_ms / 1000.0
    horizon = HORIZON * memory / link
    remaining = float(memory if start is None else min(start, memory))
    t, throttled, high = 0.0, 0.0, 0
    for passes in range(1, MAX_PASSES + 1):
        pass_s = remaining / link
        if pass_s <= budget_s:
            return Prediction(True, round(t + pass_s, 3), round(pass_s * 1000.0, 1), passes)
        t += pass_s
        dirtied = min(float(working_set), rate * (1.0 - throttled / 100.0) * pass_s)
        if post_copy_after_first_pass:
            return Prediction(True, round(t + dirtied / link, 3), float(POST_COPY_SWITCH_MS),
                              passes + 1, post_copy_s=round(dirtied / link, 3))
        if throttle and dirtied > THROTTLE_TRIGGER * remaining:
            high += 1
            if high >= 2:
                high = 0
                throttled = float(throttle[0]) if not throttled else min(
                    float(THROTTLE_MAX), throttled + throttle[1])
        remaining = dirtied
        if t > horizon:
            break
    return Prediction(converges=False, passes=passes)


def post_copy_now(remaining: float, link: float) -> Prediction:
    """Switching to post-copy at once: what remains is sent once, at the link rate."""
    if link <= 0:
        return Prediction(converges=False)
    return Prediction(True, round(remaining / link, 3), float(POST_COPY_SWITCH_MS), 1,
                      post_copy_s=round(remaining / link, 3))


def _permitted(value: Optional[bool], strategy: str) -> bool:
    """Unset permissions: the adaptive strategy may use the mechanism, static not."""
    return value if value is not None else strategy == ADAPTIVE


def choose(memory_bytes: int, measurement: convergence.DirtyRateMeasurement,
           link: convergence.LinkRate, capabilities: caps_mod.Capabilities,
           settings: settings_mod.MigrationSettings, working_set: Optional[int] = None,
           remaining_bytes: Optional[int] = None, elapsed_s: float = 0.0) -> MigrationPlan:
    """The :class:`MigrationPlan` of one migration.

    Before the transfer, every method is predicted from the whole RAM. Once the
    first pass is done (``remaining_bytes`` given, ``elapsed_s`` into the job),
    the pass is a sunk cost common to every method: the methods are weighed on
    what is left (post-copy then switches at once), and the predicted total
    adds ``elapsed_s``.

    :param memory_bytes: the guest's RAM.
    :param measurement: a :class:`~migplane.core.convergence.DirtyRateMeasurement`.
    :param link: a :class:`~migplane.core.convergence.LinkRate`.
    :param capabilities: the source driver's ``Capabilities``.
    :param settings: the source's ``MigrationSettings`` (strategy, permissions,
        ``downtime_ms`` as the budget, bandwidth, parallel connections).
    :param working_set: bytes the guest keeps rewriting, when known.
    :param remaining_bytes: bytes left to send after the first pass (re-plan).
    :param elapsed_s: seconds the job has run when re-planning.
    """
    budget = settings.downtime_ms
    if working_set is None:
        working_set = measurement.working_set
    common: Dict[str, Any] = dict(
        strategy=settings.strategy, downtime_budget_ms=budget,
        bandwidth_mib=settings.bandwidth_mib,
        parallel_connections=settings.parallel_connections, memory_bytes=memory_bytes,
        dirty_rate=measurement.dirty_rate, dirty_rate_source=measurement.source,
        link_rate=link.rate, link_rate_source=link.source)
    why: Dict[str, str] = {
        "measurement": "dirty rate %s; link %s" % (measurement.describe(), link.describe()),
        "downtime_budget_ms": (
            "[live_migration] downtime = %d ms: the most the max downtime is raised to. "
            "It bounds QEMU's estimate of the last pass, not the measured pause: a link "
            "shared with other streams at the switch-over (an evacuation's next guest) "
            "or a slow destination can make the pause longer" % budget)}
    allowed = _Allowed.of(settings, capabilities)
    if settings.strategy == STATIC:
        known = measurement.available and link.known
        # Known: an available measurement and a known link have their rates.
        pre = (predict(memory_bytes, cast(int, measurement.dirty_rate),
                       cast(int, link.rate), budget, working_set, start=remaining_bytes)
               if known else None)
        return _static_plan(settings, allowed, pre, why, common)
    inputs = _Inputs(memory_bytes, measurement, budget, working_set, remaining_bytes,
                     elapsed_s)
    return _adaptive_plan(inputs, link, capabilities, settings, allowed, why, common)


@dataclasses.dataclass(frozen=True)
class _Allowed:
    """What the operator and the driver allow of the two escalations, and why not."""

    post_copy: bool
    post_copy_why: str
    auto_converge: bool
    auto_converge_why: str

    @classmethod
    def of(cls, settings: settings_mod.MigrationSettings,
           capabilities: caps_mod.Capabilities) -> "_Allowed":
        return cls(*_post_copy_possible(settings, capabilities, settings.strategy),
                   *_auto_converge_possible(settings, capabilities, settings.strategy))


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What every prediction of one migration's methods shares."""

    memory: int
    measurement: convergence.DirtyRateMeasurement
    budget: int
    working_set: Optional[int]
    #: Bytes left after the first pass (a re-plan), or None before the move.
    start: Optional[int]
    elapsed_s: float
    throttle: Tuple[int, int] = (THROTTLE_INITIAL, THROTTLE_INCREMENT)


@dataclasses.dataclass(frozen=True)
class _Choice:
    """The method chosen at one rate, what it arms, and why."""

    method: str
    chosen: Optional[Prediction]
    auto: bool
    post: bool
    predictions: str
    reason: str


def _static_plan(settings: settings_mod.MigrationSettings, allowed: _Allowed,
                 pre: Optional[Prediction], why: Dict[str, str],
                 common: Dict[str, Any]) -> MigrationPlan:
    """Nova's algorithm: post-copy, when permitted, wins over auto-converge."""
    auto = allowed.auto_converge and not allowed.post_copy
    why["strategy"] = ("static: Nova's algorithm (downtime steps, completion timeout, "
                       "then timeout_action); nothing is escalated")
    why["auto_converge"] = (allowed.auto_converge_why if not auto else
                            "permit_auto_converge = True (post-copy not permitted)")
    why["post_copy"] = allowed.post_copy_why
    why["handover"] = handover_text(allowed.post_copy)
    why["method"] = "as configured"
    why["parallel_connections"] = ("%d, as configured ([live_migration] "
                                   "parallel_connections)" % settings.parallel_connections)
    why["compression"] = "as the driver is configured ([driver_libvirt] compression)"
    return MigrationPlan(method=METHOD_AUTO_CONVERGE if auto else METHOD_PRE_COPY,
                         auto_converge=auto,
                         post_copy=allowed.post_copy, escalations=(), reasons=why,
                         predicted_time_s=pre.total_s if pre else None,
                         predicted_downtime_ms=pre.downtime_ms if pre else None,
                         **common)


def _post_copy_window(choice: _Choice, elapsed_s: float,
                      capabilities: caps_mod.Capabilities
                      ) -> Tuple[Optional[float], Optional[float], Optional[str]]:
    """A planned post-copy's switch and exposure ``(from_s, for_s, text)``;
    an armed one's risk text alone; nothing without post-copy."""
    chosen = choice.chosen
    if choice.method == METHOD_POST_COPY and chosen is not None:
        from_s = round(elapsed_s + cast(float, chosen.post_copy_from_s), 3)
        for_s = cast(float, chosen.post_copy_s)
        return from_s, for_s, describe_exposure(
            from_s, for_s, recoverable=capabilities.post_copy_recovery)
    if choice.post:
        return None, None, ("post-copy is armed but not planned; if the monitor switches "
                            "to it: " + post_copy_risk(capabilities.post_copy_recovery))
    return None, None, None


def _adaptive_plan(inputs: _Inputs, link: convergence.LinkRate,
                   capabilities: caps_mod.Capabilities,
                   settings: settings_mod.MigrationSettings, allowed: _Allowed,
                   why: Dict[str, str], common: Dict[str, Any]) -> MigrationPlan:
    why["strategy"] = ("adaptive: measured before moving; the monitor escalates in the "
                       "order below when the job stops converging")
    per_stream = settings.stream_rate_mib * units.MiB
    wide, wide_why = _parallel_possible(settings, capabilities, link, per_stream,
                                        inputs.start)
    if not (inputs.measurement.available and link.known):
        choice, streams, allowed, why["parallel_connections"] = _unmeasured(
            settings, allowed, wide, wide_why)
        why["method"] = choice.reason
    else:
        choice, streams, allowed, why["parallel_connections"] = _measured(
            inputs, cast(int, link.rate), settings, capabilities, allowed, wide, wide_why,
            per_stream)
        why["predictions"], why["method"] = choice.predictions, choice.reason
    # Armed post-copy holds the downtime low and switches over through post-copy
    # when a pass fits the budget: raising the downtime would let the job end in
    # pre-copy without a handover.
    ladder = [] if choice.post else [RAISE_DOWNTIME]
    if choice.auto:
        ladder.append(ESCALATE_AUTO_CONVERGE)
    if choice.post:
        ladder.append(ESCALATE_POST_COPY)
    compression, why["compression"] = _compression(
        settings, capabilities, inputs.measurement, inputs.memory, inputs.working_set,
        _rate(cast(int, link.rate), streams, per_stream) if link.known else None, streams,
        inputs.start)
    why["auto_converge"] = (allowed.auto_converge_why if not allowed.auto_converge else
                            "armed at the start (QEMU throttles only once it sees the job "
                            "not converging)" if choice.auto else "not armed: it would "
                            "only slow the guest before post-copy")
    why["post_copy"] = _post_copy_text(allowed.post_copy, allowed.post_copy_why,
                                       choice.post, settings, choice.method == METHOD_POST_COPY)
    why["escalations"] = " -> ".join(ladder)
    why["handover"] = handover_text(choice.post)
    common["parallel_connections"] = streams
    chosen, elapsed_s = choice.chosen, inputs.elapsed_s
    from_s, for_s, exposure = _post_copy_window(choice, elapsed_s, capabilities)
    if exposure:
        why["exposure"] = exposure
    auto = choice.auto
    return MigrationPlan(
        method=choice.method, auto_converge=auto, post_copy=choice.post,
        escalations=tuple(ladder),
        auto_converge_initial=inputs.throttle[0] if auto else None,
        auto_converge_increment=inputs.throttle[1] if auto else None,
        post_copy_after_first_pass=choice.method == METHOD_POST_COPY, compression=compression,
        predicted_time_s=(round(elapsed_s + cast(float, chosen.total_s), 3)
                          if chosen and chosen.converges else None),
        predicted_downtime_ms=chosen.downtime_ms if chosen and chosen.converges else None,
        post_copy_from_s=from_s, post_copy_for_s=for_s, reasons=why, **common)


def _unmeasured(settings: settings_mod.MigrationSettings, allowed: _Allowed,
                wide: int, wide_why: str) -> Tuple[_Choice, int, _Allowed, str]:
    """No dirty rate or no link rate before the move: pre-copy, with what is
    permitted armed, decided from the first passes. ``(choice, connections,
    allowed, why those connections)``.

    Post-copy is armed only when the operator permits it outright. Unset, it
    is taken only when a measurement shows it may be needed, which nothing
    shows yet; and arming it gives up the paused handover (libvirt refuses
    both): the switch-over then goes through post-copy (:func:`handover_text`),
    where the guest needs both hosts and the link until its last page arrives,
    a short exposure nothing here shows to be worth it.
    """
    if allowed.post_copy and settings.permit_post_copy is None:
        allowed = dataclasses.replace(allowed, post_copy=False, post_copy_why=(
            "not armed: without a measurement before the move nothing shows that "
            "post-copy may be needed, and arming it gives up the paused handover "
            "for a switch-over through post-copy, where the guest needs both hosts "
            "until its last page arrives (permit_post_copy = True arms it)"))
    choice = _Choice(METHOD_PRE_COPY, None, allowed.auto_converge, allowed.post_copy, "",
                     "pre-copy: no prediction without a dirty rate and a link rate; the "
                     "monitor decides from the first passes")
    if wide > 1 and not allowed.post_copy:
        return choice, wide, allowed, "%d: %s (post-copy is not possible anyway)" % (
            wide, wide_why)
    if wide > 1:
        return choice, settings.parallel_connections, allowed, (
            "1: %s, but with no dirty rate to predict from, post-copy (which cannot run "
            "with parallel connections) is kept as the way out" % wide_why)
    return choice, settings.parallel_connections, allowed, wide_why


def _measured(inputs: _Inputs, link_rate: int, settings: settings_mod.MigrationSettings,
              capabilities: caps_mod.Capabilities, allowed: _Allowed, wide: int,
              wide_why: str, per_stream: int) -> Tuple[_Choice, int, _Allowed, str]:
    """The method predicted best with the configured connections, or with
    ``wide`` ones when they are predicted faster (and post-copy does not pay
    more). ``(choice, connections, allowed, why those connections)``."""
    rule = PostCopyRule.of(settings, capabilities)
    streams = settings.parallel_connections
    choice = _adaptive_method(inputs, _rate(link_rate, streams, per_stream),
                              allowed.auto_converge, allowed.post_copy, rule)
    if wide <= 1:
        return choice, streams, allowed, wide_why
    chosen = choice.chosen
    many = _adaptive_method(inputs, _rate(link_rate, wide, per_stream),
                            allowed.auto_converge, False, rule)
    if many.chosen is not None and many.chosen.converges and (
            chosen is None or not chosen.converges
            or cast(float, many.chosen.total_s) < cast(float, chosen.total_s)
            or (choice.method == METHOD_POST_COPY and not post_copy_pays(
                many.chosen, chosen, rule.permit, rule.min_gain,
                recoverable=rule.recoverable).use)):
        allowed = dataclasses.replace(allowed, post_copy=False, post_copy_why=(
            "not with %d parallel connections (QEMU cannot switch multifd to post-copy)"
            % wide))
        return many, wide, allowed, "%d: %s; predicted %s, one connection %s" % (
            wide, wide_why, many.chosen.describe(),
            chosen.describe() if chosen else "does not converge")
    return choice, streams, allowed, (
        "1: %s, but one connection is predicted as fast (%s; with %d: %s)" % (
            wide_why, chosen.describe() if chosen else "does not converge", wide,
            many.chosen.describe() if many.chosen else "does not converge"))


def describe_exposure(from_s: float, for_s: float, actual: bool = False,
                      recoverable: bool = True) -> str:
    """What a guest in post-copy risks, from when and for how long."""
    return "post-copy from %.1f s into the job for %s%.1f s: %s" % (
        from_s, "" if actual else "about ", for_s, post_copy_risk(recoverable))


def replan(plan: MigrationPlan, measurement: convergence.DirtyRateMeasurement,
           link: convergence.LinkRate, capabilities: caps_mod.Capabilities,
           settings: settings_mod.MigrationSettings, remaining_bytes: int,
           elapsed_s: float) -> MigrationPlan:
    """``plan`` revised once the first pass is behind (its statistics told the
    dirty rate or the link rate the plan lacked): the methods are weighed on
    what remains, but only what the job armed at its start can be used, with
    the connections and compression it runs with.

    The revised plan never arms what ``plan`` did not, never adds an
    escalation, and plans post-copy only when ``plan`` armed it.
    """
    # What was not armed is not permitted any more: choosing it would plan a
    # method the job cannot switch to.
    job = settings.replace(
        parallel_connections=plan.parallel_connections,
        permit_post_copy=settings.permit_post_copy if plan.post_copy else False,
        permit_auto_converge=settings.permit_auto_converge if plan.auto_converge else False)
    revised = choose(plan.memory_bytes, measurement, link, capabilities, job,
                     remaining_bytes=remaining_bytes, elapsed_s=elapsed_s)
    post_after = revised.post_copy_after_first_pass and plan.post_copy
    # Why the job runs with what it armed is still the start's reason.
    kept = [name for name in ("post_copy", "auto_converge") if not getattr(plan, name)]
    reasons = dict(revised.reasons, revised="re-planned from the first pass; only what "
                   "was armed at the start can be used",
                   **{name: plan.reasons.get(name, "")
                      for name in ("parallel_connections", "compression", "handover",
                                   *kept)})
    return dataclasses.replace(
        revised, auto_converge=plan.auto_converge, post_copy=plan.post_copy,
        auto_converge_initial=plan.auto_converge_initial,
        auto_converge_increment=plan.auto_converge_increment,
        post_copy_after_first_pass=post_after,
        post_copy_from_s=revised.post_copy_from_s if post_after else None,
        post_copy_for_s=revised.post_copy_for_s if post_after else None,
        parallel_connections=plan.parallel_connections, compression=plan.compression,
        escalations=tuple(e for e in revised.escalations if e in plan.escalations),
        reasons=reasons)


def handover_text(armed: bool) -> str:
    """How the switch-over keeps the guest on one host (the plan's reason)."""
    if armed:
        return ("through post-copy: armed post-copy rules out the paused handover, so the "
                "max downtime is held at %d ms and the monitor switches to post-copy where "
                "pre-copy within the downtime allowed would end; from then on the source's "
                "copy is never resumed. A nearly idle guest whose last pass the monitor "
                "does not see in time may still end in pre-copy, without this guarantee "
                "(the settle function's detector covers it)" % ARMED_DOWNTIME_MS)
    return ("paused handover: the destination's copy stays paused after the switch-over "
            "until migplane saw the source's copy stop (where the driver offers it)")


def _post_copy_text(possible: bool, why_not: str, armed: bool,
                    settings: settings_mod.MigrationSettings, planned: bool) -> str:
    if not possible:
        return why_not
    if not settings.permit_post_copy and settings.permit_post_copy is not None:
        return why_not
    if planned:
        return "armed at the start and planned after the first pass"
    if not armed:
        return ("not armed: pre-copy is predicted to converge well enough even if the "
                "guest dirtied %gx the measured rate (post-copy only when it pays: "
                "post_copy_min_gain = %g); the guest can be handed over paused instead"
                % (ARM_MARGIN, settings.post_copy_min_gain))
    if settings.permit_post_copy:
        return ("armed at the start (permit_post_copy = True): the monitor may switch "
                "to it whenever it is faster")
    if why_not != "permitted":
        return why_not
    return ("armed at the start: it may be needed (predicted to pay if the guest dirtied "
            "%gx the measured rate); the monitor switches only if pre-copy stops "
            "converging" % ARM_MARGIN)


def _rate(link: int, streams: int, per_stream: int) -> int:
    """What ``streams`` connections can push over a link of ``link`` bytes/s."""
    return min(link, max(1, streams) * per_stream)


def _candidates(inputs: _Inputs, dirty: float, rate: int, auto_converge_ok: bool,
                post_copy_ok: bool
                ) -> Tuple[Prediction, Optional[Prediction], Optional[Prediction]]:
    """Pre-copy, auto-converge and post-copy predicted for a guest dirtying
    ``dirty`` bytes/s at ``rate`` (None: the method is not possible)."""
    memory, budget, working_set = inputs.memory, inputs.budget, inputs.working_set
    start = inputs.start
    pre = predict(memory, dirty, rate, budget, working_set, start=start)
    ac = predict(memory, dirty, rate, budget, working_set, throttle=inputs.throttle,
                 start=start) if auto_converge_ok else None
    if not post_copy_ok:
        pc = None
    elif start is None:
        pc = predict(memory, dirty, rate, budget, working_set,
                     post_copy_after_first_pass=True)
    else:
        pc = post_copy_now(start, rate)
    return pre, ac, pc


def _adaptive_method(inputs: _Inputs, rate: int, auto_converge_ok: bool,
                     post_copy_ok: bool, rule: "PostCopyRule") -> _Choice:
    """The method predicted best at ``rate`` bytes/s, and what it arms."""
    start, elapsed_s = inputs.start, inputs.elapsed_s
    dirty = cast(int, inputs.measurement.dirty_rate)  # only measured guests are predicted
    ratio = dirty / rate

    pre, ac, pc = _candidates(inputs, dirty, rate, auto_converge_ok, post_copy_ok)
    predictions = ("" if start is None else
                   "after the first pass (%.1f s in, %.1f MiB left), from now: "
                   % (elapsed_s, start / units.MiB)) + "; ".join(
        "%s: %s" % (name, p.describe())
        for name, p in ((METHOD_PRE_COPY, pre), (METHOD_AUTO_CONVERGE, ac),
                        (METHOD_POST_COPY, pc)) if p)
    method, chosen, pays = _fastest(pre, ac, pc, rule)
    # What may be needed: the rule again, for a guest dirtying ARM_MARGIN times
    # faster than measured; True arms whenever permitted, as the operator asked.
    if not post_copy_ok:
        arm = False
    elif rule.permit or method == METHOD_POST_COPY or start is not None:
        arm = True
    else:
        arm = _fastest(*_candidates(inputs, dirty * ARM_MARGIN, rate, auto_converge_ok,
                                    post_copy_ok), rule)[0] == METHOD_POST_COPY
    if method == METHOD_PRE_COPY and chosen is not None:
        reason = ("pre-copy: dirty rate %.2fx the link, predicted to converge in %.1f s"
                  % (ratio, elapsed_s + cast(float, pre.total_s)))
        auto, post = auto_converge_ok, arm
    elif method == METHOD_AUTO_CONVERGE:
        # The fastest method converges: its prediction is there and has its time.
        reason = ("pre-copy with auto-converge: dirty rate %.2fx the link; throttling is "
                  "predicted to converge in %.1f s"
                  % (ratio, elapsed_s + cast(float, cast(Prediction, ac).total_s)))
        auto, post = True, arm
    elif method == METHOD_POST_COPY:
        # Post-copy is chosen only when post_copy_pays() said so, from its prediction.
        reason = ("post-copy after the first pass: dirty rate %.2fx the link; predicted "
                  "%.1f s (%s)" % (ratio, elapsed_s + cast(float, cast(Prediction, pc).total_s),
                                   cast(PostCopyDecision, pays).reason))
        # Throttling would only slow the guest before the switch.
        auto, post = False, True
    elif ac:
        method, chosen = METHOD_AUTO_CONVERGE, ac
        reason = ("pre-copy with auto-converge, the only escalation permitted; dirty rate "
                  "%.2fx the link" % ratio)
        auto, post = True, False
    else:
        method, chosen = METHOD_PRE_COPY, pre
        reason = ("pre-copy: dirty rate %.2fx the link and no escalation is permitted; %s"
                  % (ratio, pre.describe()))
        auto, post = False, False
    if pays is not None and method != METHOD_POST_COPY:
        reason += "; post-copy not taken: " + pays.reason
    return _Choice(method, chosen, auto, post, predictions, reason)


def _parallel_possible(settings: settings_mod.MigrationSettings,
                       capabilities: caps_mod.Capabilities, link: convergence.LinkRate,
                       per_stream: int, start: Optional[int]) -> Tuple[int, str]:
    """How many connections the strategy may open by itself, and why:
    ``(n, reason)``, n > 1 only when the link outruns one connection."""
    if settings.parallel_connections > 1:
        return 1, ("%d, as configured ([live_migration] parallel_connections)"
                   % settings.parallel_connections)
    if start is not None:
        return 1, "fixed when the job started"
    if settings.max_parallel_connections <= 1:
        return 1, "1: not permitted ([live_migration] max_parallel_connections = 1)"
    if not capabilities.parallel_connections:
        return 1, "1: the driver does not support parallel connections"
    if settings.tunnelled:
        return 1, "1: not with a tunnelled migration"
    if not link.known:
        return 1, "1: the link rate is unknown before the first pass"
    if cast(int, link.rate) <= per_stream:  # known: it has a rate
        return 1, ("1: the link (%s) is no faster than one connection ([live_migration] "
                   "stream_rate = %d MiB/s)" % (link.describe(), settings.stream_rate_mib))
    wanted = int(math.ceil(cast(int, link.rate) / per_stream))
    return min(settings.max_parallel_connections, wanted), (
        "the link (%s) is faster than one connection pushes (stream_rate = %d MiB/s; "
        "at most %d permitted)" % (link.describe(), settings.stream_rate_mib,
                                   settings.max_parallel_connections))


def _compression(settings: settings_mod.MigrationSettings,
                 capabilities: caps_mod.Capabilities,
                 measurement: convergence.DirtyRateMeasurement, memory: int,
                 working_set: Optional[int], rate: Optional[int], streams: int,
                 start: Optional[int]) -> Tuple[Tuple[str, ...], str]:
    """XBZRLE when permitted and declared and the guest rewrites its working set
    at least once per pass (pages sent again, as deltas): ``(methods, reason)``."""
    if start is not None:
        return (), "fixed when the job started"
    if not settings.permit_compression:
        return (), "not armed: not permitted ([live_migration] permit_compression = False)"
    if XBZRLE not in capabilities.compression:
        return (), "not armed: the driver does not declare xbzrle"
    if streams > 1:
        return (), ("not armed: not with parallel connections (QEMU's multifd channels do "
                    "not use XBZRLE)")
    if not measurement.available or not rate:
        return (), ("not armed: no dirty rate before the move, nothing says the guest "
                    "rewrites the same pages")
    size = min(working_set or memory, memory) or 1
    rewrites = cast(int, measurement.dirty_rate) * (memory / rate) / size  # available
    what = "%.0f MiB%s" % (size / units.MiB, "" if working_set else ", all its RAM "
                           "as none was measured")
    if rewrites < 1:
        return (), ("not armed: the guest rewrites its working set (%s) %.2f times per "
                    "pass; too little would be sent again" % (what, rewrites))
    return (XBZRLE,), ("xbzrle armed at the start: the guest rewrites its working set "
                       "(%s) %.1f times per pass, so pages are sent again; from the second "
                       "pass on they go as deltas (source CPU and a page cache)"
                       % (what, rewrites))


@dataclasses.dataclass(frozen=True)
class PostCopyRule:
    """What decides whether post-copy pays: the operator's ``permit_post_copy``
    and ``post_copy_min_gain``, and whether the source driver recovers a broken
    post-copy stream (``Capabilities.post_copy_recovery``)."""

    permit: Optional[bool] = None
    min_gain: float = POST_COPY_MIN_GAIN
    recoverable: bool = True

    @classmethod
    def of(cls, settings: settings_mod.MigrationSettings,
           capabilities: caps_mod.Capabilities) -> "PostCopyRule":
        return cls(settings.permit_post_copy, settings.post_copy_min_gain,
                   capabilities.post_copy_recovery)


@dataclasses.dataclass(frozen=True)
class PostCopyDecision:
    """Whether post-copy is worth its risk here, and why."""

    use: bool
    reason: str


def post_copy_pays(best: Optional[Prediction], post: Optional[Prediction],
                   permit: Optional[bool] = None, min_gain: float = POST_COPY_MIN_GAIN,
                   margin: float = DISPLACE, recoverable: bool = True) -> "PostCopyDecision":
    """Does post-copy pay against ``best``, the fastest pre-copy method?

    :param best: the :class:`Prediction` of pre-copy with the escalations it
        may use (downtime within the budget, auto-converge), from now; None
        when none was predicted.
    :param post: the :class:`Prediction` of post-copy, from now.
    :param permit: ``permit_post_copy``: None (unset) -> only when pre-copy is
        predicted not to converge or to take at least ``min_gain`` times as
        long; True -> whenever ``margin`` times faster; False -> never.
    :param recoverable: the driver recovers a broken post-copy stream. When it
        cannot, a broken link in post-copy loses the guest, so unset
        ``permit`` takes post-copy only when pre-copy cannot converge.
    :returns: a :class:`PostCopyDecision`.
    """
    if permit is False:
        return PostCopyDecision(False, "not permitted ([live_migration] "
                                       "permit_post_copy = False)")
    if post is None or not post.converges:
        return PostCopyDecision(False, "post-copy is not predicted to finish")
    if post.post_copy_s is None:
        # The first pass fits the downtime budget: the job ends before any switch.
        return PostCopyDecision(False, "pre-copy ends before post-copy could switch")
    if best is None or not best.converges:
        return PostCopyDecision(True, "pre-copy%s is predicted not to converge" % (
            "" if permit else " with the escalations it may use"))
    # Both converge: their predictions have their times.
    best_s, post_s = cast(float, best.total_s), cast(float, post.total_s)
    if best_s <= 0:
        return PostCopyDecision(False, "pre-copy has nothing left to send")
    if permit is None and not recoverable:
        return PostCopyDecision(False, "pre-copy converges in %.1f s, and the driver cannot "
                                "recover a broken post-copy stream (a broken link would "
                                "lose the guest): post-copy only when pre-copy cannot "
                                "converge" % best_s)
    gain = best_s / post_s if post_s > 0 else float("inf")
    if permit:
        if post_s * margin < best_s:
            return PostCopyDecision(True, "%.1f s against %.1f s by pre-copy "
                                    "(permit_post_copy = True: whenever faster)"
                                    % (post_s, best_s))
        return PostCopyDecision(False, "not predicted %.2fx faster than pre-copy (%.1f s "
                                "against %.1f s)" % (margin, post_s, best_s))
    if gain >= min_gain:
        return PostCopyDecision(True, "pre-copy would take %.1fx as long (%.1f s against "
                                "%.1f s; post_copy_min_gain = %g)"
                                % (gain, best_s, post_s, min_gain))
    return PostCopyDecision(False, "pre-copy converges in %.1f s, only %.2fx post-copy's "
                            "%.1f s (post_copy_min_gain = %g): not worth the risk"
                            % (best_s, gain, post_s, min_gain))


def _fastest(pre: Prediction, ac: Optional[Prediction], pc: Optional[Prediction],
             rule: PostCopyRule
             ) -> Tuple[Optional[str], Optional[Prediction], Optional[PostCopyDecision]]:
    """The method predicted fastest, the least intrusive winning near-ties:
    pre-copy unless auto-converge is :data:`DISPLACE` times faster; post-copy
    only when :func:`post_copy_pays` (with ``permit = True``: when
    :data:`DISPLACE` times faster, :data:`AUTO_CONVERGE_PREFERENCE` against
    auto-converge). ``(method, prediction, PostCopyDecision or None)``;
    ``(None, None, ...)`` when none converges."""
    method, best = (METHOD_PRE_COPY, pre) if pre.converges else (None, None)
    if ac is not None and ac.converges and (
            best is None or cast(float, ac.total_s) * DISPLACE < cast(float, best.total_s)):
        method, best = METHOD_AUTO_CONVERGE, ac
    if pc is None:
        return method, best, None
    pays = post_copy_pays(best, pc, rule.permit, rule.min_gain, AUTO_CONVERGE_PREFERENCE
                          if method == METHOD_AUTO_CONVERGE else DISPLACE, rule.recoverable)
    if pays.use:
        return METHOD_POST_COPY, pc, pays
    return method, best, pays


def post_copy_left_to_the_plan(settings: settings_mod.MigrationSettings,
                               capabilities: caps_mod.Capabilities) -> bool:
    """Post-copy is possible and ``permit_post_copy`` unset: only a measurement
    before the move arms it (and arming it gives up the paused handover)."""
    return settings.permit_post_copy is None and _post_copy_possible(
        settings, capabilities, settings.strategy)[0]


def _post_copy_possible(settings: settings_mod.MigrationSettings,
                        capabilities: caps_mod.Capabilities, strategy: str) -> Tuple[bool, str]:
    if not _permitted(settings.permit_post_copy, strategy):
        return False, ("not permitted ([live_migration] permit_post_copy = %s)"
                       % settings.permit_post_copy)
    if not capabilities.post_copy:
        return False, "the driver does not support post-copy"
    if settings.tunnelled:
        return False, "not with a tunnelled migration (no return path)"
    if settings.parallel_connections > 1:
        return False, ("not with %d parallel connections (QEMU cannot switch multifd to "
                       "post-copy)" % settings.parallel_connections)
    return True, "permitted"


def _auto_converge_possible(settings: settings_mod.MigrationSettings,
                            capabilities: caps_mod.Capabilities,
                            strategy: str) -> Tuple[bool, str]:
    if not _permitted(settings.permit_auto_converge, strategy):
        return False, ("not permitted ([live_migration] permit_auto_converge = %s)"
                       % settings.permit_auto_converge)
    if not capabilities.auto_converge:
        return False, "the driver does not support auto-converge"
    return True, "permitted"
