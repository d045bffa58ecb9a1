"""borg repositories through the real borg CLI."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks.model import VerifyConfig
from checks.sources.borg import BorgLocation
from checks.sources.cli import ToolError
from tests.lab.backup_tools import BORGS, PASSWORD, BorgRepo
from tests.lab.harness import wait_until


@pytest.fixture(params=BORGS.values(), ids=BORGS.keys())
def repo(tmp_path, request):
    return BorgRepo(tmp_path, binary=request.param)


def location(repo: BorgRepo, context, monkeypatch, passphrase: str = PASSWORD, **config) -> BorgLocation:
    monkeypatch.setenv("VIGIL_TEST_BORG", passphrase)
    return BorgLocation(BorgLocation.Config(kind="borg", repository=repo.repository, binary=repo.binary,
                                            passphrase="${env:VIGIL_TEST_BORG}", **config), context)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_archives_newest_first_in_utc_whatever_the_local_zone(repo, context, monkeypatch):
    repo.create("fileserver-2026-11-20", "2026-11-20T01:00:00")
    repo.create("fileserver-2026-11-21", "2026-11-21T01:00:00")
    monkeypatch.setenv("TZ", "America/New_York")  # borg must not print New York times at us
    backups = location(repo, context, monkeypatch).backups()
    assert [b.name for b in backups] == ["fileserver-2026-11-21", "fileserver-2026-11-20"]
    assert backups[0].completed_at == utc("2026-11-21 01:00:00")


def test_glob_limits_the_archives(repo, context, monkeypatch):
    repo.create("fileserver-1", "2026-11-20T01:00:00")
    repo.create("mailserver-1", "2026-11-21T01:00:00")
    assert [b.name for b in location(repo, context, monkeypatch, glob="fileserver-*").backups()] == ["fileserver-1"]


def test_measure_reads_size_files_and_duration(repo, context, monkeypatch):
    repo.create("nightly", content=b"q" * 50_000)
    source = location(repo, context, monkeypatch)
    measured = source.measure(source.backups()[0])
    assert measured.size_bytes == 50_000 and measured.file_count == 1
    assert measured.duration is not None and measured.duration >= 0
    assert measured.completed_at >= source.backups()[0].completed_at  # the end, not the start


def test_a_wrong_passphrase_is_a_clear_error(repo, context, monkeypatch):
    repo.create("nightly")
    with pytest.raises(ToolError, match="(?i)borg: .*passphrase"):
        location(repo, context, monkeypatch, passphrase="wrong").backups()


def test_verify_finds_damage(repo, context, monkeypatch):
    repo.create("nightly", content=bytes(range(256)) * 2000)
    source = location(repo, context, monkeypatch)
    assert source.verify(VerifyConfig(timeout=120)).ok is True
    repo.corrupt_a_segment()
    damaged = source.verify(VerifyConfig(timeout=120))
    assert damaged.ok is False and damaged.detail.startswith("borg check: ")


def test_verify_of_an_unreadable_repository_is_not_a_verdict(tmp_path, context, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    source = BorgLocation(BorgLocation.Config(kind="borg", repository=str(tmp_path / "nowhere"),
                                              passphrase="${env:VIGIL_TEST_BORG}"), context)
    outcome = source.verify(VerifyConfig(timeout=60))
    assert outcome.ok is None and outcome.detail


def test_verify_of_a_locked_repository_is_not_damage(repo, context, monkeypatch):
    """A backup holds the lock past borg's lock wait: could not check, not damage."""
    repo.create("nightly")
    holder = subprocess.Popen([repo.binary, "with-lock", repo.repository, "sleep", "60"], env=repo.env)
    try:
        wait_until(lambda: (Path(repo.repository) / "lock.exclusive").exists(), 20, "the lock")
        outcome = location(repo, context, monkeypatch).verify(VerifyConfig(timeout=120))
    finally:
        holder.terminate()
        holder.wait(20)
    assert outcome.ok is None, outcome
    assert "could not lock" in outcome.detail and "lock" in outcome.detail
