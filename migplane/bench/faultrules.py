"""The fault matrix's rules, as pure functions of what the lab reported.

Where to strike (a random moment, the switch-over, the post-copy switch, a
random point of the post-copy phase), what one run proved (two copies
running, the verdict true or not, leftovers, how long the stream took to
resume and the migration to settle after the fault), and the verdict table
the CLI's exit codes follow. ``migplane.bench.faults`` does the I/O: it
samples both hosts' libvirtd, asks these functions, and acts.

A host's view of the guest is a string: ``running``, ``paused``, each with
libvirt's reason when it matters (``running:postcopy``,
``paused:postcopy-failed``, ``running:migration-canceled``...), ``shut-off``
(with who stopped it: ``shut-off:destroyed``, ``shut-off:crashed``...),
``absent`` or ``unreachable`` (its libvirtd did not answer).
"""

import dataclasses

from migplane.core import settle
from migplane.core import units

# -- strike points -----------------------------------------------------------------

RANDOM = "random"
SWITCHOVER = "switchover"
POSTCOPY = "postcopy"
POSTCOPY_RANDOM = "postcopy_random"
#: The switch-over of the same guest with post-copy armed (no paused handover:
#: the switch-over goes through post-copy).
ARMED_SWITCHOVER = "armed_switchover"
STRIKES = (RANDOM, SWITCHOVER, POSTCOPY, POSTCOPY_RANDOM, ARMED_SWITCHOVER)
STRIKE_HELP = {
    RANDOM: "a random moment 0-6 s after the source agent accepted the migration",
    SWITCHOVER: "when the source's job reports %d MiB or less of memory remaining "
                "(its last iteration, the switch-over)",
    POSTCOPY: "when the source reports the switch to post-copy",
    POSTCOPY_RANDOM: "at a random point of the post-copy phase (predicted from what "
                     "remained at the switch and the link's rate)",
    ARMED_SWITCHOVER: "as switchover, with post-copy armed (`--postcopy`, never forced): "
                      "the switch-over goes through post-copy",
}
#: Memory remaining (bytes) at which the source's job is at its switch-over:
#: the reproducer of the management-plane split struck at 6 MiB.
SWITCHOVER_REMAINING = 6 * units.MiB
#: A random point of the post-copy phase is drawn within the phase's
#: predicted length, bounded so that a bad prediction neither strikes at
#: once nor waits past the migration.
POSTCOPY_PHASE_S = (0.5, 30.0)

#: Seconds an unresolved migration may take to settle once the fault is over.
SETTLE_LIMIT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at both hosts: ``t`` (monotonic), each side's view of the
    guest, and the source job's statistics (libvirt's ``jobStats`` keys;
    empty when it had no job or did not answer)."""
    t: float
    source: str
    destination: str
    stats: dict = dataclasses.field(default_factory=dict)


def job_active(stats):
    """The source's migration job is running (libvirt job type bounded/unbounded)."""
    return stats.get("type") in (1, 2) and bool(stats.get("data_total"))


def at_switchover(stats, remaining=SWITCHOVER_REMAINING):
    """The source's job reports its last iteration: memory left under ``remaining``.

    Guards against the first moments of a job, whose counters are still zero
    (nothing remaining because nothing was counted yet)."""
    if not job_active(stats) or not stats.get("memory_processed"):
        return False
    left = stats.get("memory_remaining", stats.get("data_remaining"))
    return left is not None and left <= remaining


def in_postcopy(sample):
    """The migration switched to post-copy: libvirt's reasons say so on either side."""
    return (sample.source.startswith("paused:postcopy")
            or sample.destination.startswith("running:postcopy")
            or sample.destination.startswith("paused:postcopy"))


def postcopy_phase_s(remaining_bytes, rate_bytes_s):
    """The predicted length of the post-copy phase: what remained at the switch
    over the link's rate, within :data:`POSTCOPY_PHASE_S`."""
    lo, hi = POSTCOPY_PHASE_S
    if not rate_bytes_s or remaining_bytes is None:
        return lo
    return min(hi, max(lo, remaining_bytes / rate_bytes_s))


