"""When backups are due: a cron expression in a named time zone, plus a deadline.

A "window" opens at a scheduled start and closes at start + deadline. A backup belongs
to the window if it completed after the start (less a little slack for clocks and
tools that stamp the start time); the job is missed when the most recently closed
window has none. Times are computed as real instants with zoneinfo, so a nightly
01:00 stays at 01:00 local time across DST changes, and cron's rules apply to the
hour that is skipped or repeated (cronsim, as used by Healthchecks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim

EARLY_SLACK = 15 * 60.0  # a backup stamped up to 15 min before its start still counts


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
