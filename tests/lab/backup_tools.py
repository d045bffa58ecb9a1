"""Real restic and borg repositories for the tests, with backdated backups on demand."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.lab.harness import need

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
