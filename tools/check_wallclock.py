#!/usr/bin/env python3
"""Fail on tests that assert wall-clock time.

A test asserts behaviour; how fast the machine ran it is a figure for the
benchmark. On a loaded CI machine a duration bound turns a slow run into a red
build, so this scan (of ``tests/`` and ``examples/*/tests/``) flags:

* an ordering comparison (``<``, ``<=``, ``>``, ``>=``) of a reading of the
  real clock (``time.monotonic()``, ``time.time()``, ``time.perf_counter()``
  and their ``_ns`` forms), or of a name computed from one in the same
  function (``t0 = time.monotonic()`` ... ``took = time.monotonic() - t0``);
* except a hang guard: the clock against a deadline set as ``clock() + N``
  with N at least ``MIN_DEADLINE_S`` seconds, or ``clock() + timeout`` where
  ``timeout`` is a parameter defaulting to at least that much;
* in the functional tests (real daemons, real guests, real time: every figure
  there is measured), an asserted ordering comparison of a timing-named
  value: ``duration``, ``elapsed``, ``downtime``, ``took``, ``rtt``,
  ``latency``, ``boot``, ``*_s``, ``*_ms``, ``*seconds``, as a name, an
  attribute or a string key (the unit and property tests run on simulated
  clocks, where such a value is computed, not measured);
* a count of what fitted in a wall-clock window: an asserted ordering
  comparison of ``len(...)`` or ``count`` in a function that bounds a run by
  time (``threading.Timer(..., event.set)``, or ``max_seconds=`` under
  ``MIN_DEADLINE_S``);
* a fixed ``time.sleep(N)`` directly followed by an ``assert``: a race with
  whatever the test waits for (wait on the event instead).

A lower bound on a measured time (``assert waited >= busy_timeout``) passes:
a slow machine only makes it hold more surely.

What it cannot see: a timeout handed to a helper as an argument
(``wait_ticks(3, timeout=10)``), ``datetime`` readings, and a figure derived
from timing under a plain name (a throughput in bytes per second); review
those by eye.

Anything else must be in ``ALLOWED`` below, with the reason it cannot make a
slow machine fail. An entry that no longer matches anything is an error too.

    python3 tools/check_wallclock.py [PATH ...]

exits 1 and prints one ``path:line: message`` per finding.
"""

import ast
import itertools
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Seconds a hang guard's deadline must at least allow.
MIN_DEADLINE_S = 30

#: ``(path, function)`` -> why the flagged comparison there cannot fail on a
#: slow machine. ``function`` is the qualified name (``Class.method``), or
#: ``<module>``.
ALLOWED = {
    ("tests/functional/lab/test_guest_migration.py", "test_guest_boots_and_ticks"): (
        "the guest's own clock: the ms its IRQ0 handler counted between two ticks "
        "it printed. A loaded host runs the guest less, which slows that clock "
        "down with it; the spacing in it stays one tick per 50 ms"),
    ("tests/functional/lab/test_lab_faults.py", "test_shaping_limits_the_migration_plane"): (
        "ping's own round trip (kernel timestamps, the least of five) across an "
        "undelayed veth is well under a millisecond; the 20 ms bound only has to "
        "sit below the 40 ms a misplaced delay would add"),
}

CLOCKS = {"monotonic", "time", "perf_counter", "monotonic_ns", "time_ns",
          "perf_counter_ns"}
ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
TIMING_NAME = re.compile(
    r"(^|_)(duration|elapsed|downtime|took|rtt|latency|boot)(_|$)"
    r"|_(s|ms|us|ns|secs?|seconds)$|^(secs?|seconds|ms)$", re.I)
WINDOW_KEYWORDS = {"max_seconds"}
REAL_TIME_DIRS = ("tests/functional/",)


class Finding:
    def __init__(self, path, line, function, message):
        self.path, self.line, self.function, self.message = path, line, function, message

    def __str__(self):
        return "%s:%d: %s (in %s)" % (self.path, self.line, self.message, self.function)


def _is_clock_call(node, time_aliases, clock_names):
    """``time.monotonic()`` (any alias of ``time``) or a bare imported clock."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr in CLOCKS:
        return isinstance(f.value, ast.Name) and f.value.id in time_aliases
    return isinstance(f, ast.Name) and f.id in clock_names


def _is_sleep_call(node, time_aliases):
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "sleep" and isinstance(node.func.value, ast.Name)
            and node.func.value.id in time_aliases)


def _number(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        a, b = _number(node.left), _number(node.right)
        return None if a is None or b is None else a * b
    return None


def _identifiers(node):
    """Names, attribute names and string subscript keys inside ``node``."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) \
                and isinstance(sub.slice.value, str):
            yield sub.slice.value


