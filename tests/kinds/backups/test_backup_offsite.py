"""Off-site copies on real remote peers: restic over SFTP (sshd) and S3 (moto), file copies in S3."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from agent.collector import Emitter
from checks.config import BackupJobConfig
from checks.job import BackupEvaluation
from tests.clocks import FakeClock
from tests.lab.backup_tools import PASSWORD, ResticRepo
from tests.lab.moto import moto
from tests.lab.pki import make_pki
from tests.lab.sshd import sshd


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def job_context(context, clock, monkeypatch):
    for name, value in {"VIGIL_TEST_RESTIC": PASSWORD, "VIGIL_TEST_S3_ID": "testing",
                        "VIGIL_TEST_S3_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    return replace(context, clock=clock)


def evaluate(config: dict, context) -> tuple[str, str]:
    base = {"name": "nightly", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h", "max_lag": "12h"}
    out = Emitter(BackupEvaluation.METRICS, strict=True)
    BackupEvaluation(BackupJobConfig.model_validate({**base, **config}), context).collect(out, frozenset({"main"}))
    return out.verdict.status, out.verdict.detail


SSH_ENDED = "the connection ended before a session started; check the host and port, key_file and known_hosts"


def restic(repository: str, **extra) -> dict:
    return {"kind": "restic", "repository": repository, "password": "${env:VIGIL_TEST_RESTIC}", **extra}


def test_restic_copy_over_sftp_is_in_step_then_stale(tmp_path, job_context, clock):
    primary = ResticRepo(tmp_path, "primary")
    with sshd(tmp_path / "sshd") as server:
        ssh = f"ssh -i {server.key_file} -o UserKnownHostsFile={server.known_hosts} -o StrictHostKeyChecking=yes " \
              f"-o BatchMode=yes -p {server.port} {server.user}@{server.host} -s sftp"
        remote = f"sftp://{server.user}@{server.host}:{server.port}/{tmp_path}/offsite"
        offsite = ResticRepo(tmp_path, "offsite", repository=remote, options=("--option", f"sftp.command={ssh}"))
        first = primary.backup("2026-11-20 01:10:00")
        primary.copy_to(offsite, first)
        locations = {"primary": restic(primary.repository),
                     "offsite": restic(remote, key_file=str(server.key_file), known_hosts=str(server.known_hosts))}

        clock.set("2026-11-20 06:00")
        assert evaluate(locations, job_context) == ("ok", "")
        primary.backup("2026-11-21 01:10:00")
        clock.set("2026-11-21 14:00")
        status, detail = evaluate(locations, job_context)
        assert status == "offsite_stale" and "12h50m behind the primary" in detail

        # the host key must be the pinned one: a known_hosts for another key makes it unreachable
        (tmp_path / "other_known_hosts").write_text(f"[127.0.0.1]:{server.port} ssh-ed25519 "
                                                   "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
        locations["offsite"]["known_hosts"] = str(tmp_path / "other_known_hosts")
        status, detail = evaluate(locations, job_context)
        # what ssh said, when restic passed it on before exiting (it does not always)
        assert status == "unreachable" and detail in (
            f"offsite: restic snapshots on {remote}: ssh: Host key verification failed; the server's key "
            "is not the one in known_hosts: check it, then update known_hosts (ssh-keyscan)",
            f"offsite: restic snapshots on {remote}: ssh: {SSH_ENDED}")


def test_restic_on_s3_through_moto(tmp_path, job_context, clock):
    primary = ResticRepo(tmp_path, "primary")
    with moto(tmp_path / "moto", make_pki(tmp_path / "pki")) as server:
        server.client().create_bucket(Bucket="offsite-backups")
        repository = f"s3:{server.endpoint_url}/offsite-backups/fileserver"
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        offsite = ResticRepo(tmp_path, "offsite", repository=repository, env=aws,
                             options=("--cacert", str(server.ca_file)))
        snapshot = primary.backup("2026-11-20 01:10:00")
        primary.copy_to(offsite, snapshot)
        offsite_location = restic(repository, ca_file=str(server.ca_file),
                                  env={"AWS_ACCESS_KEY_ID": "${env:VIGIL_TEST_S3_ID}",
                                       "AWS_SECRET_ACCESS_KEY": "${env:VIGIL_TEST_S3_KEY}"})
        clock.set("2026-11-20 06:00")
        assert evaluate({"primary": restic(primary.repository), "offsite": offsite_location}, job_context) == (
            "ok", "")
        # a repository that holds a copy of an older snapshot only is stale
        offsite.forget(offsite.snapshots()[-1]["id"])
        older = primary.backup("2026-11-19 01:10:00")
        primary.copy_to(offsite, older)
        clock.set("2026-11-20 14:00")
        status, _ = evaluate({"primary": restic(primary.repository), "offsite": offsite_location}, job_context)
        assert status == "offsite_stale"


def test_a_same_named_dump_of_another_size_off_site_is_a_mismatch(tmp_path, job_context, clock):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    dump = dumps / "db-2026-11-20.sql.gz"
    dump.write_bytes(b"d" * 5000)
    clock.set("2026-11-20 01:20")  # when the dump was written
    os.utime(dump, (clock.time(), clock.time()))
    with moto(tmp_path / "moto") as server:
        s3 = server.client()
        s3.create_bucket(Bucket="offsite")
        locations = {
            "primary": {"kind": "files", "path": str(dumps), "pattern": "db-*.sql.gz"},
            "offsite": {"kind": "s3", "bucket": "offsite", "prefix": "dumps/", "endpoint_url": server.endpoint_url,
                        "access_key_id": "${env:VIGIL_TEST_S3_ID}", "secret_access_key": "${env:VIGIL_TEST_S3_KEY}"},
        }
        s3.put_object(Bucket="offsite", Key="dumps/db-2026-11-20.sql.gz", Body=b"d" * 5000)
        clock.set("2026-11-20 06:00")
        assert evaluate(locations, job_context) == ("ok", "")

        s3.put_object(Bucket="offsite", Key="dumps/db-2026-11-20.sql.gz", Body=b"d" * 3000)  # truncated upload
        status, detail = evaluate(locations, job_context)
        assert status == "offsite_mismatch"
        assert detail == "off-site db-2026-11-20.sql.gz differs from the primary's (2.9 KiB against 4.9 KiB)"
