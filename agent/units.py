"""Durations (`90s 5m 1h 1d`) and sizes (`512MiB 10GiB`) as written in the config, and times as shown."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?i?B?)", re.IGNORECASE)
_SIZE_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
MAX_DURATION = 10 * 365 * 86400.0  # longer is a typo, and infinity would never run
MAX_SIZE = 2**63 - 1  # the largest integer SQLite stores (8 EiB)


def parse_duration(value: object) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `1d` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"`{value}` is not a duration; write it like 30s, 5m, 1h or 1d")
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    else:
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1d")
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError("the duration is too long (at most 10 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest config-style spelling of a duration (`90s` -> `1m30s`)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def spoken_duration(seconds: float) -> str:
    """A duration as a person says it, in one unit: `40 s`, `8 min`, `5 h`, `3 d`."""
    seconds = abs(seconds)
    if seconds < 45:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def parse_size(value: object) -> int:
    """Bytes from `512MiB`, `10GiB`, `1.5TB` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB or 10GiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit = match.groups()
        unit = unit.upper().rstrip("B")
        binary = unit.endswith("I")
        size = int(Decimal(number) * (1024 if binary else 1000) ** _SIZE_POWERS[unit.rstrip("I")])
    else:
        raise ValueError(f"`{value}` is not a size; write it like 512MiB or 10GiB")
    if size > MAX_SIZE:
        raise ValueError("the size is too large (at most 8 EiB)")
    return size


def format_size(size: float) -> str:
    """Bytes in binary units, as a person reads them: `1.5 GiB`."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = 0
    while abs(size) >= 1024 and power < len(units) - 1:
        size /= 1024
        power += 1
    return f"{size:.0f} B" if power == 0 else f"{size:.1f} {units[power]}"


def iso_time(timestamp: float) -> str:
    """A point in time for machines and the status page: UTC ISO 8601, `2026-11-22T05:00:00+00:00`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def readable_time(timestamp: float, zone: str = "UTC") -> str:
    """A point in time in a sentence: `2026-11-21 01:00 UTC`, or in a named zone: `2026-11-21 02:00 CET`."""
    return datetime.fromtimestamp(timestamp, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
