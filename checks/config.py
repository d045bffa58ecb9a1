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

    every: Duration = Field(7 * 86400.0, description="how often the integrity check runs")
    timeout: Duration = Field(6 * 3600.0, description="how long one check may take")
    read_data_subset: str | None = Field(None, description="restic: also read this part of the data "
                                                           "(`5%`, `1/20`, `2GiB`); default: metadata only")
    verify_data: bool = Field(False, description="borg: `check --verify-data` (reads every chunk)")


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
    timeout: Duration = Field(120.0, description="how long one evaluation (both locations) may take")

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
