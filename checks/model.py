"""The location contract: what a backup location reports, what it can do, and what every location's config has.

A location answers one question: which completed backups are here, newest first?
Some can do more, and say so by subclassing the protocol for it (`class ResticLocation(Measured,
Verified, Fingerprinted)`): measure a backup, verify the repository's integrity, fingerprint its
state cheaply. The checks turn those answers, the schedule and the history into one verdict per job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pydantic import Field, model_validator

from agent.schema import Dispatched, Duration, StrictModel
from checks.schedule import At, Cron
from checks.sources import LOCATIONS


@dataclass(frozen=True)
class BackupSnapshot:
    """One completed backup at one location.

    `id` is unique within the location (restic snapshot id, borg archive id, file or
    object name, Veeam session id), always printable UTF-8: a file name that is not UTF-8
    is shown with `\\xe9` escapes and read through `key`. `ok` is the tool's own verdict where it has one
    (Veeam Success/Warning/Failed), else None. `name`, `checksum`, `original` and
    `paths` let the checks decide whether an off-site backup is the same backup as a
    primary one.
    """

    id: str
    completed_at: float  # seconds since the epoch
    size_bytes: int | None = None
    file_count: int | None = None
    ok: bool | None = None
    detail: str = ""
    name: str = ""  # file, object or archive name
    checksum: str = ""  # "sha256:<hex>" or "md5:<hex>" where known
    original: str = ""  # restic: the snapshot this one was copied from
    paths: tuple[str, ...] = ()  # restic: the backed-up paths
    duration: float | None = None  # seconds the backup took, where the tool says
    key: str = ""  # files: the name as the file system spells it, to read it again ("": the name)


@dataclass(frozen=True)
class VerifyOutcome:
    """An integrity check: ok True (sound), False (damage found), None (could not check)."""

    ok: bool | None
    detail: str = ""


class LocationConfig(Dispatched):
    """The keys every location has; each location class's `Config` subclasses this."""

    KINDS: ClassVar[Mapping[str, str]] = LOCATIONS
    timeout: Duration = Field(120.0, description="how long each operation (a tool's command, a listing) may take")


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


class Location(Protocol):
    """A backup location (checks.sources.LOCATIONS names every kind); its methods block (tools, SDKs)."""

    kind: ClassVar[str]
    config: LocationConfig
    where: str  # how messages name it: its repository, URL or folder

    def backups(self) -> list[BackupSnapshot]:
        """The completed backups here, newest first; raises with a clear reason when the location cannot be read."""
        ...

    def close(self) -> None:
        """End what is kept between polls (a connection); the default keeps nothing."""


class Measured(Location, Protocol):
    """A location whose listing leaves out what costs more to learn (size, file count, duration)."""

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        """The backup with what its listing left out; called once per new backup."""
        ...


class Verified(Location, Protocol):
    """A location whose integrity can be checked (restic check, borg check, checksums), on its own slow schedule."""

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        ...


class Fingerprinted(Location, Protocol):
    """A repository whose state can be read cheaply, so that an unchanged one is not listed again
    (checks.sources.listing)."""

    def fingerprint(self) -> str:
        """A short digest of the repository's state; raises when its layout cannot be read (the tool lists it)."""
        ...


def declares(location: object, protocol: type) -> bool:
    """Whether a location (or its class) implements `protocol`: explicitly, by subclassing it, never by
    happening to have a method of that name."""
    return protocol in (location if isinstance(location, type) else type(location)).__mro__
