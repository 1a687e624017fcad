"""Byte units, and the one way figures in them are written for people."""

from typing import Optional

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def mib(value: float) -> str:
    """``value`` bytes as MiB, e.g. ``"12.5 MiB"``."""
    return "%.1f MiB" % (value / MiB)


def mib_s(rate: Optional[float]) -> str:
    """``rate`` bytes/s as MiB/s, e.g. ``"12.5 MiB/s"``; None is ``"unknown"``."""
    return "unknown" if rate is None else "%.1f MiB/s" % (rate / MiB)
