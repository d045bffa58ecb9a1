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
from checks.model import LocationConfig

Location = dispatched(LocationConfig, "location")


def _check_cron(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a cron expression such as \"0 1 * * *\" (quote it)")
    try:
        CronSim(value, _EPOCH)
    except CronSimError as exc:
        raise ValueError(f"`{value}` is not a valid cron expression: {exc}") from None
    return value


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
TimeZone = Annotated[str, PlainValidator(_check_timezone)]


class VerifyConfig(StrictModel):
    """Integrity checks, on their own slow schedule (they read data, polls do not)."""

    every: Duration = 7 * 86400.0
    timeout: Duration = 6 * 3600.0
    read_data_subset: str | None = None  # restic check --read-data-subset (5%, 1/20, 2GiB)
    verify_data: bool = False  # borg check --verify-data (reads every chunk)


class BackupJobConfig(StrictModel):
    name: Name
    schedule: Cron
    timezone: TimeZone = Field(default_factory=local_timezone)
    deadline: Duration  # how long after the scheduled start the backup must be complete
    primary: Location
    offsite: Location | None = None
    max_lag: Duration = 86400.0  # how far the off-site copy may trail the primary
    min_size: Size | None = None
    max_shrink: Annotated[float, Field(gt=0, lt=1)] | None = None  # vs the median of recent backups
    verify: VerifyConfig | None = None
    interval: Duration = 300.0  # how often the job is evaluated
    timeout: Duration = 120.0  # for one evaluation (listing both locations)

    @model_validator(mode="after")
    def _verify_supported(self) -> BackupJobConfig:
        if self.verify is not None:
            from agent import registry

            for where in ("primary", "offsite"):
                location = getattr(self, where)
                if location is not None and not hasattr(registry.location_class(location.kind), "verify"):
                    raise ValueError(f"verify: is not available for {location.kind} locations ({where})")
        if self.timeout >= self.interval:
            raise ValueError("the timeout must be shorter than the interval")
        return self
