"""Backups at scale: an unchanged repository is not listed again, a changed one always is.

Real restic and borg repositories; the tool is wrapped in a script that counts its calls,
so a test sees both what the location answers and whether the tool ran for it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.collector import Emitter
from checks.config import BackupJobConfig
from checks.job import BackupEvaluation
from checks.sources.borg import BorgLocation
from checks.sources.restic import ResticLocation, _snapshot
from tests.clocks import FakeClock
from tests.lab.backup_tools import BORGS, PASSWORD, BorgRepo, ResticRepo
from tests.lab.harness import need
from tests.lab.moto import moto
from tests.lab.pki import make_pki
from tests.lab.rest_server import rest_server
from tests.lab.sshd import sshd

DATA = Path(__file__).parent / "data" / "restic"


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def counting(tmp_path: Path, tool: str) -> tuple[Path, Path]:
    """A wrapper of `tool` that appends its arguments to a log, one call a line."""
    calls, wrapper = tmp_path / f"{Path(tool).name}.calls", tmp_path / f"counting-{Path(tool).name}"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {tool} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, calls


def listed(calls: Path, command: str) -> int:
    return sum(f" {command} " in f" {line} " for line in calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture
def clocked(context):
    return replace(context, clock=FakeClock())


def restic(repo: ResticRepo, context, monkeypatch, binary: Path, **config) -> ResticLocation:
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticLocation(ResticLocation.Config(kind="restic", repository=repo.repository, binary=str(binary),
                                                password="${env:VIGIL_TEST_RESTIC}", **config), context)


def test_restic_unchanged_is_not_listed_again_and_every_change_is_seen(tmp_path, clocked, monkeypatch):
    repo = ResticRepo(tmp_path)
    first = repo.backup("2026-11-20 01:00:00")
    second = repo.backup("2026-11-21 01:00:00")
    binary, calls = counting(tmp_path, need("restic"))
    source = restic(repo, clocked, monkeypatch, binary)
    assert [b.id for b in source.backups()] == [second, first]
    clocked.clock.advance(3600)
    assert [b.id for b in source.backups()] == [second, first]
    assert listed(calls, "snapshots") == 1, "an unchanged repository was listed again"

    new = repo.backup("2026-11-22 01:00:00")
    assert [b.id for b in source.backups()] == [new, second, first], "a new snapshot was not seen"
    repo.forget(second)
    assert [b.id for b in source.backups()] == [new, first], "a forgotten snapshot was still listed"
    repo.run("forget", "--keep-last", "1", "--prune")
    assert [b.id for b in source.backups()] == [new], "a pruned snapshot was still listed"
    assert listed(calls, "snapshots") == 4


def test_jobs_over_one_repository_share_one_listing_filtered_as_restic_does(tmp_path, clocked, monkeypatch):
    repo = ResticRepo(tmp_path)
    nightly = repo.backup("2026-11-20 01:00:00", tag="nightly")
    adhoc = repo.backup("2026-11-21 01:00:00", tag="adhoc")
    binary, calls = counting(tmp_path, need("restic"))
    expected = {("nightly",): [nightly], ("adhoc",): [adhoc], ("nightly", "adhoc"): [adhoc, nightly],
                ("nightly,adhoc",): [], (): [adhoc, nightly]}
    for tags, ids in expected.items():
        assert [b.id for b in restic(repo, clocked, monkeypatch, binary, tags=tags).backups()] == ids, tags
    assert restic(repo, clocked, monkeypatch, binary, host="another-host").backups() == []
    assert [b.id for b in restic(repo, clocked, monkeypatch, binary, host="fileserver",
                                 paths=(str(repo.data) + "/",)).backups()] == [adhoc, nightly]
    assert restic(repo, clocked, monkeypatch, binary, paths=("/elsewhere",)).backups() == []
    assert listed(calls, "snapshots") == 1
    assert "--tag" not in calls.read_text() and "--host" not in calls.read_text()


def test_another_password_never_shares_a_listing(tmp_path, clocked, monkeypatch):
    repo = ResticRepo(tmp_path)
    repo.backup()
    binary, _ = counting(tmp_path, need("restic"))
    assert restic(repo, clocked, monkeypatch, binary).backups()
    monkeypatch.setenv("VIGIL_TEST_WRONG", "not-the-password")
    wrong = ResticLocation(ResticLocation.Config(kind="restic", repository=repo.repository, binary=str(binary),
                                                 password="${env:VIGIL_TEST_WRONG}"), clocked)
    with pytest.raises(Exception, match="wrong password"):
        wrong.backups()


def test_an_unreadable_layout_falls_back_to_the_tool_logged_once(tmp_path, clocked, monkeypatch, caplog):
    """A repository kind vigil cannot read itself: the tool lists it at every poll, said once."""
    fake = Path(__file__).parents[2] / "data" / "fake-restic"  # shared with tests/test_durability.py
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    config = ResticLocation.Config(kind="restic", repository="b2:bucket:repo", binary=str(fake),
                                   password="${env:VIGIL_TEST_RESTIC}", env={"FAKE_RESTIC_DELAY": "0",
                                                                             "FAKE_RESTIC_PIDS": str(tmp_path / "p")})
    source = ResticLocation(config, clocked)
    with caplog.at_level(logging.INFO, "checks.sources.listing"):
        for _ in range(3):
            assert len(source.backups()) == 3
    assert len((tmp_path / "p").read_text().splitlines()) == 3, "the tool must answer every poll"
    fallbacks = [r for r in caplog.records if "not readable" in r.getMessage()]
    assert len(fallbacks) == 1 and "b2" in fallbacks[0].getMessage()


@pytest.mark.parametrize("tool", BORGS.values(), ids=BORGS.keys())
def test_borg_unchanged_is_not_listed_again_and_every_change_is_seen(tmp_path, clocked, monkeypatch, tool):
    repo = BorgRepo(tmp_path, binary=tool)
    for night in ("20", "21", "22"):
        repo.create(f"nightly-{night}", f"2026-11-{night}T01:00:00")
    binary, calls = counting(tmp_path, repo.binary)
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    source = BorgLocation(BorgLocation.Config(kind="borg", repository=repo.repository, binary=str(binary),
                                              passphrase="${env:VIGIL_TEST_BORG}"), clocked)

    def names() -> list[str]:
        return [b.name for b in source.backups()]

    assert names() == ["nightly-22", "nightly-21", "nightly-20"]
    clocked.clock.advance(3600)
    assert names() == ["nightly-22", "nightly-21", "nightly-20"]
    assert listed(calls, "list") == 1, "an unchanged repository was listed again"
    repo.create("nightly-23", "2026-11-23T01:00:00")
    assert names()[0] == "nightly-23", "a new archive was not seen"
    repo.run("delete", f"{repo.repository}::nightly-21")
    assert names() == ["nightly-23", "nightly-22", "nightly-20"], "a deleted archive was still listed"
    repo.run("prune", "--keep-last", "1", repo.repository)
    assert names() == ["nightly-23"], "a pruned archive was still listed"
    assert listed(calls, "list") == 4


@pytest.mark.parametrize("shape", ["0.14", "0.17"])
def test_recorded_snapshots_json_of_both_shapes(shape):
    entries = json.loads((DATA / f"snapshots-{shape}.json").read_text())
    snapshot = _snapshot(entries[0])
    assert snapshot.id.startswith("f495fce5") and snapshot.paths == ("/srv/data",)
    if shape == "0.14":  # the start is all restic says: sizes come from `restic stats`
        assert snapshot.completed_at == pytest.approx(utc("2026-11-20T01:10:02.705777"))
        assert snapshot.size_bytes is None and snapshot.duration is None
    else:  # the end of the backup, and its totals: no `stats` call
        assert snapshot.completed_at == pytest.approx(utc("2026-11-20T01:52:12.2345"))
        assert snapshot.duration == pytest.approx(2529.528722)
        assert (snapshot.size_bytes, snapshot.file_count) == (123456789, 10000)
        older = _snapshot(entries[1])  # made by an older restic: no summary, measured as before
        assert older.size_bytes is None and older.completed_at == utc("2026-11-19T01:10:00")


def test_a_malformed_summary_fails_clearly():
    entry = json.loads((DATA / "snapshots-0.17.json").read_text())[0]
    entry["summary"] = {"backup_start": "yesterday"}
    with pytest.raises(Exception, match="summary without backup_start, backup_end or totals"):
        _snapshot(entry)


def test_a_restic_017_listing_skips_stats(tmp_path, clocked, monkeypatch):
    """A tool that answers with 0.17's shape and has no `stats`: the newest is measured already."""
    fake = tmp_path / "restic-0.17"
    fake.write_text(f"#!/bin/sh\ncase \"$*\" in *snapshots*) cat {DATA / 'snapshots-0.17.json'};; "
                    "*) echo 'no stats here' >&2; exit 1;; esac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    config = BackupJobConfig.model_validate({
        "name": "r17", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
        "primary": {"kind": "restic", "repository": str(tmp_path / "r17"), "binary": str(fake),
                    "password": "${env:VIGIL_TEST_RESTIC}"}})
    out = Emitter(BackupEvaluation.METRICS, strict=True)
    BackupEvaluation(config, clocked).collect(out, frozenset({"main"}))
    samples = {s.name: s.value for s in out.samples() if s.labels.get("location") == "primary"}
    assert samples["vigil_backup_size_bytes"] == 123456789
    assert samples["vigil_backup_files"] == 10000
    assert samples["vigil_backup_duration_seconds"] == pytest.approx(2529.528722)


