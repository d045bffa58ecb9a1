"""What a backup location reports, and what every location's config has.

A location answers one question: which completed backups are here, newest first?
The checks turn those answers, the schedule and the history into one verdict per job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from agent.schema import Dispatched, Duration
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
