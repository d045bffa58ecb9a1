"""The location contract: what a backup location reports, what it can do, and what every location's config has.

A location answers one question: which completed backups are here, newest first?
Some can do more, and say so by subclassing the protocol for it (`class ResticLocation(Measured,
Verified, Fingerprinted)`): measure a backup, verify the repository's integrity, fingerprint its
state cheaply. The checks turn those answers, the schedule and the history into one verdict per job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import Field, PrivateAttr, model_validator

from agent.schema import Dispatched, Duration, Name, Size, StrictModel
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


class SlowWork(StrictModel):
    """What integrity checks and restore drills share: a window set by `at` or `schedule` (their own fields)."""

    @model_validator(mode="after")
    def _one_window(self) -> SlowWork:
        if self.at is not None and self.schedule is not None:
            raise ValueError("set `at` or `schedule`, not both")
        return self

    @property
    def window(self) -> str | None:
        """The cron expression of the windows' openings (None: after each backup's deadline)."""
        return self.schedule or self.at


class VerifyConfig(SlowWork):
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

class CompareConfig(StrictModel):
    """Where a drill finds the live source of a backed-up file, to compare what it restored with it."""

    target: Name | Literal["local"] = Field(description="the ssh target (its name under `targets:`) that holds "
                                                        "the source files, or `local` for this host")
    root: str = Field("/", description="where the backed-up paths are on that host (`/` when the backup holds "
                                       "absolute paths)")
    hash: Literal["remote", "stream"] = Field("remote", description="`remote`: `sha256sum` runs on the host; "
                                                                    "`stream`: vigil reads the file over SFTP")
    # the ssh target `target` names and the one it jumps through (its `via:`), given by checks.config.link
    _linked: tuple = PrivateAttr((None, None))

    @property
    def linked(self) -> tuple:
        """(the ssh target's config, its jump host's config or None); (None, None) for `local`."""
        return self._linked


class DrillConfig(SlowWork):
    """Restore drills: now and then, a rotating sample of a backup is restored into a hash and compared."""

    every: Duration = Field(30 * 86400.0, description="how often a drill runs")
    files: Annotated[int, Field(ge=2)] = Field(20, description="how many files each drill restores: the newest, "
                                                               "the largest that fits, and the next in rotation")
    max_bytes: Size = Field(1 << 30, description="the most content a drill reads from the backup (`1GiB`); "
                                                 "repository metadata (indexes, trees) comes on top")
    locations: Literal["primary", "offsite", "both"] = Field("primary", description="which locations are drilled")
    at: At | None = Field(None, description="when a due drill may start, as verify's `at`; default: an hour "
                                            "after each backup's deadline")
    schedule: Cron | None = Field(None, description="the same as a cron expression, instead of `at`")
    timeout: Duration = Field(2 * 3600.0, description="how long one drill of one location may take")
    compare: CompareConfig | None = Field(None, description="also compare restored files with the live source "
                                                            "when its size, mtime and ctime are unchanged")

    def drilled(self, where: str) -> bool:
        return self.locations in (where, "both")


@dataclass(frozen=True)
class Candidate:
    """One file of a backup that a drill may restore: a file in a restic snapshot or borg archive, a dump
    file or object, or a file of a directory backup.

    `path` is printable UTF-8 (as BackupSnapshot.id), `key` how the location reads it again ("" = path).
    `checksum` is what the store or tool recorded for exactly this content ("sha256:<hex>" or
    "md5:<hex>"), and `reference` where it came from (sidecar, s3-sha256, etag-md5, content-md5).
    `version` is the store's tag for exactly this content (an object's ETag), which restore insists on,
    so that an object replaced after it was listed is never read as this candidate ("" = none).
    """

    backup_id: str
    path: str
    size: int
    mtime: float | None = None
    ctime: float | None = None
    key: str = ""
    checksum: str = ""
    reference: str = ""
    version: str = ""


class Sink(Protocol):
    """Where a restore streams the bytes (checks.drill hashes and counts them, and stops at the budget)."""

    def write(self, data: bytes) -> None:
        ...


class DrillDamage(Exception):
    """Restoring showed damage: the tool's integrity error (hash, MAC, CRC, a missing pack or chunk), or fewer
    or more bytes than listed. The message names what is damaged, never a secret."""


class DrillNotRun(Exception):
    """A file could not be restored for a reason that is not damage (lock, network, timeout, cancelled)."""


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


class Drilled(Location, Protocol):
    """A location whose backups can be restored file by file into a hash (restore drills, checks.drill)."""

    def candidates(self, backups: list[BackupSnapshot]) -> Iterable[Candidate]:
        """The files a drill may restore, streamed: restic and borg the files of backups[0] (the newest);
        file-shaped locations every listed backup (each dump or object), a directory backup's files."""
        ...

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """Stream the candidate's bytes out of the backup into `sink`, writing nothing to disk.

        Raises DrillDamage when the backup is damaged, DrillNotRun when it cannot tell; stops promptly
        (DrillNotRun) once `cancel` is set, killing its child or closing its body."""
        ...

    def holds(self, backup_id: str) -> bool:
        """Whether the backup is still there, listed afresh (never from a cache): damage is reported only
        for a backup that was not deleted or pruned meanwhile."""
        ...


def declares(location: object, protocol: type) -> bool:
    """Whether a location (or its class) implements `protocol`: explicitly, by subclassing it, never by
    happening to have a method of that name."""
    return protocol in (location if isinstance(location, type) else type(location)).__mro__
