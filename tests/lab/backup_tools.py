"""Real restic and borg repositories for the tests, with backdated backups on demand."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from checks.drill import Digest
from checks.model import DrillDamage, DrillNotRun
from tests.lab.harness import need, wait_until

PASSWORD = "correct-horse-battery"
MULTI_LINE_PASSWORD = "first-line-of-a-password\nsecond-line-of-it"  # noqa: S105 — restic takes it whole
# Debian's borg 1.2 and borg 1.4 from PyPI (tests/lab/setup.sh): borg tests run against both
BORGS = {"borg1.2": "borg", "borg1.4": str(Path(__file__).resolve().parents[2] / ".lab" / "borg14" / "bin" / "borg")}


class ResticRepo:
    def __init__(self, tmp: Path, name: str = "restic", repository: str | None = None,
                 env: dict[str, str] | None = None, options: tuple[str, ...] = ()):
        self.binary = need("restic")
        self.repository = repository or str(tmp / name)
        self.data = tmp / f"{name}-data"
        self.data.mkdir(exist_ok=True)
        self.options = list(options)
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(tmp / "restic-cache"),
                    **(env or {})}
        self.run("init")

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([self.binary, "--repo", self.repository, "--quiet", *self.options, *args],
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"restic {args[0]} failed: {done.stderr}")
        return done.stdout

    def backup(self, when: str | None = None, content: bytes = b"x" * 1000, tag: str | None = None) -> str:
        """A snapshot of `content` (backdated to `when`, "YYYY-MM-DD HH:MM:SS" UTC); its id."""
        (self.data / "payload").write_bytes(content)
        args = ["backup", str(self.data), "--host", "fileserver"]
        args += ["--time", when] if when else []
        args += ["--tag", tag] if tag else []
        before = {snapshot["id"] for snapshot in self.snapshots()}
        self.run(*args, env={"TZ": "UTC"})
        (new,) = {snapshot["id"] for snapshot in self.snapshots()} - before
        return new

    def snapshots(self) -> list[dict]:
        return sorted(json.loads(self.run("snapshots", "--json")), key=lambda s: s["time"])

    def copy_to(self, other: ResticRepo, snapshot_id: str) -> None:
        other.run("copy", "--from-repo", self.repository, snapshot_id,
                  env={"RESTIC_FROM_PASSWORD": PASSWORD})

    def forget(self, snapshot_id: str) -> None:
        self.run("forget", snapshot_id)

    def corrupt_a_pack(self) -> Path:
        """Flip bytes in the middle of a data pack (a deleted pack makes check retry for 90 s)."""
        pack = max((Path(self.repository) / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
        raw = bytearray(pack.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
        pack.chmod(0o644)
        pack.write_bytes(bytes(raw))
        return pack


class BorgRepo:
    def __init__(self, tmp: Path, name: str = "borg", binary: str = "borg"):
        self.binary = need(binary)
        self.repository = str(tmp / name)
        self.data = tmp / f"{name}-data"
        self.data.mkdir(exist_ok=True)
        self.env = {**os.environ, "BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": str(tmp / "borg-base"),
                    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "TZ": "UTC"}
        self.run("init", "--encryption", "repokey", self.repository)

    def run(self, *args: str) -> str:
        done = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"borg {args[0]} failed: {done.stderr}")
        return done.stdout

    def create(self, name: str, when: str | None = None, content: bytes = b"y" * 1000) -> None:
        """An archive of `content`, backdated to `when` ("YYYY-MM-DDTHH:MM:SS", UTC)."""
        (self.data / "payload").write_bytes(content)
        self.run("create", *(["--timestamp", when] if when else []), f"{self.repository}::{name}", str(self.data))

    def corrupt_a_segment(self) -> None:
        segment = max((Path(self.repository) / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
        raw = bytearray(segment.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
        segment.write_bytes(bytes(raw))


# Restore drills (issue 23): a backup of several files, a pack or segment damaged or deleted wherever the
# repository's files are (a directory, or S3), a backup holding the repository's lock, and what a drill left.

DRILLED = {"big": random.Random(23).randbytes(3_000_000), "small": b"a small file\n", "sub/other": b"x" * 5000}


def write_tree(directory: Path, files: dict[str, bytes]) -> None:
    """`files` (relative names) under `directory`."""
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)


def flipped(raw: bytes) -> bytes:
    """64 bytes in the middle inverted (the largest pack or segment holds the big file's chunks there)."""
    middle = len(raw) // 2
    return raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 64]) + raw[middle + 64:]


