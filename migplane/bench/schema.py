"""The shape of ``results.json`` and a dependency-free check of it.

:func:`validate` returns a list of problems (empty when the file is well
formed); the CI smoke test and ``--render-only`` use it.
"""

SCHEMA = "migplane-bench/1"
PARTS = ("isolation", "efficiency", "evacuation", "convergence", "overhead")
SCENARIOS = ("baseline", "split", "unsplit", "virsh")
TOOLS = ("migplane", "virsh")


def _num(v, none=False):
    if v is None:
        return none
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    def __init__(self):
        self.problems = []

    def need(self, cond, where, what):
        if not cond:
            self.problems.append("%s: %s" % (where, what))
        return cond

    def keys(self, obj, where, keys):
        if not self.need(isinstance(obj, dict), where, "not an object"):
            return False
        missing = [k for k in keys if k not in obj]
        return self.need(not missing, where, "missing %s" % ", ".join(missing))

    def spread(self, obj, where):
        if self.keys(obj, where, ("median", "min", "max", "n")):
            for k in ("median", "min", "max"):
                self.need(_num(obj[k], none=True), "%s.%s" % (where, k), "not a number")


def _meta(c, meta):
    if not c.keys(meta, "meta", ("started_at", "duration_s", "quick", "rate", "rate_bps",
                                 "lab", "versions", "noise", "parts")):
        return
    c.need(isinstance(meta["quick"], bool), "meta.quick", "not a boolean")
    c.need(_num(meta["rate_bps"]) and meta["rate_bps"] > 0, "meta.rate_bps",
           "not a positive number")
    c.need(_num(meta["duration_s"], none=True), "meta.duration_s", "not a number")
    c.need(isinstance(meta["parts"], list) and all(p in PARTS for p in meta["parts"]),
           "meta.parts", "not a list of %s" % ", ".join(PARTS))


def _targets(c, targets):
    if not c.need(isinstance(targets, list) and targets, "targets", "not a non-empty list"):
        return
    for i, t in enumerate(targets):
        where = "targets[%d]" % i
        if c.keys(t, where, ("id", "part", "what", "target", "value", "met", "measured")):
            c.need(t["met"] in (True, False, None), where + ".met", "not true/false/null")
            c.need(_num(t["value"], none=True), where + ".value", "not a number")
            for k in ("id", "what", "target", "measured"):
                c.need(isinstance(t[k], str) and t[k], "%s.%s" % (where, k), "not a string")


def _isolation(c, iso):
    if not c.keys(iso, "isolation", ("probe", "runs", "summary", "samples", "guest")):
        return
    for i, run in enumerate(iso["runs"]):
        where = "isolation.runs[%d]" % i
        if not c.keys(run, where, ("id", "scenario", "concurrency", "start", "end", "probe",
                                   "plane_bytes", "migration_bytes", "migrations", "ok")):
            continue
        c.need(run["scenario"] in SCENARIOS, where + ".scenario", "unknown scenario")
        c.need(_num(run["start"]) and _num(run["end"]) and run["start"] <= run["end"],
               where, "start/end not an ordered pair of numbers")
        c.keys(run["probe"], where + ".probe", ("n", "lost", "p50_ms", "p99_ms", "max_ms"))
        c.keys(run["plane_bytes"], where + ".plane_bytes", ("management", "migration"))
    for key, per in iso["summary"].items():
        for sc, s in per.items():
            c.need(sc in SCENARIOS, "isolation.summary.%s" % key, "unknown scenario %r" % sc)
            c.keys(s, "isolation.summary.%s.%s" % (key, sc),
                   ("p50_ms", "p99_ms", "max_ms", "migration_bytes", "runs"))
    ok = isinstance(iso["samples"], list) and all(
        isinstance(s, list) and len(s) == 2 and _num(s[0]) and _num(s[1], none=True)
        for s in iso["samples"])
    c.need(ok, "isolation.samples", "not a list of [t, rtt_ms|null]")


def _efficiency(c, eff):
    if not c.keys(eff, "efficiency", ("kinds", "link_rate_bps")):
        return
    for kind, data in eff["kinds"].items():
        where = "efficiency.kinds.%s" % kind
        if not c.keys(data, where, ("pairs", "ratio", "tools", "migrations", "guest")):
            continue
        c.spread(data["ratio"], where + ".ratio")
        for tool in TOOLS:
            if c.keys(data["tools"], where + ".tools", (tool,)):
                t = data["tools"][tool]
                for k in ("wall_s", "job_ms", "downtime_ms", "iterations", "goodput_Bps",
                          "goodput_share_of_link"):
                    if c.keys(t, "%s.tools.%s" % (where, tool), (k,)):
                        c.spread(t[k], "%s.tools.%s.%s" % (where, tool, k))
        for j, p in enumerate(data["pairs"]):
            if c.keys(p, "%s.pairs[%d]" % (where, j), ("migplane_wall_s", "virsh_wall_s",
                                                        "ratio")):
                c.need(_num(p["ratio"]), "%s.pairs[%d].ratio" % (where, j), "not a number")


def _evacuation(c, ev):
    from migplane.bench import evacuation  # its own shape, beside its code

    evacuation.validate(c, ev)


def _overhead(c, ov):
    if c.keys(ov, "overhead", ("micro",)):
        for name, m in ov["micro"].items():
            c.need(isinstance(m, dict) and _num(m.get("ops_per_s")),
                   "overhead.micro.%s" % name, "no ops_per_s")


def _convergence(c, conv):
    if not c.keys(conv, "convergence", ("link_mib_s", "memory_mib", "time_limit_s",
                                        "ram_over_link_s", "multiples", "runs", "summary")):
        return
    for i, run in enumerate(conv["runs"]):
        where = "convergence.runs[%d]" % i
        if c.keys(run, where, ("tool", "multiple", "status", "converged", "wall_s", "ratio",
                               "downtime_ms", "iterations", "escalations", "intact")):
            c.need(run["tool"] in ("virsh", "static", "default"), where + ".tool",
                   "unknown tool")
            c.need(_num(run["ratio"]) and _num(run["wall_s"]), where, "ratio/wall_s not "
                   "numbers")
            c.need(isinstance(run["converged"], bool), where + ".converged", "not a boolean")


def validate(results):
    """Problems of ``results`` as a list of strings; empty when well formed."""
    c = _Checker()
    if not c.keys(results, "results", ("schema", "meta", "targets", "errors", "plots")):
        return c.problems
    c.need(results["schema"] == SCHEMA, "schema", "expected %r" % SCHEMA)
    _meta(c, results["meta"])
    _targets(c, results["targets"])
    c.need(isinstance(results["errors"], list), "errors", "not a list")
    c.need(isinstance(results["plots"], list) and all(
        isinstance(p, str) and p.endswith(".png") for p in results["plots"]),
        "plots", "not a list of .png names")
    for part, check in (("isolation", _isolation), ("efficiency", _efficiency),
                        ("evacuation", _evacuation), ("overhead", _overhead),
                        ("convergence", _convergence)):
        if results.get(part) is not None:
            check(c, results[part])
    return c.problems
