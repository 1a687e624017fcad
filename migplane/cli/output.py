"""Formatting for people (sizes, durations, tables) and for machines (JSON)."""

import json
import sys

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(value):
    """``1288490188`` -> ``'1.20 GiB'``; None -> ``'-'``."""
    if value is None:
        return "-"
    value = float(value)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return "%d %s" % (value, unit) if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024
    return "-"


def plane_bytes(traffic, interfaces=True):
    """Bytes each network plane carried (a record's ``traffic``): ``migration
    12.0 MiB sent (eth1); management 3.1 KiB sent (eth0)``, or without the
    interfaces ``migration 12.0 MiB, management 3.1 KiB`` (tables)."""
    planes = (traffic or {}).get("planes") or {}
    if not interfaces:
        return ", ".join("%s %s" % (plane, size(counts["tx_bytes"]))
                         for plane, counts in sorted(planes.items())) or "-"
    if not traffic:
        return "not measured"
    parts = []
    for plane, counts in sorted(planes.items()):
        names = sorted(n for n, i in traffic["interfaces"].items() if i["plane"] == plane)
        parts.append("%s %s sent (%s)" % (plane, size(counts["tx_bytes"]),
                                          ", ".join(names)))
    return "; ".join(parts) or "no traffic counted"


def rate(bytes_per_s):
    return "-" if bytes_per_s is None else size(bytes_per_s) + "/s"


def duration(seconds):
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, secs = divmod(int(seconds), 60)
    return "%dm%02ds" % (minutes, secs)


def emit_json(data, stream=None):
    json.dump(data, stream or sys.stdout, indent=2, sort_keys=True, default=str)
    (stream or sys.stdout).write("\n")


def table(rows, headers, stream=None):
    """Left-aligned columns wide enough for every cell."""
    stream = stream or sys.stdout
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
        stream.write(line.rstrip() + "\n")


def field_lines(pairs, stream=None, width=17):
    stream = stream or sys.stdout
    for label, value in pairs:
        stream.write("  %-*s %s\n" % (width, label, "-" if value in (None, "") else value))
