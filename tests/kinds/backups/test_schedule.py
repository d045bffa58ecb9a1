"""Backup schedules: windows and deadlines across DST changes and non-daily schedules."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from checks.schedule import EARLY_SLACK, Schedule

BRUSSELS = ZoneInfo("Europe/Brussels")  # 2026: CET->CEST on 29 March, back on 25 October
HOUR = 3600.0


def at(text: str, zone: ZoneInfo = BRUSSELS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def local(timestamp: float, zone: ZoneInfo = BRUSSELS) -> str:
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize("cron, deadline_hours, now, last_start, next_deadline", [
    # nightly at 01:00, done by 05:00
    ("0 1 * * *", 4, "2026-11-22 04:59", "2026-11-21 01:00 CET", "2026-11-22 05:00 CET"),
    ("0 1 * * *", 4, "2026-11-22 05:00", "2026-11-22 01:00 CET", "2026-11-23 05:00 CET"),
    # a run at 01:30 is merely running: the last closed window is yesterday's
    ("0 1 * * *", 4, "2026-11-22 01:30", "2026-11-21 01:00 CET", "2026-11-22 05:00 CET"),
    # spring forward: 01:00 CET + 4 h of real time is 06:00 CEST
    ("0 1 * * *", 4, "2026-03-29 05:30", "2026-03-28 01:00 CET", "2026-03-29 06:00 CEST"),
    ("0 1 * * *", 4, "2026-03-29 06:00", "2026-03-29 01:00 CET", "2026-03-30 05:00 CEST"),
    # 02:30 does not exist on 29 March: cron runs it at 03:00
    ("30 2 * * *", 2, "2026-03-29 12:00", "2026-03-29 03:00 CEST", "2026-03-30 04:30 CEST"),
    # fall back: 02:30 happens twice on 25 October, the job runs once (the first)
    ("30 2 * * *", 1, "2026-10-25 12:00", "2026-10-25 02:30 CEST", "2026-10-26 03:30 CET"),
    # autumn: 01:00 CEST + 4 h of real time is 04:00 CET
    ("0 1 * * *", 4, "2026-10-25 03:30", "2026-10-24 01:00 CEST", "2026-10-25 04:00 CET"),
    ("0 1 * * *", 4, "2026-10-25 04:00", "2026-10-25 01:00 CEST", "2026-10-26 05:00 CET"),
    # weekdays only: on Monday morning the last closed window is Friday's
    ("0 1 * * 1-5", 4, "2026-11-23 03:00", "2026-11-20 01:00 CET", "2026-11-23 05:00 CET"),
    ("0 1 * * 1-5", 4, "2026-11-22 12:00", "2026-11-20 01:00 CET", "2026-11-23 05:00 CET"),
    # weekly full on Saturday 22:00, 12 h to finish
    ("0 22 * * 6", 12, "2026-11-25 12:00", "2026-11-21 22:00 CET", "2026-11-29 10:00 CET"),
    # monthly on the 1st
    ("0 3 1 * *", 6, "2026-11-22 12:00", "2026-11-01 03:00 CET", "2026-12-01 09:00 CET"),
])
def test_last_closed_window_and_next_deadline(cron, deadline_hours, now, last_start, next_deadline):
    schedule = Schedule(cron, "Europe/Brussels", deadline_hours * HOUR)
    window = schedule.last_closed(at(now))
    assert local(window.start) == last_start
    assert window.deadline == window.start + deadline_hours * HOUR
    assert local(schedule.next_deadline(at(now))) == next_deadline


def test_the_same_cron_in_another_zone_is_another_instant():
    utc = Schedule("0 1 * * *", "UTC", 4 * HOUR).last_closed(at("2026-11-22 12:00"))
    brussels = Schedule("0 1 * * *", "Europe/Brussels", 4 * HOUR).last_closed(at("2026-11-22 12:00"))
    assert utc.start - brussels.start == HOUR


def test_a_window_holds_backups_completed_after_its_start_with_a_little_slack():
    window = Schedule("0 1 * * *", "Europe/Brussels", 4 * HOUR).last_closed(at("2026-11-22 12:00"))
    assert window.holds(at("2026-11-22 03:10"))
    assert window.holds(window.start - EARLY_SLACK + 1)
    assert not window.holds(at("2026-11-21 23:00"))


def test_windows_of_three_weeks_for_a_nightly_schedule():
    windows = Schedule("0 1 * * *", "UTC", 4 * HOUR).windows(at("2026-11-01 00:00"), at("2026-11-22 00:00"))
    assert len(windows) == 21


def test_windows_of_a_month_for_a_weekday_schedule():
    schedule = Schedule("0 1 * * 1-5", "Europe/Brussels", 4 * HOUR)
    windows = schedule.windows(at("2026-11-01 00:00"), at("2026-12-01 00:00"))
    assert len(windows) == 21  # November 2026 has 21 weekdays
    assert all(datetime.fromtimestamp(w.start, BRUSSELS).weekday() < 5 for w in windows)
    assert windows == sorted(windows, key=lambda w: w.start)
