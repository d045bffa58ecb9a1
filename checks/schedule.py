"""When backups are due: a cron expression in a named time zone, plus a deadline.

A "window" opens at a scheduled start and closes at start + deadline. A backup belongs
to the window if it completed after the start (less a little slack for clocks and
tools that stamp the start time); the job is missed when the most recently closed
window has none. Times are computed as real instants with zoneinfo, so a nightly
01:00 stays at 01:00 local time across DST changes, and cron's rules apply to the
hour that is skipped or repeated (cronsim, as used by Healthchecks).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import PlainValidator

EARLY_SLACK = 15 * 60.0  # a backup stamped up to 15 min before its start still counts

# --- how a schedule is written in the config -------------------------------------------------------

CRON_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _check_cron(value: object) -> str:
    """A cron expression (`@daily` and friends are written out), checked now rather than at the first run."""
    if not isinstance(value, str):
        raise ValueError("expected a cron expression such as \"0 1 * * *\" (quote it)")
    expression = CRON_ALIASES.get(value.strip().lower(), value)
    try:
        CronSim(expression, _EPOCH)
    except CronSimError as exc:
        hint = f"; valid shorthands: {', '.join(CRON_ALIASES)}" if value.startswith("@") else ""
        raise ValueError(f"`{value}` is not a valid cron expression: {exc}{hint}") from None
    return expression


_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}


def _check_at(value: object) -> str:
    """`Sun 10:00`, `Mon,Thu 22:30` or `10:00` (daily) as the cron expression it means."""
    text = str(value).strip() if isinstance(value, str) else ""
    days, _, clock = text.rpartition(" ")
    hour, _, minute = clock.partition(":")
    try:
        numbers = [_DAYS[day.strip().lower()[:3]] for day in days.split(",")] if days else []
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise KeyError(clock)
    except KeyError:
        raise ValueError(f"`{value}` is not a time to check at; write it like `Sun 10:00`, `Mon,Thu 22:30` "
                         "or `10:00` (every day)") from None
    return f"{int(minute)} {int(hour)} * * {','.join(map(str, numbers)) or '*'}"


def _check_timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected an IANA time zone such as Europe/Brussels or UTC")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, available_timezones(), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ValueError(f"unknown time zone `{value}`{hint}") from None
    return value


def local_timezone() -> str:
    """The host's zone name ($TZ, else /etc/localtime's target), else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            name = str(Path("/etc/localtime").resolve()).partition("/zoneinfo/")[2]
        except OSError:
            name = ""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # any instant: CronSim parses on creation
Cron = Annotated[str, PlainValidator(_check_cron)]
At = Annotated[str, PlainValidator(_check_at)]
TimeZone = Annotated[str, PlainValidator(_check_timezone)]


@dataclass(frozen=True)
class Window:
    start: float  # the scheduled start, seconds since the epoch
    deadline: float  # by when the backup must be complete

    def holds(self, completed_at: float) -> bool:
        """Whether a backup completed at that time belongs to this window (or later)."""
        return completed_at >= self.start - EARLY_SLACK


class Schedule:
    def __init__(self, cron: str, timezone: str, deadline: float):
        self.cron, self.zone, self.deadline = cron, ZoneInfo(timezone), deadline

    def last_closed(self, now: float) -> Window | None:
        """The most recent window whose deadline has passed (None if there never was one)."""
        latest_start = now - self.deadline
        start = next(self._starts(latest_start + 1, reverse=True), None)  # cronsim excludes its origin
        return Window(start, start + self.deadline) if start is not None else None

    def next_deadline(self, now: float) -> float:
        """The earliest deadline still ahead: of a window now open, or of the next one."""
        start = next(self._starts(now - self.deadline))
        return start + self.deadline

    def windows(self, since: float, until: float) -> list[Window]:
        """Every window that closed in [since, until], oldest first (for reports)."""
        windows = []
        for start in self._starts(since - self.deadline):
            if start + self.deadline > until:
                break
            if start + self.deadline >= since:
                windows.append(Window(start, start + self.deadline))
        return windows

    def _starts(self, origin: float, reverse: bool = False) -> Iterator[float]:
        local = datetime.fromtimestamp(origin, self.zone)
        for start in CronSim(self.cron, local, reverse=reverse):
            yield start.timestamp()
