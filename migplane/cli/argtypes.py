"""Argument types of the CLI: a bad value is a usage error naming it (exit 2)."""

import argparse
import math


def _finite(text, zero_ok, what="number of seconds"):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError("want a %s %s, got %r" % (
            "finite, non-negative" if zero_ok else "positive", what, text))
    return value


def positive_number(text):
    """A positive, finite number (``--link-rate``)."""
    return _finite(text, zero_ok=False, what="number")


def non_negative_number(text):
    """A finite number, 0 included (``--fixed-cost``)."""
    return _finite(text, zero_ok=True, what="number")


def seconds(text):
    """A positive, finite number of seconds (``--timeout``)."""
    return _finite(text, zero_ok=False)


def seconds_or_now(text):
    """A finite number of seconds, 0 included (``--force-complete-after 0``: at once)."""
    return _finite(text, zero_ok=True)


def at_least(minimum):
    """A whole number of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("want %d or more, got %r" % (minimum, text))
        return value
    parse.__name__ = "at_least_%d" % minimum
    return parse
