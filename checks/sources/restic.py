"""A restic repository (local, sftp, s3, rest, ...), read through the restic CLI.

restic before 0.17 records when a backup started, not when it ended, and no sizes in
`snapshots`; so `completed_at` is the snapshot time and the size of a new snapshot
comes from one `restic stats` call (its result is kept in the history). restic 0.17+
adds a `summary` (backup_start, backup_end, totals processed): then `backup_end` is the
completion and no `stats` call is needed. All reads use
`--no-lock`, so a running backup or a read-only repository never makes it unreachable.
A copy made with `restic copy` names its source in `original`, which is how an
off-site repository is matched to the primary.

The repository is listed whole, once for every job over it, and again only when the
names under `snapshots/` change (checks.sources.listing); each job's host, tag and path
filters are applied here, as restic applies them.

Restore drills (checks.drill) read the newest snapshot's files with `ls --json` and restore
each with `dump`, both `--no-lock`: restic checks every blob's MAC and hash as it reads it,
so what it says tells damage (a failed MAC or hash, a missing pack, a listed file missing)
from a drill that could not run. restic 0.14 retries loading a missing pack for about 90 s
(restic 0.17 gives up at once): the drill knows from the first retry's words and ends the
dump then. Other retries (a network that fails) are bounded by the drill's cancel, which
its timeout sets, and by DUMP_TIMEOUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.ondisk import CaFile, KeyFile, KnownHosts, Program, Repository
from agent.redact import password_in_url
from agent.secrets import Secret, SecretOrValue
from checks.model import (
    BackupSnapshot,
    Candidate,
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
from checks.sources.cli import ToolError, count, last_line, run, ssh_command, ssh_failure
from checks.sources.fingerprints import LayoutReader
from checks.sources.listing import LISTINGS

_SFTP_URL = re.compile(r"sftp://(?P<target>[^/:]+)(?::(?P<port>\d+))?/")
_SFTP_SHORT = re.compile(r"sftp:(?P<target>[^/:]+):")
DUMP_TIMEOUT = 2 * 3600.0  # one file's dump at most (the drill's default timeout); the drill's cancel comes first


class ResticLocation(Measured, Verified, Fingerprinted, Drilled):
    kind = "restic"

    class Config(LocationConfig):
        kind: Literal["restic"]
        repository: Repository = Field(description="any repository restic reads: a path, `sftp:`, `s3:`, `rest:` "
                                                   "(credentials go in `env`, never in the URL)")
        password: Secret = Field(description="the repository password")
        host: str | None = Field(None, description="only snapshots of this host")
        tags: tuple[str, ...] = Field((), description="only snapshots with these tags; each entry a restic "
                                                      "taglist, `a,b` meaning both")
        paths: tuple[str, ...] = Field((), description="only snapshots of these paths")
        env: dict[str, SecretOrValue] = Field({}, description="environment for restic, such as "
                                                              "AWS_ACCESS_KEY_ID: ${cred:s3_id}; restic gets these and "
                                                              "only the basics of the agent's environment (PATH, HOME, "
                                                              "locale, TZ, proxies)")
        ca_file: CaFile | None = Field(None, description="the CA of an https repository (s3, rest) with a private CA")
        key_file: KeyFile | None = Field(None, description="sftp repositories: the SSH key")
        known_hosts: KnownHosts | None = Field(None, description="sftp repositories: the pinned host keys")
        binary: Program = Field("restic", description="the restic command")

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
        self.context = context
        self.where = config.repository
        self.layout = LayoutReader(config, context)  # the fingerprint's connections, kept between polls
        cache = hashlib.sha256(config.repository.encode()).hexdigest()[:16]
        self._env = {
            "RESTIC_PASSWORD": config.password.get_secret_value(),
            "RESTIC_CACHE_DIR": str(Path(context.state_dir) / "cache" / "restic" / cache),
            **{name: value.get_secret_value() for name, value in config.env.items()},
        }

    def backups(self) -> list[BackupSnapshot]:
        listing = LISTINGS.get(self._listing_key(), self, self.context.clock.time(), self._listing)
        snapshots = [_snapshot(entry) for entry in listing if self._selected(entry)]
        return sorted(snapshots, key=lambda snapshot: snapshot.completed_at, reverse=True)

    def _listing(self) -> list:
        listing = _json(self._run("snapshots", "--json").stdout, "restic snapshots")
        if not isinstance(listing, list) or not all(isinstance(entry, dict) for entry in listing):
            raise ToolError("restic snapshots: expected a JSON list of snapshots")
        if not all(_well_typed(entry) for entry in listing):
            raise ToolError("restic snapshots: unexpected JSON (a snapshot's id, host, paths or tags of the "
                            "wrong type)")
        return listing

    def _listing_key(self) -> str:
        """Jobs share a listing only with the same repository, tool and credentials."""
        config = self.config
        return hashlib.sha256(json.dumps([config.binary, config.repository, sorted(self._env.items()),
                                          *map(str, (config.ca_file, config.key_file, config.known_hosts))]).encode()
                              ).hexdigest()

    def _selected(self, entry: dict) -> bool:
        """restic's own filters: the host; any of the taglists, each wholly; every one of the paths."""
        config = self.config
        tags = set(entry.get("tags") or ())
        paths = {os.path.normpath(path) for path in entry.get("paths") or ()}
        return ((config.host is None or entry.get("hostname") == config.host)
                and (not config.tags or any(_taglist_matches(taglist, tags) for taglist in config.tags))
                and all(os.path.normpath(path) in paths for path in config.paths))

    def fingerprint(self) -> str:
        return self.layout.restic_snapshots()

    def close(self) -> None:
        self.layout.close()

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        """Restore size and file count of one snapshot (restic reads its tree: not free)."""
        stats = _json(self._run("stats", "--json", "--mode", "restore-size", snapshot.id).stdout, "restic stats")
        try:
            return replace(snapshot, size_bytes=count(stats["total_size"]),
                           file_count=count(stats["total_file_count"]))
        except (KeyError, TypeError, ValueError):
            raise ToolError("restic stats: unexpected JSON (no total_size/total_file_count)") from None

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        """`restic check`, reading a subset of the data only when configured."""
        subset = [f"--read-data-subset={verify.read_data_subset}"] if verify.read_data_subset else []
        argv = self._argv("check", *subset, read_only=False)
        try:
            done = run(argv, self._env, verify.timeout, ok_codes=(0, 1), what="restic check",
                       where=self.config.repository)
        except ToolError as exc:
            return VerifyOutcome(None, str(exc))
        if done.returncode == 0:
            read = f" (read {verify.read_data_subset})" if subset else ""
            return VerifyOutcome(True, f"restic check: no errors{read}")
        if locked := _lock_conflict(done.stderr):
            return VerifyOutcome(None, f"restic check could not lock the repository (a backup or prune may be "
                                       f"running; retried later): {locked}")
        if ssh := ssh_failure(done.stderr):  # restic exits 1 when it cannot open the repository too
            return VerifyOutcome(None, f"restic check on {self.config.repository}: ssh: {ssh}")
        if "unable to open" in done.stderr or "wrong password" in done.stderr:
            return VerifyOutcome(None, f"restic check could not open the repository: {last_line(done.stderr)}")
        return VerifyOutcome(False, f"restic check: {last_line(done.stdout + done.stderr) or 'errors found'}")

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        """The regular files of the newest snapshot, streamed from `restic ls --json` (no content IDs: restic
        0.14 has no `cat tree` for them)."""
        if not backups:
            return
        snapshot = backups[0]
        for node in cli.json_lines(self._argv("ls", "--json", snapshot.id), self._env, self.config.timeout,
                                   what="restic ls", where=self.config.repository):
            if candidate := _candidate(snapshot.id, node):
                yield candidate

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """`restic dump` of one file: restic checks each blob's MAC and hash as it reads it. A missing pack
        is damage at restic's first retry (restic 0.14 retries a load for about 90 s, later ones not at all);
        other failures, network ones included, retry as restic does, bounded by the cancel of the drill's
        timeout and by DUMP_TIMEOUT."""
        cli.restore(self._argv("dump", candidate.backup_id, candidate.key or candidate.path), self._env,
                    DUMP_TIMEOUT, candidate, sink, cancel, what="restic dump", where=self.config.repository,
                    damage=_damage, busy=_lock_conflict, give_up=_missing_pack)

    def holds(self, backup_id: str) -> bool:
        """Whether the snapshot is still there, listed now (not from LISTINGS)."""
        try:
            listed = _json(self._run("snapshots", "--json", backup_id).stdout, "restic snapshots")
        except ToolError as exc:
            raise DrillNotRun(str(exc)) from None
        return isinstance(listed, list) and any(isinstance(entry, dict) and entry.get("id") == backup_id
                                                for entry in listed)

    def _run(self, command: str, *args: str):
        return run(self._argv(command, *args), self._env, self.config.timeout, what=f"restic {command}",
                   where=self.config.repository)

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