def test_the_backup_pool_follows_the_cores_unless_configured():
    from agent.config import AgentConfig
    from agent.scheduler import pool_sizes
    from checks.job import BackupEvaluation

    cores, pool = len(os.sched_getaffinity(0)), BackupEvaluation.POOL
    assert pool_sizes(8)[pool] == max(2, min(8, 2 * cores))
    assert pool_sizes(1)[pool] == 2 and pool_sizes(256)[pool] == 2 * cores
    config = AgentConfig.model_validate({"backup_workers": 12})
    assert pool_sizes(config.workers, config.backup_workers)[pool] == 12
    with pytest.raises(ValueError, match="backup_workers"):
        AgentConfig.model_validate({"backup_workers": 0})


def test_restic_over_sftp_fingerprints_through_paramiko(tmp_path, clocked, monkeypatch):
    with sshd(tmp_path / "sshd") as server:
        ssh = f"ssh -i {server.key_file} -o UserKnownHostsFile={server.known_hosts} -o StrictHostKeyChecking=yes " \
              f"-o BatchMode=yes -p {server.port} {server.user}@{server.host} -s sftp"
        remote = f"sftp://{server.user}@{server.host}:{server.port}/{tmp_path}/remote"
        repo = ResticRepo(tmp_path, "remote", repository=remote, options=("--option", f"sftp.command={ssh}"))
        first = repo.backup("2026-11-20 01:00:00")
        binary, calls = counting(tmp_path, need("restic"))
        source = restic(repo, clocked, monkeypatch, binary, key_file=server.key_file, known_hosts=server.known_hosts)
        assert [b.id for b in source.backups()] == [first]
        assert [b.id for b in source.backups()] == [first]
        assert listed(calls, "snapshots") == 1, "an unchanged sftp repository was listed again"
        second = repo.backup("2026-11-21 01:00:00")
        assert [b.id for b in source.backups()] == [second, first]
        repo.forget(first)
        assert [b.id for b in source.backups()] == [second]
        assert listed(calls, "snapshots") == 3
        kept = source.layout.ssh
        source.close()
        assert source.layout.ssh is None and kept.get_transport() is None, "close() ends the kept connection"