class _Scope:
    """What one function (or the module body) knows about its clock readings."""

    def __init__(self, node, defaults):
        self.node = node
        self.defaults = defaults     # parameter -> default value node
        self.tainted = set()         # names computed from a clock reading
        self.deadlines = {}          # name -> seconds allowed (None: unknown)


class Checker(ast.NodeVisitor):
    def __init__(self, path):
        self.path = path
        self.real_time = any(path.startswith(d) for d in REAL_TIME_DIRS)
        self.findings = []
        self.time_aliases = set()
        self.clock_names = set()
        self.stack = []

    # -- imports ----------------------------------------------------------
    def visit_Import(self, node):
        for a in node.names:
            if a.name == "time":
                self.time_aliases.add(a.asname or "time")

    def visit_ImportFrom(self, node):
        if node.module == "time":
            for a in node.names:
                if a.name in CLOCKS:
                    self.clock_names.add(a.asname or a.name)

    # -- scopes -----------------------------------------------------------
    def visit_Module(self, node):
        # imports first, wherever they are
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                self.visit(sub)
        self._scope(node, "<module>", {})

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_FunctionDef(self, node):
        args = node.args
        positional = args.posonlyargs + args.args
        defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]],
                            args.defaults, strict=False))
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=False)
                         if d is not None})
        self.stack.append(node.name)
        self._scope(node, ".".join(self.stack), defaults)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    @staticmethod
    def _own_nodes(node):
        """The nodes of ``node``'s body (lambdas included), and the functions and
        classes defined in it, each a scope of its own."""
        own, nested, todo = [], [], list(reversed(node.body))
        while todo:
            sub = todo.pop()
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                nested.append(sub)
                continue
            own.append(sub)
            todo.extend(reversed(list(ast.iter_child_nodes(sub))))
        return own, nested

    def _scope(self, node, name, defaults):
        scope = _Scope(node, defaults)
        own, nested = self._own_nodes(node)
        self._taint(scope, own)
        self._check(scope, name, own)
        for sub in nested:
            self.visit(sub)

    # -- what is a clock reading -------------------------------------------
    def _reads_clock(self, node, scope):
        for sub in ast.walk(node):
            if _is_clock_call(sub, self.time_aliases, self.clock_names):
                return True
            if isinstance(sub, ast.Name) and sub.id in scope.tainted:
                return True
        return False

    def _deadline_allowance(self, value, scope):
        """Seconds in ``clock() + N``; None when not that shape or N is unknown."""
        if not (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)):
            return None
        for clock, extra in ((value.left, value.right), (value.right, value.left)):
            if _is_clock_call(clock, self.time_aliases, self.clock_names):
                n = _number(extra)
                if n is None and isinstance(extra, ast.Name) and extra.id in scope.defaults:
                    n = _number(scope.defaults[extra.id])
                return n if n is not None else 0
        return None

    def _taint(self, scope, own):
        assigns = [n for n in own if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))]
        changed = True
        while changed:
            changed = False
            for a in assigns:
                value = a.value
                if value is None or not self._reads_clock(value, scope):
                    continue
                targets = a.targets if isinstance(a, ast.Assign) else [a.target]
                names = []
                for t in targets:
                    elts = t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]
                    values = value.elts if isinstance(value, (ast.Tuple, ast.List)) \
                        and len(value.elts) == len(elts) else [value] * len(elts)
                    for e, v in zip(elts, values, strict=False):
                        if isinstance(e, ast.Name) and self._reads_clock(v, scope):
                            names.append((e.id, v))
                for n, v in names:
                    allowance = self._deadline_allowance(v, scope)
                    if allowance is not None:
                        scope.deadlines[n] = allowance
                    if n not in scope.tainted:
                        scope.tainted.add(n)
                        changed = True

    # -- the rules -----------------------------------------------------------
    def _flag(self, node, name, message):
        self.findings.append(Finding(self.path, node.lineno, name, message))

    def _is_hang_guard(self, lesser, greater, scope):
        """``clock() < deadline`` or ``clock() > deadline`` with a deadline of at
        least MIN_DEADLINE_S."""
        for clock, other in ((lesser, greater), (greater, lesser)):
            if _is_clock_call(clock, self.time_aliases, self.clock_names) \
                    and isinstance(other, ast.Name) and other.id in scope.deadlines:
                return scope.deadlines[other.id] >= MIN_DEADLINE_S
        return False

    def _window(self, own):
        """Does this function bound a run by wall-clock time?"""
        for n in own:
            if not isinstance(n, ast.Call):
                continue
            f = n.func
            if (isinstance(f, ast.Attribute) and f.attr == "Timer") or \
                    (isinstance(f, ast.Name) and f.id == "Timer"):
                if len(n.args) >= 2 and isinstance(n.args[1], ast.Attribute) \
                        and n.args[1].attr == "set":
                    return True
            for k in n.keywords:
                if k.arg in WINDOW_KEYWORDS:
                    v = _number(k.value)
                    if v is not None and v < MIN_DEADLINE_S:
                        return True
        return False

    def _check(self, scope, name, own):
        # Comparisons an assert requires to hold (through ``and``, not ``not``/``or``).
        asserted, todo = set(), [n.test for n in own if isinstance(n, ast.Assert)]
        while todo:
            t = todo.pop()
            if isinstance(t, ast.BoolOp) and isinstance(t.op, ast.And):
                todo.extend(t.values)
            elif isinstance(t, ast.Compare):
                asserted.add(id(t))
        window = self._window(own)
        for n in own:
            if isinstance(n, ast.Compare):
                self._check_compare(n, id(n) in asserted, window, scope, name)
            for block in (getattr(n, "body", None), getattr(n, "orelse", None),
                          getattr(n, "finalbody", None)):
                if isinstance(block, list):
                    self._check_sleeps(block, name)
        if not isinstance(scope.node, ast.Module):
            self._check_sleeps(scope.node.body, name)

    def _check_compare(self, n, asserted, window, scope, name):
        operands = [n.left, *n.comparators]
        for left, op, right in zip(operands, n.ops, operands[1:], strict=False):
            if not isinstance(op, ORDERING):
                continue
            lesser, greater = (left, right) if isinstance(op, (ast.Lt, ast.LtE)) \
                else (right, left)
            if self._reads_clock(lesser, scope) or self._reads_clock(greater, scope):
                # A lower bound on a measured time (``assert waited >= timeout``):
                # a slow machine only makes it hold more surely.
                if asserted and not self._reads_clock(lesser, scope):
                    continue
                if not self._is_hang_guard(lesser, greater, scope):
                    self._flag(n, name, "compares a wall-clock reading (a hang guard's "
                               "deadline must allow at least %d s)" % MIN_DEADLINE_S)
                return
            if not asserted:
                continue
            if self.real_time:
                timed = sorted({i for i in _identifiers(lesser) if TIMING_NAME.search(i)})
                if timed:
                    self._flag(n, name, "asserts an upper bound on a measured time "
                               "(%s): report it, do not assert it" % ", ".join(timed))
                    return
            if window and any(
                    (isinstance(s, ast.Call) and isinstance(s.func, ast.Name)
                     and s.func.id == "len") or (isinstance(s, ast.Name) and s.id == "count")
                    for o in (left, right) for s in ast.walk(o)):
                self._flag(n, name, "asserts how much fitted in a wall-clock window: "
                           "stop the run after a number of events instead")
                return

    def _check_sleeps(self, block, name):
        for first, second in itertools.pairwise(block):
            if isinstance(first, ast.Expr) and _is_sleep_call(first.value, self.time_aliases) \
                    and isinstance(second, ast.Assert):
                self._flag(first, name, "a fixed sleep, then an assertion: wait for the "
                           "event (with a generous deadline) instead")