def largest_file(directory: Path) -> Path:
    return max((path for path in directory.rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)


class PacksOnDisk:
    """The data packs of a restic repository (or segments of a borg one) in a directory: local, sftp, rest."""

    def __init__(self, data: Path):
        self.data = data

    def corrupt(self) -> None:
        pack = largest_file(self.data)
        pack.chmod(0o644)
        pack.write_bytes(flipped(pack.read_bytes()))

    def delete(self) -> None:
        largest_file(self.data).unlink()

    def locks(self) -> list[str]:
        """restic's lock files (`locks/` beside `data/`)."""
        return [path.name for path in (self.data.parent / "locks").iterdir()]


class PacksInS3:
    """The data packs of a restic repository in a bucket (moto): the largest rewritten or deleted."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def _largest(self) -> str:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/data/")["Contents"]
        return max(listed, key=lambda item: item["Size"])["Key"]

    def corrupt(self) -> None:
        key = self._largest()
        raw = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=flipped(raw))

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._largest())

    def locks(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/locks/")
        return [item["Key"] for item in listed.get("Contents", [])]


@contextmanager
def restic_backup_holding_its_lock(repo: ResticRepo, packs: PacksOnDisk | PacksInS3) -> Iterator[None]:
    """`restic backup --stdin` waiting for its input, so holding its (non-exclusive) lock; on leaving, it is
    given its input and must finish with exit status 0."""
    holder = subprocess.Popen([repo.binary, "--repo", repo.repository, *repo.options, "backup", "--stdin", "--quiet",
                               "--stdin-filename", "held"], env=repo.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(packs.locks, 20, "the backup's lock")
        yield
    finally:
        _, stderr = holder.communicate(b"held while drilled", timeout=60)
    assert holder.returncode == 0, stderr


@contextmanager
def borg_holding_its_lock(repo: BorgRepo) -> Iterator[None]:
    """`borg with-lock REPO cat`: the exclusive lock a running `borg create` holds, until its input ends on
    leaving; then it must finish with exit status 0 and release the lock."""
    holder = subprocess.Popen([repo.binary, "with-lock", repo.repository, "cat"], env=repo.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: (Path(repo.repository) / "lock.exclusive").exists(), 20, "borg's lock")
        yield
    finally:
        _, stderr = holder.communicate(b"", timeout=60)
    assert holder.returncode == 0, stderr
    assert not (Path(repo.repository) / "lock.exclusive").exists()


def tools_running(*marks: str) -> list[str]:
    """The command lines of processes naming any of `marks` (a repository, a key file): what a drill left."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in text for mark in marks) and int(cmdline.parent.name) != os.getpid():
            found.append(text)
    return found


def restic_drilled_backup(repo: ResticRepo) -> str:
    """A snapshot of DRILLED (with the big file incompressible, its chunks fill the largest pack); its id."""
    write_tree(repo.data, DRILLED)
    repo.run("backup", str(repo.data), "--host", "fileserver")
    return repo.snapshots()[-1]["id"]


def borg_drilled_backup(repo: BorgRepo, name: str = "drilled") -> str:
    """An archive of DRILLED with segments of at most 1 MB, so that the big file's chunk has a segment of its
    own (the largest) apart from the archive's metadata; its name."""
    repo.run("config", repo.repository, "max_segment_size", "1000000")
    write_tree(repo.data, DRILLED)
    repo.run("create", f"{repo.repository}::{name}", str(repo.data))
    return name


def restored(location, candidate) -> str:
    """The SHA-256 of a candidate a location restored into the drill's Digest (which counts the bytes)."""
    digest = Digest(candidate, threading.Event())
    location.restore(candidate, digest, threading.Event())
    digest.finish()
    return digest.sha256.hexdigest()


# What every tool's drill must do, asserted the same way for restic and borg.

def drill_candidates(location, data: Path) -> dict:
    """The location's candidates in its newest backup of DRILLED (backed up from `data`), by name below it."""
    below = f"{data.name}/"
    return {candidate.path.partition(below)[2]: candidate for candidate in location.candidates(location.backups())}


def assert_drill_candidates(location, candidates: dict, data: Path) -> None:
    """DRILLED's regular files of the newest backup, with size, mtime and ctime as they were; the backup held."""
    newest = location.backups()[0]
    assert sorted(candidates) == sorted(DRILLED)
    big = candidates["big"]
    assert big.backup_id == newest.id and big.size == len(DRILLED["big"])
    stat = (data / "big").stat()
    assert int(big.mtime) == int(stat.st_mtime) and int(big.ctime) == int(stat.st_ctime)
    assert location.holds(newest.id) and not location.holds("0" * 64)


def assert_restores_exactly(location, candidates: dict) -> None:
    for name, content in DRILLED.items():
        assert restored(location, candidates[name]) == hashlib.sha256(content).hexdigest(), name


def assert_damage(location, candidate, what: str, said: str) -> None:
    """Restoring `candidate` is damage naming the file, `what` restored it, and the tool's words (`said`)."""
    try:
        restored(location, candidate)
    except DrillDamage as damage:
        assert str(damage).startswith(f"{candidate.path}: {what}: "), damage
        assert re.search(said, str(damage)), damage
    else:
        raise AssertionError(f"{candidate.path} restored without damage")


def assert_cancel_leaves_nothing(location, candidate, what: str, marks: tuple[str, ...]) -> None:
    """A cancel from another thread mid-restore: could not drill, "cancelled", and no tool left running."""
    cancel = threading.Event()

    class CancelledWhileWriting(Digest):
        def write(self, data: bytes) -> None:  # the engine's close() comes from another thread, between writes
            super().write(data)
            threading.Thread(target=cancel.set).start()
            cancel.wait(5)

    try:
        location.restore(candidate, CancelledWhileWriting(candidate, threading.Event()), cancel)
    except DrillNotRun as exc:
        assert re.fullmatch(f"{what} on .* was cancelled", str(exc)), exc
    else:
        raise AssertionError("the cancelled restore finished")
    wait_until(lambda: not tools_running(*marks), 10, f"the cancelled {what} to exit")


def drill_job(name: str, location: dict, **drill):
    """A backup job over `location` with a drill of every file of DRILLED; its next backup half a day away,
    so that a drill run now is never cut short for it."""
    from checks.config import BackupJobConfig

    hour = (time.gmtime().tm_hour + 12) % 24
    return BackupJobConfig.model_validate({
        "name": name, "schedule": f"0 {hour} * * *", "timezone": "UTC", "deadline": "4h", "primary": location,
        "drill": {"every": "30d", "files": len(DRILLED), "max_bytes": "1GiB", **drill}})


def assert_good_drill(drills, now: float) -> None:
    """A drill of DRILLED through the engine: every file restored (verified by the tool), the job ok."""
    outcome = drills.drill(only_due=False)["primary"]
    assert {(f.result, f.reference) for f in outcome.files} == {("restored", "tool")}
    assert outcome.drill.ok is True and outcome.drill.bytes_read == sum(map(len, DRILLED.values()))
    assert drills.verdict(now).status == "ok"


def assert_failed_drill(drills, now: float, candidate, what: str, said: str) -> None:
    """A drill through the engine that finds `candidate` damaged: its row names the tool's words, the drill
    and the job fail naming the file."""
    outcome = drills.drill(only_due=False)["primary"]
    (bad,) = [f for f in outcome.files if f.result != "restored"]
    assert bad.path == candidate.path and bad.result == "damaged"
    assert bad.detail.startswith(f"{bad.path}: {what}: ") and said in bad.detail, bad.detail
    assert outcome.drill.ok is False and bad.path in outcome.drill.detail
    verdict = drills.verdict(now)
    assert verdict.status == "failed" and bad.path in verdict.detail
