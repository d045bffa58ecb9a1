"""Real restic and borg repositories for the tests, with backdated backups on demand."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.children import _descendants
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
def borg_holding_its_lock(repo: BorgRepo, repository: str | None = None) -> Iterator[None]:
    """`borg with-lock REPO sleep 60`: the exclusive lock a running `borg create` holds; released on leaving."""
    holder = subprocess.Popen([repo.binary, "with-lock", repository or repo.repository, "sleep", "60"], env=repo.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: (Path(repo.repository) / "lock.exclusive").exists(), 20, "borg's lock")
        yield
    finally:
        for pid in [*_descendants(holder.pid)]:  # sleep, under borg
            os.kill(pid, signal.SIGTERM)
        holder.wait(30)


def tools_running(*marks: str) -> list[str]:
    """The command lines of processes naming any of `marks` (a repository, a key file): what a drill left."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in text for mark in marks) and "pytest" not in text:
            found.append(text)
    return found


def restic_drilled_backup(repo: ResticRepo) -> str:
    """A snapshot of DRILLED (with the big file incompressible, its chunks fill the largest pack); its id."""
    write_tree(repo.data, DRILLED)
    repo.run("backup", str(repo.data), "--host", "fileserver")
    return repo.snapshots()[-1]["id"]