def check_source(source, path):
    """Findings of one file's text; ``path`` is relative to the repository."""
    checker = Checker(path)
    checker.visit(ast.parse(source, filename=path))
    return checker.findings


def test_files(root=ROOT):
    patterns = [root.glob("tests/**/*.py"), root.glob("examples/*/tests/**/*.py")]
    return sorted({p for pattern in patterns for p in pattern})


def check(paths, root=ROOT, allowed=None):
    """``(findings, stale allow-list entries)`` over ``paths``."""
    allowed = ALLOWED if allowed is None else allowed
    findings, used = [], set()
    for p in paths:
        rel = p.resolve().relative_to(root).as_posix()
        for f in check_source(p.read_text(), rel):
            key = (rel, f.function)
            if key in allowed:
                used.add(key)
            else:
                findings.append(f)
    scanned = {p.resolve().relative_to(root).as_posix() for p in paths}
    stale = [k for k in allowed if k[0] in scanned and k not in used]
    return findings, stale


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    paths = [pathlib.Path(a) for a in argv] if argv else test_files()
    findings, stale = check(paths)
    for f in findings:
        print(f)
    for path, function in stale:
        print("%s: allow-list entry for %s matches nothing: remove it" % (path, function))
    if findings or stale:
        print("%d wall-clock assertion(s) in tests; see tools/check_wallclock.py"
              % len(findings), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
