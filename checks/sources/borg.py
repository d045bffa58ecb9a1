"""A borg repository (local or over SSH), read through the borg CLI.

borg prints times without a zone, in the local time of whoever runs it: vigil runs it
with TZ=UTC so the times mean one thing everywhere. Listing and sizing use
`--bypass-lock`, so a backup holding the repository lock does not make it unreachable;
only `borg check` takes the lock, on its own schedule.

A listing is reused while the repository's latest transaction is the same
(checks.sources.listing), and shared by the jobs over one repository with one glob.

Restore drills (checks.drill) read the newest archive's files with `list --json-lines` and
restore each with `extract --stdout`, both `--bypass-lock`, so a running `borg create` is
neither waited for nor disturbed: borg checks each chunk's CRC, MAC and ID as it reads it,
and with BORG_EXIT_CODES=modern borg 1.4 says damage (90, 17) and a lock (73) by its exit
status too; borg 1.2 exits 2 for every error, so its words decide.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.ondisk import KeyFile, KnownHosts, Program, Repository
from agent.redact import password_in_url
from agent.secrets import Secret
from checks.model import (
    BackupSnapshot,
    Candidate,
    DrillDamage,
    Drilled,
    DrillNotRun,
    Fingerprinted,
    LocationConfig,
    Measured,
    Sink,
    Verified,
    VerifyConfig,
    VerifyOutcome,
)
from checks.sources import cli
from checks.sources.cli import ToolError, count, run, seconds, ssh_command, ssh_failure
from checks.sources.fingerprints import LayoutReader
from checks.sources.listing import LISTINGS

LISTED = 50  # newest archives considered per poll
CHECK_ERRORS, CHECK_CANNOT_ACCESS = 1, 2
EXTRACT_TIMEOUT = 2 * 3600.0  # one file's extract at most (the drill's default timeout); the drill's cancel comes first
# borg 1.4's exit statuses with BORG_EXIT_CODES=modern (borg 1.2 exits 2 for every error): IntegrityError and
# ObjectNotFound are damage, LockTimeout is a lock
INTEGRITY_ERROR, OBJECT_NOT_FOUND, LOCK_TIMEOUT = 90, 17, 73


class BorgLocation(Measured, Verified, Fingerprinted, Drilled):
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

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        """The regular files of the newest archive, streamed from `borg list --json-lines`; `key` is the
        archive's name, which `borg extract` addresses it by. A file borg knows is damaged (`healthy`: false,
        all-zero chunks put in by `check --repair`) stays a candidate: restoring it reports the damage."""
        if not backups:
            return
        archive = backups[0]
        argv = [self.config.binary, "list", "--json-lines", "--bypass-lock", "--format", "{size}{mtime}{ctime}",
                f"{self.config.repository}::{archive.name}"]
        for item in cli.json_lines(argv, self._drill_env, self.config.timeout, what="borg list",
                                   where=self.config.repository):
            if candidate := _candidate(archive, item):
                yield candidate

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """`borg extract --stdout` of one file: borg checks each chunk's CRC, MAC and ID as it reads it."""
        # pp: the path as a path, never a pattern (pf: does too, but borg 1.2 then warns it never matched)
        argv = [self.config.binary, "extract", "--stdout", "--bypass-lock",
                f"{self.config.repository}::{candidate.key}", f"pp:{candidate.path}"]
        try:
            cli.restore(argv, self._drill_env, EXTRACT_TIMEOUT, candidate, sink, cancel, what="borg extract",
                        where=self.config.repository, damage=_damage, busy=_lock_conflict)
        except DrillNotRun:
            if cancel.is_set() or not self._unhealthy(candidate):
                raise
            raise DrillDamage(f"{candidate.path}: borg extract: the file has damaged (all-zero) chunks (borg "
                              "lists it as not healthy)") from None

    def _unhealthy(self, candidate: Candidate) -> bool:
        """Whether borg lists the file as damaged: borg 1.4 says only "backup error" when extracting it."""
        argv = [self.config.binary, "list", "--json-lines", "--bypass-lock", "--format", "{path}",
                f"{self.config.repository}::{candidate.key}", f"pp:{candidate.path}"]
        try:
            return any(item.get("path") == candidate.path and item.get("healthy") is False
                       for item in cli.json_lines(argv, self._drill_env, self.config.timeout, what="borg list",
                                                  where=self.config.repository))
        except DrillNotRun:
            return False

    def holds(self, backup_id: str) -> bool:
        """Whether the archive is still there, listed now (not from LISTINGS)."""
        try:
            listing = self._json("list", "--json", "--bypass-lock", self.config.repository)
        except ToolError as exc:
            raise DrillNotRun(str(exc)) from None
        archives = listing.get("archives") if isinstance(listing, dict) else None
        return isinstance(archives, list) and any(isinstance(archive, dict) and archive.get("id") == backup_id
                                                  for archive in archives)

    @property
    def _drill_env(self) -> dict[str, str]:
        """borg 1.4 then tells damage (90, 17) and a lock (73) by its exit status too."""
        return {**self._env, "BORG_EXIT_CODES": "modern"}

    def _json(self, *args: str) -> dict:
        done = run([self.config.binary, *args], self._env, self.config.timeout, what=f"borg {args[0]}",
                   where=self.config.repository)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise ToolError(f"borg {args[0]}: the output is not JSON") from None


# What `borg extract` says when the repository is damaged (1.2 and 1.4): a segment entry's CRC, a chunk's MAC
# or ID, a chunk the index names but no segment holds, a file with all-zero chunks, a segment file gone
_DAMAGE = ("Segment entry checksum mismatch", "id verification failed", "damaged (all-zero) chunks",
           "ObjectNotFound", "Object with key", "IntegrityError", "Data integrity error", "MAC Authentication failed")
_SEGMENT_MISSING = re.compile(r"(?:FileNotFoundError|No such file or directory).*/data/\d+/\d+'?$")


def _damage(failed: subprocess.CalledProcessError) -> str:
    """What borg said that shows damage (the first such line); "" when it said something else."""
    lines = [line.strip().removeprefix("Remote: ") for line in failed.stderr.splitlines() if line.strip()]
    if missing := next((line for line in lines if _SEGMENT_MISSING.search(line)), None):
        return f"a segment is missing ({missing.rpartition(': ')[2]})"
    found = next((line for line in lines if any(words in line for words in _DAMAGE)), "")
    if not found and failed.returncode in (INTEGRITY_ERROR, OBJECT_NOT_FOUND):
        return cli.last_line(failed.stderr) or f"exit status {failed.returncode}"
    return found


def _lock_conflict(stderr: str) -> str:
    """borg's line about the lock it could not get (never with --bypass-lock, but a remote borg may differ)."""
    lines = [line.strip() for line in stderr.splitlines()]
    return next((line for line in lines if "Failed to create/acquire the lock" in line or "LockTimeout" in line), "")


def _candidate(archive: BackupSnapshot, item: dict) -> Candidate | None:
    """A regular file of `borg list --json-lines`."""
    path = item.get("path")
    if item.get("type") != "-" or not isinstance(path, str) or not path:
        return None
    try:
        size = count(item.get("size", 0))
    except ValueError:
        return None
    return Candidate(backup_id=archive.id, path=path, size=size, mtime=cli.timestamp(item.get("mtime")),
                     ctime=cli.timestamp(item.get("ctime")), key=archive.name)


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
