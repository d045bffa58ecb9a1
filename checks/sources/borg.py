"""A borg repository (local or over SSH), read through the borg CLI.

borg prints times without a zone, in the local time of whoever runs it: vigil runs it
with TZ=UTC so the times mean one thing everywhere. Listing and sizing use
`--bypass-lock`, so a backup holding the repository lock does not make it unreachable;
only `borg check` takes the lock, on its own schedule.

A listing is reused while the repository's latest transaction is the same
(checks.sources.listing), and shared by the jobs over one repository with one glob.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.ondisk import KeyFile, KnownHosts, Program, Repository
from agent.redact import password_in_url
from agent.secrets import Secret
from checks.model import BackupSnapshot, Fingerprinted, LocationConfig, Measured, Verified, VerifyConfig, VerifyOutcome
from checks.sources.cli import ToolError, count, run, seconds, ssh_command, ssh_failure
from checks.sources.fingerprints import LayoutReader
from checks.sources.listing import LISTINGS

LISTED = 50  # newest archives considered per poll
CHECK_ERRORS, CHECK_CANNOT_ACCESS = 1, 2


class BorgLocation(Measured, Verified, Fingerprinted):
    kind = "borg"

    class Config(LocationConfig):
        kind: Literal["borg"]
        repository: Repository = Field(description="`/srv/borg/repo` or `ssh://user@host:22/./repo`")
        passphrase: Secret | None = Field(None, description="the passphrase (none for unencrypted repositories)")
        glob: str | None = Field(None, description="only archives whose names match, such as `fileserver-*`")
        key_file: KeyFile | None = Field(None, description="ssh repositories: the SSH key")
        known_hosts: KnownHosts | None = Field(None, description="ssh repositories: the pinned host keys")
        binary: Program = Field("borg", description="the borg command")

        @field_validator("repository")
        @classmethod
        def _no_password_in_url(cls, repository: str) -> str:
            """A password in the URL would reach argv, `ps` and borg's own error messages."""
            if password_in_url(repository):
                raise ValueError("must not hold a password (ssh://user:password@): borg logs in with an SSH key; "
                                 "remove the password and set key_file")
            return repository

    def __init__(self, config: Config, context):
        self.config = config
        self.context = context
        self.where = config.repository
        self.layout = LayoutReader(config, context)  # the fingerprint's connection, kept between polls
        base = hashlib.sha256(config.repository.encode()).hexdigest()[:16]
        self._env = {
            "TZ": "UTC",
            "BORG_BASE_DIR": str(Path(context.state_dir) / "cache" / "borg" / base),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",  # read-only monitoring of a moved repository
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_PASSPHRASE": config.passphrase.get_secret_value() if config.passphrase else "",
        }
        if config.key_file or config.known_hosts:
            self._env["BORG_RSH"] = " ".join(ssh_command(config.key_file, config.known_hosts))

    def backups(self) -> list[BackupSnapshot]:
        key = hashlib.sha256(json.dumps([self.config.binary, self.config.repository, self.config.glob,
                                         sorted(self._env.items())]).encode()).hexdigest()
        return LISTINGS.get(key, self, self.context.clock.time(), self._listing)

    def _listing(self) -> list[BackupSnapshot]:
        glob = ["--glob-archives", self.config.glob] if self.config.glob else []
        listing = self._json("list", "--json", "--bypass-lock", "--last", str(LISTED), *glob, self.config.repository)
        try:
            archives = [BackupSnapshot(id=_text(a["id"]), name=_text(a["name"]), completed_at=_utc(a["time"]))
                        for a in listing["archives"]]
        except (KeyError, TypeError, ValueError):
            raise ToolError("borg list: unexpected JSON (an archive without id, name or time)") from None
        return sorted(archives, key=lambda archive: archive.completed_at, reverse=True)

    def fingerprint(self) -> str:
        return self.layout.borg_transaction()

    def close(self) -> None:
        self.layout.close()

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        """End time, duration, size and file count of one archive (`borg info`)."""
        return _measured(snapshot, self._json("info", "--json", "--bypass-lock",
                                              f"{self.config.repository}::{snapshot.name}"))

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        """`borg check`: rc 1 means damage found, rc 2 that the repository could not be read
        (a lock held by a running backup is rc 2 too: could not check, never damage)."""
        argv = [self.config.binary, "check", *(["--verify-data"] * verify.verify_data), self.config.repository]
        try:
            done = run(argv, self._env, verify.timeout, ok_codes=(0, CHECK_ERRORS, CHECK_CANNOT_ACCESS),
                       what="borg check", where=self.config.repository)
        except ToolError as exc:
            return VerifyOutcome(None, str(exc))
        message = ssh_failure(done.stderr) or (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode == 0:
            return VerifyOutcome(True, "borg check: no errors" + " (data verified)" * verify.verify_data)
        if done.returncode == CHECK_ERRORS:
            return VerifyOutcome(False, f"borg check: {message or 'errors found'}")
        if "lock" in message:  # "Failed to create/acquire the lock ... (timeout)."
            return VerifyOutcome(None, f"borg check could not lock the repository (a backup may be running; "
                                       f"retried later): {message}")
        return VerifyOutcome(None, f"borg check could not read {self.config.repository}: {message}")

    def _json(self, *args: str) -> dict:
        done = run([self.config.binary, *args], self._env, self.config.timeout, what=f"borg {args[0]}",
                   where=self.config.repository)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise ToolError(f"borg {args[0]}: the output is not JSON") from None


def _measured(snapshot: BackupSnapshot, info: object) -> BackupSnapshot:
    try:
        archive = info["archives"][0]
        return replace(snapshot, completed_at=_utc(archive["end"]), duration=seconds(archive["duration"]),
                       size_bytes=count(archive["stats"]["original_size"]),
                       file_count=count(archive["stats"]["nfiles"]))
    except (KeyError, IndexError, TypeError, ValueError):
        raise ToolError("borg info: unexpected JSON (no end, duration or stats, or one out of range)") from None


def _text(value: object) -> str:
    """An id or a name: a string, else TypeError (a list as an id would be unhashable later)."""
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r:.40}")
    return value


def _utc(stamp: str) -> float:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