def strike_time(strike, samples, armed_at, delay_s=0.0, fraction=0.0, rate_bytes_s=None):
    """When to strike (in the samples' clock), or None while the point is not reached.

    ``armed_at``: when the source agent accepted the migration; ``delay_s``:
    the random moment after it (:data:`RANDOM`); ``fraction`` (0-1): where in
    the predicted post-copy phase to strike (:data:`POSTCOPY_RANDOM`);
    ``rate_bytes_s``: the link's rate, for that prediction.
    """
    if strike == RANDOM:
        return armed_at + delay_s
    if strike in (SWITCHOVER, ARMED_SWITCHOVER):
        hit = next((s for s in samples if at_switchover(s.stats)), None)
        return None if hit is None else hit.t
    if strike in (POSTCOPY, POSTCOPY_RANDOM):
        for i, s in enumerate(samples):
            if in_postcopy(s):
                if strike == POSTCOPY:
                    return s.t
                # what remained when the job last reported before (or at) the switch
                left = next((p.stats.get("data_remaining") for p in reversed(samples[:i + 1])
                             if job_active(p.stats)), None)
                return s.t + fraction * postcopy_phase_s(left, rate_bytes_s)
        return None
    raise ValueError("unknown strike point %r; known: %s" % (strike, ", ".join(STRIKES)))


def phase_at(samples, t, migration_over=False):
    """The migration's phase when the fault struck at ``t``: ``postcopy``,
    ``precopy``, or ``after`` (the migration had already ended)."""
    if migration_over:
        return "after"
    before = [s for s in samples if s.t <= t]
    if any(in_postcopy(s) for s in before[-3:]):
        return "postcopy"
    return "precopy"


# -- fault kinds ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of fault: what it breaks, for how long, and where it may strike."""
    name: str
    fault: str                 # link, reset, agent_stop, libvirtd, agent, qemu, abort, timeout
    help: str
    planes: tuple = ()         # link: the planes taken down
    durations: tuple = None    # (low, high) seconds, drawn uniformly
    sides: tuple = ()          # "source", "destination", or both: "either" picks one
    strikes: tuple = STRIKES


_ANY_TIME = STRIKES
_NOT_RANDOM = (SWITCHOVER, POSTCOPY, POSTCOPY_RANDOM)
#: The partition's faults, at both switch-overs.
_PARTITION = (RANDOM, SWITCHOVER, POSTCOPY, ARMED_SWITCHOVER)
_IN_POSTCOPY = (POSTCOPY, POSTCOPY_RANDOM)
EITHER = ("either",)

