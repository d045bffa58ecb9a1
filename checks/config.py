"""A backup job in the config: where the backups are, when they are due, what is enough."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from cronsim import CronSim
from pydantic import Field, model_validator

from agent.schema import Duration, Name, Size, StrictModel, dispatched
from agent.units import format_duration, parse_duration
from checks.model import DrillConfig, Drilled, LocationConfig, Verified, VerifyConfig, declares
from checks.schedule import Cron, TimeZone, local_timezone
from checks.sources import LOCATIONS, location_class

AnyLocation = dispatched(LocationConfig, "location")  # its `kind:` picks the model


class BackupJobConfig(StrictModel):
    """A backup job: where its backups are, when they are due, what is enough."""

    name: Name = Field(description="the job's name: the `backup` label of its series")
    schedule: Cron = Field(description="when the backup starts, as cron (`0 1 * * *`), in `timezone`")
    timezone: TimeZone = Field(default_factory=local_timezone,
                               description="IANA zone of the schedule (default: the host's zone)")
    deadline: Duration = Field(description="how long after the scheduled start the backup must be complete")
    primary: AnyLocation = Field(description="where the backups are (a location, see below)")
    offsite: AnyLocation | None = Field(None, description="where their off-site copy is (a location)")
    max_lag: Duration = Field(86400.0, description="how far the off-site copy may trail the primary")
    min_size: Size | None = Field(None, description="a backup below this is `too_small`")
    max_shrink: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="`shrunk` when the newest backup is this fraction (0.2) below the median of the "
                          "last 7")
    verify: VerifyConfig | None = Field(None, description="integrity checks, on their own slow schedule")
    drill: DrillConfig | None = Field(None, description="restore drills: a sample of the backup restored and "
                                                        "compared, on their own slow schedule")
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
                if location is not None and not declares(location_class(location.kind), Verified):
                    raise ValueError(f"verify: is not available for {location.kind} locations ({where})")
        if self.drill is not None:
            for where in ("primary", "offsite"):
                location = getattr(self, where)
                if self.drill.drilled(where) and location is None:
                    raise ValueError(f"drill: locations: {self.drill.locations} names {where}, which the job "
                                     "does not have")
                if self.drill.drilled(where) and not declares(location_class(location.kind), Drilled):
                    raise ValueError(f"drill: is not available for {location.kind} locations ({where})"
                                     + (": Veeam's restore tests are SureBackup's, in Veeam"
                                        if location.kind == "veeam" else ""))
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
    return found + _compare_warnings(job)


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


def link(job: BackupJobConfig, targets: Mapping[str, object]) -> list[tuple[tuple, str]]:
    """A drill's `compare.target` -> that ssh target (and its jump host), kept on the CompareConfig for
    checks.sources.livesource; problems as (key path in the job, message)."""
    compare = job.drill.compare if job.drill else None
    if compare is None or compare.target == "local":
        return []
    from agent.net.ssh import SshFields  # paramiko, only for a config that compares over SSH

    target = targets.get(compare.target)
    if not isinstance(target, SshFields):
        servers = ", ".join(sorted(name for name, each in targets.items() if isinstance(each, SshFields)))
        what = (f"`{compare.target}` is a {target.kind} target, not an ssh one" if target is not None
                else f"no target is named `{compare.target}`")
        return [(("drill", "compare", "target"), f"{what}: the live source is read over SSH from an ssh target "
                                                 f"({servers or 'none configured'}), or `local` on this host")]
    via = getattr(target, "via", None)
    compare._linked = (target, targets.get(via) if via else None)
    return []


def _compare_warnings(job: BackupJobConfig) -> list[tuple[tuple, str]]:
    """A live source that can vouch for no file: every one would be skipped."""
    compare = job.drill.compare if job.drill else None
    if compare is None:
        return []
    server = compare.linked[0]
    if getattr(server, "os", "") == "windows":
        return [(("drill", "compare", "target"), f"`{server.name}` runs Windows, whose ctime is the creation time: "
                                                 "every file would be skipped; compare with a Linux server")]
    drilled = {getattr(job, where).kind for where in ("primary", "offsite") if job.drill.drilled(where)}
    if not drilled & {"restic", "borg"}:
        return [(("drill", "compare"), f"only restic and borg record the ctime the live source is compared by: "
                                       f"every file of {' and '.join(sorted(drilled))} locations would be skipped")]
    return []
