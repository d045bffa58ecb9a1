"""A restic repository (local, sftp, s3, rest, ...), read through the restic CLI.

restic before 0.17 records when a backup started, not when it ended, and no sizes in
`snapshots`; so `completed_at` is the snapshot time and the size of a new snapshot
comes from one `restic stats` call (its result is kept in the history). All reads use
`--no-lock`, so a running backup or a read-only repository never makes it unreachable.
A copy made with `restic copy` names its source in `original`, which is how an
off-site repository is matched to the primary.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.redact import password_in_url
from agent.secrets import Secret, SecretOrValue
from checks.config import VerifyConfig
from checks.model import BackupSnapshot, LocationConfig, VerifyOutcome
from checks.sources.cli import ToolError, last_line, run, ssh_command

_SFTP_URL = re.compile(r"sftp://(?P<target>[^/:]+)(?::(?P<port>\d+))?/")
_SFTP_SHORT = re.compile(r"sftp:(?P<target>[^/:]+):")


class ResticLocation:
    kind = "restic"

    class Config(LocationConfig):
        kind: Literal["restic"]
        repository: str = Field(description="any repository restic reads: a path, `sftp:`, `s3:`, `rest:` "
                                            "(credentials go in `env`, never in the URL)")
        password: Secret = Field(description="the repository password")
        host: str | None = Field(None, description="only snapshots of this host")
        tags: tuple[str, ...] = Field((), description="only snapshots with these tags; each entry a restic "
                                                      "taglist, `a,b` meaning both")
        paths: tuple[str, ...] = Field((), description="only snapshots of these paths")
        env: dict[str, SecretOrValue] = Field({}, description="environment for restic, such as "
                                                              "AWS_ACCESS_KEY_ID: ${cred:s3_id}")
        ca_file: Path | None = Field(None, description="the CA of an https repository (s3, rest) with a private CA")
        key_file: Path | None = Field(None, description="sftp repositories: the SSH key")
        known_hosts: Path | None = Field(None, description="sftp repositories: the pinned host keys")
        binary: str = Field("restic", description="the restic command")

        @field_validator("repository")
        @classmethod
        def _no_password_in_url(cls, repository: str) -> str:
            """A password in the URL would reach argv, `ps` and restic's own error messages."""
            if password_in_url(repository):
                instead = {"s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY under `env:`",
                           "rest": "set RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD under `env:`",
                           "sftp": "restic logs in over SFTP with an SSH key: set key_file"}
                raise ValueError("must not hold a password (user:password@): remove it and " + instead.get(
                    repository.split(":")[0], "set the backend's own variables under `env:`"))
            return repository

    def __init__(self, config: Config, context):
        self.config = config
        cache = hashlib.sha256(config.repository.encode()).hexdigest()[:16]
        self._env = {
            "RESTIC_PASSWORD": config.password.get_secret_value(),
            "RESTIC_CACHE_DIR": str(Path(context.state_dir) / "cache" / "restic" / cache),
            **{name: value.get_secret_value() for name, value in config.env.items()},
        }

    def backups(self) -> list[BackupSnapshot]:
        argv = self._argv("snapshots", "--json", *self._filters())
        listing = _json(run(argv, self._env, self.config.timeout).stdout, "restic snapshots")
        if not isinstance(listing, list):
            raise ToolError("restic snapshots: expected a JSON list")
        snapshots = [_snapshot(entry) for entry in listing]
        return sorted(snapshots, key=lambda snapshot: snapshot.completed_at, reverse=True)

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        """Restore size and file count of one snapshot (restic reads its tree: not free)."""
        argv = self._argv("stats", "--json", "--mode", "restore-size", snapshot.id)
        stats = _json(run(argv, self._env, self.config.timeout).stdout, "restic stats")
        try:
            return replace(snapshot, size_bytes=int(stats["total_size"]), file_count=int(stats["total_file_count"]))
        except (KeyError, TypeError, ValueError):
            raise ToolError("restic stats: unexpected JSON (no total_size/total_file_count)") from None

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        """`restic check`, reading a subset of the data only when configured."""
        subset = [f"--read-data-subset={verify.read_data_subset}"] if verify.read_data_subset else []
        argv = self._argv("check", *subset, read_only=False)
        try:
            done = run(argv, self._env, verify.timeout, ok_codes=(0, 1))
        except ToolError as exc:
            return VerifyOutcome(None, str(exc))
        if done.returncode == 0:
            read = f" (read {verify.read_data_subset})" if subset else ""
            return VerifyOutcome(True, f"restic check: no errors{read}")
        if locked := _lock_conflict(done.stderr):
            return VerifyOutcome(None, f"restic check could not lock the repository (a backup or prune may be "
                                       f"running; retried later): {locked}")
        return VerifyOutcome(False, f"restic check: {last_line(done.stdout + done.stderr) or 'errors found'}")

    def _argv(self, *args: str, read_only: bool = True) -> list[str]:
        config = self.config
        argv = [config.binary, "--repo", config.repository, "--quiet"] + ["--no-lock"] * read_only
        if config.ca_file is not None:
            argv += ["--cacert", str(config.ca_file)]
        if config.repository.startswith("sftp:") and (config.key_file or config.known_hosts):
            argv += ["--option", f"sftp.command={self._sftp_command()}"]
        return argv + list(args)

    def _sftp_command(self) -> str:
        match = _SFTP_URL.match(self.config.repository) or _SFTP_SHORT.match(self.config.repository)
        if match is None:
            raise ToolError(f"cannot read the host of sftp repository {self.config.repository}")
        port = match.groupdict().get("port")
        command = ssh_command(self.config.key_file, self.config.known_hosts, int(port) if port else None)
        return shlex.join(command + [match["target"], "-s", "sftp"])

    def _filters(self) -> list[str]:
        config = self.config
        return ((["--host", config.host] if config.host else [])
                + [arg for tag in config.tags for arg in ("--tag", tag)]
                + [arg for path in config.paths for arg in ("--path", path)])


def _lock_conflict(stderr: str) -> str:
    """restic's line naming who holds the lock, when check failed for a lock (it exits 1 then too)."""
    if "unlock" not in stderr and "unable to create lock" not in stderr:
        return ""
    lines = [line.strip() for line in stderr.splitlines()]
    return next((line for line in lines if "is already locked" in line), last_line(stderr))


def _snapshot(entry: object) -> BackupSnapshot:
    try:
        return BackupSnapshot(
            id=entry["id"],
            completed_at=datetime.fromisoformat(entry["time"]).timestamp(),
            original=entry.get("original", ""),
            paths=tuple(entry.get("paths") or ()),
            detail=f"host {entry.get('hostname', '?')}, {entry.get('short_id', entry['id'][:8])}",
        )
    except (KeyError, TypeError, ValueError):
        raise ToolError("restic snapshots: unexpected JSON (a snapshot without id or time)") from None


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise ToolError(f"{what}: the output is not JSON") from None