def test_restic_on_s3_fingerprints_through_boto3(tmp_path, clocked, monkeypatch):
    with moto(tmp_path / "moto", make_pki(tmp_path / "pki")) as server:
        server.client().create_bucket(Bucket="backups")
        repository = f"s3:{server.endpoint_url}/backups/fileserver"
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        repo = ResticRepo(tmp_path, "s3", repository=repository, env=aws, options=("--cacert", str(server.ca_file)))
        first = repo.backup("2026-11-20 01:00:00")
        binary, calls = counting(tmp_path, need("restic"))
        source = restic(repo, clocked, monkeypatch, binary, ca_file=server.ca_file, env=aws)
        assert [b.id for b in source.backups()] == [first]
        assert [b.id for b in source.backups()] == [first]
        assert listed(calls, "snapshots") == 1, "an unchanged s3 repository was listed again"
        second = repo.backup("2026-11-21 01:00:00")
        assert [b.id for b in source.backups()] == [second, first]
        repo.forget(second)
        assert [b.id for b in source.backups()] == [first]
        assert listed(calls, "snapshots") == 3


def test_borg_over_ssh_fingerprints_through_paramiko(tmp_path, clocked, monkeypatch):
    with sshd(tmp_path / "sshd") as server:
        local = BorgRepo(tmp_path)
        local.create("nightly-20", "2026-11-20T01:00:00")
        binary, calls = counting(tmp_path, local.binary)
        monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
        remote = f"ssh://{server.user}@{server.host}:{server.port}{local.repository}"
        source = BorgLocation(BorgLocation.Config(kind="borg", repository=remote, binary=str(binary),
                                                  key_file=server.key_file, known_hosts=server.known_hosts,
                                                  passphrase="${env:VIGIL_TEST_BORG}"), clocked)
        assert [b.name for b in source.backups()] == ["nightly-20"]
        assert [b.name for b in source.backups()] == ["nightly-20"]
        assert listed(calls, "list") == 1, "an unchanged ssh repository was listed again"
        local.create("nightly-21", "2026-11-21T01:00:00")
        assert [b.name for b in source.backups()] == ["nightly-21", "nightly-20"]
        assert listed(calls, "list") == 2
        kept = source.layout.ssh
        source.close()
        assert source.layout.ssh is None and kept.get_transport() is None, "close() ends the kept connection"


def test_restic_on_a_rest_server_fingerprints_through_httpx(tmp_path, clocked, monkeypatch):
    with rest_server(tmp_path / "rest") as url:
        repo = ResticRepo(tmp_path, "rest", repository=f"rest:{url}")
        first = repo.backup("2026-11-20 01:00:00")
        binary, calls = counting(tmp_path, need("restic"))
        source = restic(repo, clocked, monkeypatch, binary)
        assert [b.id for b in source.backups()] == [first]
        assert [b.id for b in source.backups()] == [first]
        assert listed(calls, "snapshots") == 1, "an unchanged REST repository was listed again"
        second = repo.backup("2026-11-21 01:00:00")
        assert [b.id for b in source.backups()] == [second, first]
        repo.run("forget", "--keep-last", "1", "--prune")
        assert [b.id for b in source.backups()] == [second]
        assert listed(calls, "snapshots") == 3
        source.close()
        assert source.layout.rest is None
