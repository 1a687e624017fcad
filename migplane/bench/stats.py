"""Small statistics for the benchmark (pure functions over the standard
library's ``statistics``)."""

import statistics


def percentile(values, q):
    """The ``q``-th percentile (0..100, steps of 0.1) with linear interpolation
    (numpy's default, ``statistics.quantiles(method="inclusive")``).

    Returns None for no values.
    """
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100, got %r" % (q,))
    if len(data) == 1 or q == 0:
        return data[0]
    if q == 100:
        return data[-1]
    steps = 100 if float(q).is_integer() else 1000
    cut = round(q * steps / 100)
    return statistics.quantiles(data, n=steps, method="inclusive")[cut - 1]


def median(values):
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def spread(values):
    """``{'median', 'min', 'max', 'n'}`` of the non-None values (None when empty)."""
    data = [v for v in values if v is not None]
    if not data:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": median(data), "min": min(data), "max": max(data), "n": len(data)}


def in_window(samples, start, end):
    """The ``(t, value)`` samples whose time is within ``[start, end]``."""
    return [(t, v) for t, v in samples if start <= t <= end]


def latency_summary(samples, lost_ms=None):
    """p50/p99/max (ms) of probe samples ``[(t, rtt_ms or None)]``.

    A lost round trip counts as ``lost_ms`` (the probe's time-out) in the
    percentiles when given, so losses cannot make a window look better.
    """
    rtts = [r for _, r in samples if r is not None]
    lost = sum(1 for _, r in samples if r is None)
    counted = rtts + ([lost_ms] * lost if lost_ms is not None else [])
    return {
        "n": len(samples),
        "lost": lost,
        "p50_ms": percentile(counted, 50),
        "p99_ms": percentile(counted, 99),
        "max_ms": max(counted) if counted else None,
        "mean_ms": statistics.fmean(counted) if counted else None,
    }


def ratio(a, b):
    """``a / b``, None when either is unknown or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def busy_fraction(before, after):
    """Share of CPU time not idle between two ``/proc/stat`` 'cpu' readings."""
    if before is None or after is None:
        return None
    deltas = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(deltas)
    if total <= 0:
        return None
    idle = deltas[3] + (deltas[4] if len(deltas) > 4 else 0)   # idle + iowait
    return max(0.0, min(1.0, 1.0 - idle / total))


def read_cpu_times(path="/proc/stat"):
    """The aggregate 'cpu' line of /proc/stat as a list of ints, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("cpu "):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        return None
    return None