def _lock_conflict(stderr: str) -> str:
    """restic's line naming who holds the lock, when check failed for a lock (it exits 1 then too)."""
    if "unlock" not in stderr and "unable to create lock" not in stderr:
        return ""
    lines = [line.strip() for line in stderr.splitlines()]
    return next((line for line in lines if "is already locked" in line), last_line(stderr))


# What `restic dump` says when the repository is damaged (v0.14 and later): a blob failing its MAC or hash, a
# listed file missing from its snapshot; a pack that is not there, as the rest backend says it, and as the
# first retry of its load says it (local, sftp, s3 with minio-go), which restic 0.14 retries for about 90 s
_DAMAGE = ("ciphertext verification failed", "returned invalid hash", "wrong data returned", "not found in snapshot")
_PACK_MISSING = re.compile(r"(?:Load\(<data/\w+>.*returned error, retrying after [^:]*|ReadFull\(<data/\w+>\)): "
                           r"(?P<why>.*(?:no such file or directory|file does not exist|does not exist|NoSuchKey).*)")


def _damage(failed: subprocess.CalledProcessError) -> str:
    """What restic said that shows damage; "" when it said something else."""
    lines = [line.strip() for line in failed.stderr.splitlines() if line.strip()]
    if missing := next((match for line in lines if (match := _PACK_MISSING.search(line))), None):
        return f"a pack is missing ({missing['why']})"
    return next((line for line in lines if any(words in line for words in _DAMAGE)), "")