KIND_LIST = (
    Kind("migration_link", "link", "the migration link of either host down 2-8 s",
         ("migration",), (2, 8), EITHER, (RANDOM, SWITCHOVER)),
    *(Kind("migration_link_%ds" % s, "link", "the migration link of either host down %d s"
           % s, ("migration",), (s, s), EITHER, _IN_POSTCOPY) for s in (2, 10, 30, 120)),
    Kind("migration_reset", "reset", "every TCP segment on either host's migration link "
         "rejected with a TCP reset for 10 s (the stream really breaks)",
         ("migration",), (10, 10), EITHER, _NOT_RANDOM),
    Kind("management_link", "link", "the management link of either host down 2-6 s",
         ("management",), (2, 6), EITHER, (RANDOM, POSTCOPY, POSTCOPY_RANDOM)),
    Kind("management_outage", "link", "the management link of either host down 10-60 s",
         ("management",), (10, 60), EITHER, _PARTITION),
    Kind("both_planes", "link", "both links of either host down 10-60 s",
         ("management", "migration"), (10, 60), EITHER, _PARTITION),
    Kind("agent_unreachable_dest", "agent_stop", "the destination's agent stopped "
         "(SIGSTOP) 10-60 s while its libvirtd runs", (), (10, 60), ("destination",),
         _PARTITION),
    Kind("libvirtd_source", "libvirtd", "the source's libvirtd SIGKILLed, then restarted",
         sides=("source",)),
    Kind("libvirtd_dest", "libvirtd", "the destination's libvirtd SIGKILLed, then "
         "restarted", sides=("destination",)),
    Kind("libvirtd_both", "libvirtd", "both libvirtds SIGKILLed, then restarted",
         sides=("source", "destination")),
    Kind("agent_source", "agent", "the source's agent SIGKILLed, then restarted",
         sides=("source",)),
    Kind("agent_dest", "agent", "the destination's agent SIGKILLed, then restarted",
         sides=("destination",)),
    Kind("qemu_source", "qemu", "the source's QEMU SIGKILLed (the guest cannot survive it "
         "in post-copy)", sides=("source",), strikes=_IN_POSTCOPY),
    Kind("qemu_dest", "qemu", "the destination's QEMU SIGKILLed", sides=("destination",),
         strikes=_IN_POSTCOPY),
    Kind("abort", "abort", "`migplane abort`", strikes=(RANDOM,)),
    Kind("completion_timeout", "timeout", "the source agent's completion timeout (with "
         "timeout_action = abort) passes", strikes=(RANDOM,)),
)
KINDS = {k.name: k for k in KIND_LIST}
#: Faults that end (a link back, a daemon restarted): the stream can resume after them.
RECOVERABLE = ("link", "reset", "agent_stop", "libvirtd", "agent")


def cells(strikes=STRIKES, kinds=None):
    """The (strike, kind) pairs of the matrix: every kind at every strike point
    it is meant for, limited to ``kinds`` when given."""
    names = [k.name for k in KIND_LIST] if kinds is None else list(kinds)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise ValueError("unknown fault kind(s) %s; known: %s" % (
            ", ".join(unknown), ", ".join(KINDS)))
    bad = [s for s in strikes if s not in STRIKES]
    if bad:
        raise ValueError("unknown strike point(s) %s; known: %s" % (
            ", ".join(bad), ", ".join(STRIKES)))
    return [(s, n) for s in strikes for n in names if s in KINDS[n].strikes]


def schedule(n, cell_list, rng):
    """``n`` runs over the cells, each cell as often as the others (to within
    one), in a shuffled order."""
    if not cell_list:
        return []
    order = [cell_list[i % len(cell_list)] for i in range(n)]
    rng.shuffle(order)
    return order


# -- verdicts ------------------------------------------------------------------------

#: The CLI's exit code of each verdict, from the one verdict table (``core.settle``).
VERDICT_CODES = {verdict: code for verdict, (code, _) in settle.VERDICTS.items()}
#: Record statuses of a migration that ended without a named verdict.
_STATUS_VERDICT = {"completed": "completed", "failed": "rolled-back",
                   "aborted": "rolled-back", "timed_out": "rolled-back"}
ACTIVE = ("pending", "queued", "running")


def verdict_of(shown):
    """The verdict a CLI output or agent record states, or None while it runs.

    Read from its ``verdict`` (top level or in ``result``) when it names one,
    else from its status."""
    if not isinstance(shown, dict):
        return None
    for where in (shown, shown.get("result") or {}):
        v = where.get("verdict") if isinstance(where, dict) else None
        if v in VERDICT_CODES:
            return v
    status = shown.get("status")
    if status in VERDICT_CODES:
        return status
    if status in (None, *ACTIVE):
        return None
    return _STATUS_VERDICT.get(status, status)


def settled(verdict):
    """A verdict after which nothing more happens by itself."""
    return verdict is not None and verdict != "unresolved"


def running(view):
    return (view or "").startswith("running")


def two_copies_by_state(queries):
    """Both hosts ran the guest at one moment, by libvirt's states.

    ``queries``: (host, view) in the order they were asked. Two hosts are
    never asked at the same instant, so one reply each is not proof (the
    source may have stopped between the two questions); three in a row,
    X running, then Y running, then X running again, are: X ran both before
    and after Y was seen running.
    """
    for (h1, v1), (h2, v2), (h3, v3) in zip(queries, queries[1:], queries[2:], strict=False):
        if h1 == h3 != h2 and running(v1) and running(v2) and running(v3):
            return True
    return False


