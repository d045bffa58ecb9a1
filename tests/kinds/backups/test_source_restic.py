"""restic repositories through the real restic CLI."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks.model import VerifyConfig
from checks.sources.cli import ToolError
from checks.sources.restic import ResticLocation
from tests.lab.backup_tools import PASSWORD, ResticRepo
from tests.lab.blackhole import unaccepted
from tests.lab.harness import free_port, wait_until
from tests.lab.moto import moto
from tests.lab.sshd import make_key


def location(repo: ResticRepo, context, monkeypatch, **config) -> ResticLocation:
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticLocation(ResticLocation.Config(kind="restic", repository=repo.repository,
                                                password="${env:VIGIL_TEST_RESTIC}", **config), context)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_snapshots_newest_first_with_backdated_times(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    older = repo.backup("2026-11-20 01:00:00")
    newer = repo.backup("2026-11-21 01:00:00")
    backups = location(repo, context, monkeypatch).backups()
    assert [b.id for b in backups] == [newer, older]
    assert backups[0].completed_at == utc("2026-11-21 01:00:00")
    assert backups[0].paths == (str(repo.data),) and backups[0].size_bytes is None


def test_measure_reads_the_restore_size(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    repo.backup(content=b"z" * 123_456)
    source = location(repo, context, monkeypatch)
    measured = source.measure(source.backups()[0])
    assert measured.size_bytes == 123_456 and measured.file_count >= 1


def test_filters_by_host_and_tag(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    nightly = repo.backup("2026-11-20 01:00:00", tag="nightly")
    repo.backup("2026-11-21 01:00:00", tag="adhoc")
    assert [b.id for b in location(repo, context, monkeypatch, tags=("nightly",)).backups()] == [nightly]
    assert location(repo, context, monkeypatch, host="another-host").backups() == []


def test_a_copy_names_its_original(tmp_path, context, monkeypatch):
    primary, offsite = ResticRepo(tmp_path, "primary"), ResticRepo(tmp_path, "offsite")
    snapshot = primary.backup("2026-11-20 01:00:00")
    primary.copy_to(offsite, snapshot)
    (copy,) = location(offsite, context, monkeypatch).backups()
    assert copy.original == snapshot and copy.id != snapshot


def test_a_wrong_password_is_a_clear_error(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    monkeypatch.setenv("VIGIL_TEST_RESTIC", "not-the-password")
    source = ResticLocation(ResticLocation.Config(kind="restic", repository=repo.repository,
                                                  password="${env:VIGIL_TEST_RESTIC}"), context)
    with pytest.raises(ToolError, match="restic: .*wrong password"):
        source.backups()


def test_a_missing_repository_is_a_clear_error(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    source = ResticLocation(ResticLocation.Config(kind="restic", repository=str(tmp_path / "nowhere"),
                                                  password="${env:VIGIL_TEST_RESTIC}"), context)
    with pytest.raises(ToolError, match="restic: "):
        source.backups()
    assert repo.snapshots() == []


def test_verify_finds_a_corrupted_pack(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    repo.backup(content=bytes(range(256)) * 4000)
    source = location(repo, context, monkeypatch)
    sound = source.verify(VerifyConfig(read_data_subset="100%", timeout=120))
    assert sound.ok is True and "read 100%" in sound.detail
    repo.corrupt_a_pack()
    damaged = source.verify(VerifyConfig(read_data_subset="100%", timeout=120))
    assert damaged.ok is False and damaged.detail.startswith("restic check: ")


def test_verify_that_cannot_run_is_not_a_verdict(tmp_path, context, monkeypatch):
    repo = ResticRepo(tmp_path)
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    source = ResticLocation(ResticLocation.Config(kind="restic", repository=repo.repository,
                                                  binary="/nonexistent/restic", password="${env:VIGIL_TEST_RESTIC}"),
                            context)
    outcome = source.verify(VerifyConfig())
    assert outcome.ok is None and "not installed" in outcome.detail


def test_verify_of_a_locked_repository_is_not_damage(tmp_path, context, monkeypatch):
    """A running backup holds a lock: `restic check` exits 1, which must not read as damage."""
    repo = ResticRepo(tmp_path)
    repo.backup()
    holder = subprocess.Popen([repo.binary, "--repo", repo.repository, "backup", "--stdin", "--quiet"],
                              env=repo.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any((Path(repo.repository) / "locks").iterdir()), 20, "the backup's lock")
        outcome = location(repo, context, monkeypatch).verify(VerifyConfig(timeout=120))
    finally:
        holder.communicate(b"done", timeout=60)
    assert outcome.ok is None, outcome
    assert "could not lock" in outcome.detail and "locked by PID" in outcome.detail
    assert location(repo, context, monkeypatch).verify(VerifyConfig(timeout=120)).ok is True


# What restic's failures mean, in one line naming the repository (the probe's findings).

def sftp_location(tmp_path, context, monkeypatch, port: int) -> ResticLocation:
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticLocation(ResticLocation.Config(
        kind="restic", repository=f"sftp://vigil@127.0.0.1:{port}//srv/restic", password="${env:VIGIL_TEST_RESTIC}",
        key_file=make_key(tmp_path / "id_ed25519"), known_hosts=tmp_path / "known_hosts", timeout="20s"), context)


def test_restic_over_sftp_to_a_closed_port_says_what_ssh_said(tmp_path, context, monkeypatch, fault_report):
    """restic itself says only "unable to start the sftp session, error: EOF"."""
    port = free_port()
    with pytest.raises(ToolError) as error:
        sftp_location(tmp_path, context, monkeypatch, port).backups()
    fault_report(fault="restic sftp repository, port closed", expected="what ssh said and the fix, one line",
                 observed=str(error.value).partition(": ssh: ")[2][:70])
    where = f"restic snapshots on sftp://vigil@127.0.0.1:{port}//srv/restic: ssh: "
    assert str(error.value) in (  # what ssh said, when restic passed it on before exiting (it does not always)
        f"{where}connect to host 127.0.0.1 port {port}: Connection refused; check the host and port, and that sshd "
        "runs", f"{where}the connection ended before a session started; check the host and port, key_file and "
        "known_hosts")


def test_a_check_that_times_out_names_restic_check_and_the_repository(tmp_path, context, monkeypatch, fault_report):
    with unaccepted() as port:  # accepts, never answers: ssh waits for a banner until the timeout
        outcome = sftp_location(tmp_path, context, monkeypatch, port).verify(VerifyConfig(timeout="2s"))
    fault_report(fault="restic check on a silent sftp host", expected="restic check timed out on <repository>",
                 observed=outcome.detail[:70])
    assert (outcome.ok, outcome.detail) == (
        None, f"restic check timed out after 2s on sftp://vigil@127.0.0.1:{port}//srv/restic")


def test_a_check_that_cannot_reach_the_repository_is_not_damage(tmp_path, context, monkeypatch):
    """restic check exits 1 for an unreachable repository as for a damaged one."""
    outcome = sftp_location(tmp_path, context, monkeypatch, free_port()).verify(VerifyConfig(timeout="60s"))
    assert outcome.ok is None and outcome.detail.startswith("restic check on sftp://vigil@127.0.0.1:")
    assert ": ssh: " in outcome.detail


def test_s3_keys_the_server_refuses_are_named_as_such(tmp_path, context, monkeypatch, fault_report):
    with moto(tmp_path / "moto") as server:
        server.client().create_bucket(Bucket="restic-keys")
        repository = f"s3:{server.endpoint_url}/restic-keys/repo"
        ResticRepo(tmp_path, repository=repository, env={"AWS_ACCESS_KEY_ID": "testing",
                                                         "AWS_SECRET_ACCESS_KEY": "testing"})
        with server.enforcing_credentials() as (key_id, secret):
            monkeypatch.setenv("VIGIL_TEST_S3_ID", key_id)
            monkeypatch.setenv("VIGIL_TEST_S3_KEY", secret[::-1])
            monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
            source = ResticLocation(ResticLocation.Config(
                kind="restic", repository=repository, password="${env:VIGIL_TEST_RESTIC}",
                env={"AWS_ACCESS_KEY_ID": "${env:VIGIL_TEST_S3_ID}",
                     "AWS_SECRET_ACCESS_KEY": "${env:VIGIL_TEST_S3_KEY}"}), context)
            with pytest.raises(ToolError) as error:
                source.backups()
    fault_report(fault="restic on S3 with a wrong secret key", expected="the credentials were refused",
                 observed=str(error.value).partition(": the ")[2][:70])
    assert str(error.value).startswith(f"restic snapshots on {repository}: the S3 server refused the credentials (")
    assert str(error.value).endswith("); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY under `env:`")
    assert secret not in str(error.value) and secret[::-1] not in str(error.value)