def _missing_pack(stderr: str) -> bool:
    """restic 0.14 retries loading a missing pack for about 90 s: the first retry is enough to know."""
    return _PACK_MISSING.search(stderr) is not None


def _candidate(snapshot_id: str, node: dict) -> Candidate | None:
    """A regular file of `restic ls --json` that `dump` can address (restic writes a name that is not UTF-8
    with U+FFFD, which no longer names the file)."""
    path = node.get("path")
    if node.get("type") != "file" or not isinstance(path, str) or "\ufffd" in path:
        return None
    try:
        size = count(node.get("size", 0))
    except ValueError:
        return None
    return Candidate(backup_id=snapshot_id, path=path, size=size, mtime=cli.timestamp(node.get("mtime")),
                     ctime=cli.timestamp(node.get("ctime")))


def _taglist_matches(taglist: str, tags: set[str]) -> bool:
    """"a,b" means both tags; an empty taglist means a snapshot without tags."""
    wanted = {tag for tag in taglist.split(",") if tag}
    return wanted <= tags if wanted else not tags


def _snapshot(entry: dict) -> BackupSnapshot:
    try:
        snapshot = BackupSnapshot(
            id=entry["id"],
            completed_at=datetime.fromisoformat(entry["time"]).timestamp(),
            original=entry.get("original", ""),
            paths=tuple(entry.get("paths") or ()),
            detail=f"host {entry.get('hostname', '?')}, {entry.get('short_id', entry['id'][:8])}",
        )
    except (KeyError, TypeError, ValueError):
        raise ToolError("restic snapshots: unexpected JSON (a snapshot without id or time)") from None
    summary = entry.get("summary")
    return _summarized(snapshot, summary) if isinstance(summary, dict) else snapshot


def _well_typed(entry: dict) -> bool:
    """The fields the filters and the history use have restic's types (a list as `id` is unhashable)."""
    return (all(isinstance(entry.get(key, ""), str) for key in ("id", "short_id", "hostname", "original", "time"))
            and all(_strings(entry.get(key)) for key in ("paths", "tags")))


def _strings(value: object) -> bool:
    """None or a list of strings, as restic writes `paths` and `tags`."""
    return value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value))


def _summarized(snapshot: BackupSnapshot, summary: dict) -> BackupSnapshot:
    """restic 0.17+: the end of the backup, its duration and what it processed, with no `stats` call."""
    try:
        start = datetime.fromisoformat(summary["backup_start"]).timestamp()
        end = datetime.fromisoformat(summary["backup_end"]).timestamp()
        return replace(snapshot, completed_at=end, duration=max(0.0, end - start),
                       size_bytes=count(summary["total_bytes_processed"]),
                       file_count=count(summary["total_files_processed"]))
    except (KeyError, TypeError, ValueError):
        raise ToolError("restic snapshots: unexpected JSON (a summary without backup_start, backup_end or "
                        "totals, or one out of range)") from None


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise ToolError(f"{what}: the output is not JSON") from None