def queries_of(samples, source, destination):
    """The samples as the ordered (host, view) questions they were made of."""
    out = []
    for s in samples:
        out += [(source, s.source), (destination, s.destination)]
    return out


def two_copies_by_console(ticks, least=3):
    """Both hosts' consoles printed ticks at the same time (interleaved).

    ``ticks``: (host, t) as read, ``t`` on one clock. A handover shows one
    change of host; two copies show each host printing inside the other's
    span. ``least`` ticks each way are needed, so that a tick read one poll
    late at a handover is not taken for a second copy.
    """
    spans = {}
    for host, t in ticks:
        lo, hi = spans.get(host, (t, t))
        spans[host] = (min(lo, t), max(hi, t))
    hosts = sorted(spans)
    for i, x in enumerate(hosts):
        for y in hosts[i + 1:]:
            x_in_y = sum(1 for h, t in ticks if h == x and spans[y][0] < t < spans[y][1])
            y_in_x = sum(1 for h, t in ticks if h == y and spans[x][0] < t < spans[x][1])
            if min(x_in_y, y_in_x) >= least:
                return True
    return False


def recovery_s(samples, back_t):
    """Seconds from the link's return to the stream moving again, or None.

    The stream moves again when the source's job counts bytes it had not
    counted when the link came back, or when the migration is over (the
    source's domain gone or shut off)."""
    before = [s for s in samples if s.t <= back_t and job_active(s.stats)]
    ref = before[-1].stats.get("data_processed") if before else None
    for s in samples:
        if s.t < back_t:
            continue
        if s.source == "absent" or shut_off(s.source):
            return round(s.t - back_t, 2)
        if job_active(s.stats) and s.stats.get("data_processed") != ref:
            return round(s.t - back_t, 2)
    return None


def settle_s(observations, back_t):
    """Seconds from the fault's end to the first settled verdict, or None.

    ``observations``: (t, verdict) as the record was read."""
    for t, verdict in observations:
        if settled(verdict):
            return round(max(0.0, t - back_t), 2)
    return None


# -- judgement -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Judgement:
    intact: bool
    verdict_true: bool
    expected: str           # the verdict where the guest is calls for
    leftovers: tuple
    problems: tuple         # why the verdict is not true, one sentence each


def shut_off(view):
    return view.startswith("shut-off")


def died(view):
    """Its QEMU died on its own (crashed, failed as it loaded the stream, or
    killed by its restarted libvirtd, which cannot take an unfinished incoming
    migration back: no reason given): nobody destroyed it (a destroy says so)."""
    return view in ("shut-off", "shut-off:crashed", "shut-off:failed") \
        or view.startswith("crashed")


def expected_verdict(facts):
    """The verdict that tells the truth about a run's end.

    ``facts``: a mapping with ``kind``, ``phase``, ``source``,
    ``destination``, ``two_copies`` and ``hosts`` ({host: view} at the end).
    """
    hosts = facts["hosts"]
    on = [h for h, v in sorted(hosts.items()) if running(v)]
    if facts["two_copies"] or len(on) > 1:
        return "split"
    # in post-copy when struck, or right after: a half ended in a post-copy state
    postcopy = facts["phase"] == "postcopy" or any("postcopy" in v for v in hosts.values())
    if postcopy and (
            KINDS[facts["kind"]].fault == "qemu" or any(died(v) for v in hosts.values())):
        # a half's QEMU is gone (killed, or it died when the stream broke as
        # it loaded the switch's device state): nothing can resume it
        return "lost"
    if any("postcopy" in v for v in hosts.values()):
        # a post-copy that did not finish: its destination "runs" without its
        # pages; libvirt names the state once the job completed ("migrated")
        return "postcopy-paused"
    if on == [facts["destination"]]:
        return "completed"
    if on == [facts["source"]]:
        return "rolled-back"
    if all(v == "absent" or shut_off(v) for v in hosts.values()):
        # no copy anywhere that could run on: only a shut-off definition is left
        return "lost"
    return "unresolved"


