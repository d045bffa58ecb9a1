"""A backup job in the config: where the backups are, when they are due, what is enough."""

from __future__ import annotations

import difflib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import Field, PlainValidator, model_validator

from agent.schema import Duration, Name, Size, StrictModel, dispatched
from agent.units import format_duration, parse_duration
from checks.model import LocationConfig
from checks.sources import LOCATIONS, location_class

Location = dispatched(LocationConfig, "location")


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


class VerifyConfig(StrictModel):
    """Integrity checks, on their own slow schedule (they read data, polls do not)."""

    every: Duration = Field(7 * 86400.0, description="how often the integrity check runs")
    at: At | None = Field(None, description="when a due check may start, in the job's time zone: `Sun 10:00`, "
                                            "`Mon,Thu 22:30` or `10:00`; default: an hour after each backup's "
                                            "deadline, clear of the backup's own window")
    schedule: Cron | None = Field(None, description="the same as a cron expression, instead of `at`")
    timeout: Duration = Field(6 * 3600.0, description="how long one check may take")
    read_data_subset: str | None = Field(None, description="restic: also read this part of the data "
                                                           "(`5%`, `1/20`, `2GiB`); default: metadata only")
    verify_data: bool = Field(False, description="borg: `check --verify-data` (reads every chunk)")

    @model_validator(mode="after")
    def _one_window(self) -> VerifyConfig:
        if self.at is not None and self.schedule is not None:
            raise ValueError("set `at` or `schedule`, not both")
        return self

    @property
    def window(self) -> str | None:
        """The cron expression of the check windows' openings (None: after each backup's deadline)."""
        return self.schedule or self.at


class BackupJobConfig(StrictModel):
    """A backup job: where its backups are, when they are due, what is enough."""

    name: Name = Field(description="the job's name: the `backup` label of its series")
    schedule: Cron = Field(description="when the backup starts, as cron (`0 1 * * *`), in `timezone`")
    timezone: TimeZone = Field(default_factory=local_timezone,
                               description="IANA zone of the schedule (default: the host's zone)")
    deadline: Duration = Field(description="how long after the scheduled start the backup must be complete")
    primary: Location = Field(description="where the backups are (a location, see below)")
    offsite: Location | None = Field(None, description="where their off-site copy is (a location)")
    max_lag: Duration = Field(86400.0, description="how far the off-site copy may trail the primary")
    min_size: Size | None = Field(None, description="a backup below this is `too_small`")
    max_shrink: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="`shrunk` when the newest backup is this fraction (0.2) below the median of the "
                          "last 7")
    verify: VerifyConfig | None = Field(None, description="integrity checks, on their own slow schedule")
    interval: Duration = Field(300.0, description="how often the job is evaluated (metadata only)")
    timeout: Duration = Field(120.0, description="how long one evaluation (both locations, read at once) may "
                                                 "take: a location with no answer by 90% of it is unreachable; the "
                                                 "default is cut to 80% of a shorter interval")

    @model_validator(mode="before")
    @classmethod
    def _default_timeout_fits(cls, data: object) -> object:
        """As for targets: an inherited timeout never conflicts with a short interval."""
        if isinstance(data, dict) and "timeout" not in data and "interval" in data:
            try:
                interval = parse_duration(data["interval"])
            except ValueError:
                return data  # the interval's own error says what is wrong
            return {**data, "timeout": min(120.0, interval * 0.8)}
        return data

    @model_validator(mode="after")
    def _verify_supported(self) -> BackupJobConfig:
        if self.verify is not None:
            for where in ("primary", "offsite"):
                location = getattr(self, where)
                if location is not None and not hasattr(location_class(location.kind), "verify"):
                    raise ValueError(f"verify: is not available for {location.kind} locations ({where})")
        if self.timeout >= self.interval:
            raise ValueError("the timeout must be shorter than the interval")
        return self


def warnings(job: BackupJobConfig) -> list[tuple[tuple, str]]:
    """What is legal in a backup job but surely not meant (check-config says it; the agent logs it)."""
    found = []
    subset = job.verify.read_data_subset if job.verify else None
    if subset and _fraction(subset) is not None and _fraction(subset) > 1:
        found.append((("verify", "read_data_subset"), f"`{subset}` is more than all of the data: restic "
                                                      "reads at most 100%"))
    if "max_lag" in job.model_fields_set and job.offsite is None:
        found.append((("max_lag",), "max_lag is set but the job has no offsite: location; it does nothing"))
    period = _shortest_period(job.schedule, job.timezone)
    if period is not None and job.deadline > period:
        found.append((("deadline",), f"the deadline ({format_duration(job.deadline)}) is longer than the time "
                                     f"between two scheduled runs ({format_duration(period)}): a run would be "
                                     "judged after the next one started"))
    return found


def _fraction(subset: str) -> float | None:
    """`150%` -> 1.5, `3/2` -> 1.5; sizes (`2GiB`) have no fraction."""
    try:
        if subset.endswith("%"):
            return float(subset[:-1]) / 100
        if "/" in subset:
            numerator, denominator = subset.split("/", 1)
            return int(numerator) / int(denominator)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _shortest_period(cron: str, timezone: str) -> float | None:
    """The shortest time between consecutive runs over the next weeks."""
    runs = CronSim(cron, datetime.now(ZoneInfo(timezone)))
    times = [next(runs, None) for _ in range(40)]
    times = [t for t in times if t is not None]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else None


def reference() -> list[tuple[str, type, type | None]]:
    """What docs/config.md says of the backup jobs: a job's keys, the keys every location has, each location
    kind's own (title, model, the model whose keys are documented already)."""
    return [("`backups:`", BackupJobConfig, None),
            ("Backup locations (`primary:`, `offsite:`), every kind", LocationConfig, None),
            *((f"Location `kind: {kind}`", location_class(kind).Config, LocationConfig) for kind in sorted(LOCATIONS))]
