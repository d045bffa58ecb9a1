"""Backups as files (or directories) in a local or mounted directory: `{kind: files, path:, pattern:}`.

Each matching name is one backup, completed when it was last modified; a dump tool that
writes under a temporary name and renames at the end gives exact times. The rules for
names, checksums and archive tests are shared with sftp (checks.sources.filelike).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field, field_validator

from agent.ondisk import BackupFolder
from checks.model import (
    BackupSnapshot,
    Candidate,
    Drilled,
    LocationConfig,
    Measured,
    Sink,
    Verified,
    VerifyConfig,
    VerifyOutcome,
)
from checks.sources import filelike
from checks.sources.filelike import Deadline, Entry, NamePattern


class FilesLocation(Measured, Verified, Drilled):
    kind = "files"

    class Config(LocationConfig):
        kind: Literal["files"]
        path: BackupFolder = Field(description="the directory the backups are written to (absolute)")
        pattern: NamePattern = Field("*", description="which names are backups (fnmatch, such as `db-*.sql.gz`)")

        @field_validator("path")
        @classmethod
        def _absolute(cls, path: Path) -> Path:
            if not path.is_absolute():
                raise ValueError("must be an absolute path (the agent's working directory is not yours)")
            return path

    def __init__(self, config: Config, context):
        self.config = config
        self.where = str(config.path)
        self._clock = context.clock
        self._tree = LocalTree(config.path)

    def backups(self) -> list[BackupSnapshot]:
        return filelike.list_backups(self._tree, self.config.pattern)

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        deadline = Deadline(self._clock, self.config.timeout, f"counting the files in {snapshot.name}")
        return filelike.measure(self._tree, snapshot, deadline)

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        deadline = Deadline(self._clock, verify.timeout, f"verifying {self.config.path}")
        return filelike.verify_newest(self._tree, self.config.pattern, deadline)

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        deadline = Deadline(self._clock, self.config.timeout, f"listing the files of {self.config.path}")
        return filelike.candidates(self._tree, backups, deadline)

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        # a large dump may take longer than one operation's timeout: the drill's own time bounds the read
        unbounded = Deadline(self._clock, math.inf, f"reading {candidate.path}")
        filelike.stream(self._tree, candidate, sink, cancel, unbounded)

    def holds(self, backup_id: str) -> bool:
        return filelike.holds(self._tree, self.config.pattern, backup_id)


class LocalTree:
    def __init__(self, root: Path):
        self.root = root
        self.where = str(root)

    def list(self, directory: str = "") -> list[Entry]:
        entries = []
        with os.scandir(self.root / directory) as listing:
            for item in listing:
                try:
                    attributes = item.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed since the listing (rotation)
                    continue
                if found := filelike.entry(item.name, attributes):
                    entries.append(found)
        return entries

    def open(self, name: str) -> BinaryIO:
        return (self.root / name).open("rb")