def _halves_kept(facts):
    """After a post-copy failure, neither half destroyed nor resumed: the
    source's is paused, the destination's still exists."""
    src = facts["hosts"].get(facts["source"], "absent")
    dst = facts["hosts"].get(facts["destination"], "absent")
    killed = facts["kind"] if KINDS[facts["kind"]].fault == "qemu" else None
    src_ok = killed == "qemu_source" or src.startswith("paused") or died(src)
    dst_ok = killed == "qemu_dest" or died(dst) or not (dst == "absent" or shut_off(dst))
    return src_ok and dst_ok


def judge(facts):
    """What a run proved. ``facts`` (a mapping; :class:`faults.Run` fields):
    the run's kind, phase, source and destination; the CLI's exit code,
    verdict and host; the record's final verdict and host; ``hosts`` (each
    host's view at the end), ``persistent`` (hosts holding a persistent
    definition), ``continuity`` and ``ticked`` (the console), ``two_copies``,
    ``settle_s`` (unresolved runs), ``resumed_by_hand`` and ``slots_held``.
    """
    problems = []
    expected = expected_verdict(facts)
    cli = facts.get("cli_verdict")
    final = facts.get("record_verdict") or cli
    on = [h for h, v in sorted(facts["hosts"].items()) if running(v)]
    where = on[0] if len(on) == 1 else None
    if cli is None:
        problems.append("the CLI named no verdict")
    elif facts.get("cli_code") != VERDICT_CODES.get(cli):
        problems.append("the CLI exited %s for %s (the table says %s)" % (
            facts.get("cli_code"), cli, VERDICT_CODES.get(cli)))
    if cli == "postcopy-paused" and not facts.get("resumed_by_hand"):
        # both halves kept for `migplane resume`: nothing runs twice, nothing is gone
        if expected == "split":
            problems.append("postcopy-paused, but two copies ran")
        elif facts["phase"] != "postcopy" or not _halves_kept(facts):
            problems.append("postcopy-paused, but the halves are %s" % facts["hosts"])
        else:
            expected = "postcopy-paused"
    else:
        if cli == "unresolved" and facts.get("settle_s") is None:
            problems.append("unresolved, and never settled")
        elif cli not in (None, "unresolved", final) and not facts.get("resumed_by_hand"):
            problems.append("the CLI said %s, the record %s" % (cli, final))
        if expected == "lost" and final == "lost" and not _halves_kept(facts):
            problems.append("lost, but a half was destroyed or resumed: %s"
                            % facts["hosts"])
        if final != expected:
            problems.append("the verdict is %s, the guest's state calls for %s" % (
                final, expected))
        if expected in ("completed", "rolled-back"):
            for who in ("cli", "record"):
                said = facts.get(who + "_running_on")
                if said != where and not (who == "cli" and cli == "unresolved"):
                    problems.append("the %s says the guest runs on %s; it runs on %s" % (
                        who, said, where))
    kept = expected in ("lost", "postcopy-paused")
    leftovers = [] if kept else [
        "domain on %s (%s)" % (h, v) for h, v in sorted(facts["hosts"].items())
        if h != where and v != "absent"]
    if expected != "postcopy-paused":
        # a post-copy kept paused for `migplane resume` keeps its slot: its
        # destination half is there, and nothing else may start beside it
        leftovers += ["slot " + s for s in facts.get("slots_held") or ()]
    intact = bool(where and not facts["two_copies"] and facts["continuity"]
                  and facts.get("ticked")
                  and [h for h, v in facts["hosts"].items() if v != "absent"] == [where]
                  and list(facts.get("persistent") or ()) == [where])
    return Judgement(intact, not problems, expected, tuple(leftovers), tuple(problems))
