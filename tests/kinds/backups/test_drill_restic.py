"""Restore drills of restic repositories (local, sftp, s3 on moto, rest-server) through the real restic CLI."""

from __future__ import annotations

import hashlib
import re
import threading
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from checks.job import BackupDrill
from checks.model import Candidate, DrillDamage, DrillNotRun
from checks.sources.restic import ResticLocation
from tests.lab.backup_tools import (
    DRILLED,
    PASSWORD,
    PacksInS3,
    PacksOnDisk,
    ResticRepo,
    assert_cancel_leaves_nothing,
    assert_damage,
    assert_drill_candidates,
    assert_failed_drill,
    assert_good_drill,
    assert_restores_exactly,
    drill_candidates,
    drill_job,
    restic_backup_holding_its_lock,
    restic_drilled_backup,
    restored,
    tools_running,
)
from tests.lab.blackhole import unaccepted
from tests.lab.harness import wait_until
from tests.lab.moto import moto
from tests.lab.rest_server import rest_server
from tests.lab.sshd import make_key, sshd


@dataclass
class Backend:
    repo: ResticRepo
    packs: PacksOnDisk | PacksInS3
    config: dict  # the location's keys besides repository and password
    marks: tuple[str, ...]  # what a left-behind restic or ssh has on its command line


@pytest.fixture(params=["local", "sftp", "s3", "rest"])
def backend(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "local":
            repo = ResticRepo(tmp_path)
            yield Backend(repo, PacksOnDisk(Path(repo.repository) / "data"), {},
                          (repo.repository,))
        elif request.param == "sftp":
            yield over_sftp(stack.enter_context(sshd(tmp_path / "sshd")), tmp_path)
        elif request.param == "s3":
            server = stack.enter_context(moto(tmp_path / "moto"))
            client = server.client()
            client.create_bucket(Bucket="drills")
            aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            repo = ResticRepo(tmp_path, repository=f"s3:{server.endpoint_url}/drills/repo", env=aws)
            yield Backend(repo, PacksInS3(client, "drills", "repo"), {"env": aws}, (repo.repository,))
        else:
            directory = tmp_path / "rest"
            url = stack.enter_context(rest_server(directory))
            repo = ResticRepo(tmp_path, repository=f"rest:{url}")
            yield Backend(repo, PacksOnDisk(directory / "data"), {}, (repo.repository,))


def over_sftp(server, tmp_path: Path) -> Backend:
    directory = tmp_path / "remote"
    ssh = (f"ssh -i {server.key_file} -o UserKnownHostsFile={server.known_hosts} -o BatchMode=yes "
           f"-p {server.port} {server.user}@{server.host} -s sftp")
    repo = ResticRepo(tmp_path, repository=f"sftp://{server.user}@{server.host}:{server.port}/{directory}",
                      options=("--option", f"sftp.command={ssh}"))
    return Backend(repo, PacksOnDisk(directory / "data"), {"key_file": server.key_file,
                                                           "known_hosts": server.known_hosts},
                   (str(directory), str(server.key_file)))


def location(backend: Backend, context, monkeypatch, repository: str | None = None) -> ResticLocation:
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticLocation(ResticLocation.Config(kind="restic", repository=repository or backend.repo.repository,
                                                password="${env:VIGIL_TEST_RESTIC}", **backend.config), context)


def drilled(backend: Backend, context, monkeypatch) -> tuple[ResticLocation, dict[str, Candidate]]:
    """The location and its candidates (by file name) of a fresh backup of DRILLED."""
    restic_drilled_backup(backend.repo)
    source = location(backend, context, monkeypatch)
    return source, drill_candidates(source, backend.repo.data)


def test_candidates_are_the_regular_files_of_the_newest_snapshot(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    assert_drill_candidates(source, candidates, backend.repo.data)
    assert candidates["big"].path.startswith("/")


def test_a_good_restore_streams_the_exact_bytes(backend, context, monkeypatch):
    assert_restores_exactly(*drilled(backend, context, monkeypatch))


@pytest.mark.parametrize(("damage", "said"), [
    ("corrupt", r"(ciphertext verification failed|returned invalid hash)"),
    # restic 0.14 retries a missing pack for about 90 s: the first retry's words are enough
    ("delete", r"a pack is missing \(.*(no such file|does not exist|NoSuchKey)")])
def test_a_damaged_or_deleted_pack_is_damage_naming_the_file(backend, context, monkeypatch, damage, said):
    source, candidates = drilled(backend, context, monkeypatch)
    getattr(backend.packs, damage)()
    assert_damage(source, candidates["big"], "restic dump", said)


def test_a_running_backup_is_not_disturbed(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    before = len(backend.repo.snapshots())
    with restic_backup_holding_its_lock(backend.repo, backend.packs):
        assert restored(source, candidates["big"]) == hashlib.sha256(DRILLED["big"]).hexdigest()
    assert len(backend.repo.snapshots()) == before + 1
    assert backend.packs.locks() == []
    backend.repo.run("check")


def test_a_cancel_mid_dump_leaves_no_child_and_no_lock(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    assert_cancel_leaves_nothing(source, candidates["big"], "restic dump", backend.marks)
    assert backend.packs.locks() == []


# What a restore that fails for a reason of its own says (a local repository, or one ssh cannot reach).

@pytest.fixture
def local(tmp_path):
    repo = ResticRepo(tmp_path)
    return Backend(repo, PacksOnDisk(Path(repo.repository) / "data"), {}, (repo.repository,))


@pytest.mark.parametrize(("listed", "said"), [(len(DRILLED["big"]) + 1, r"3000000 bytes restored, 3000001 listed$"),
                                              (len(DRILLED["big"]) - 1, r"more bytes than listed \(2999999\)$")])
def test_a_byte_count_other_than_listed_is_damage(local, context, monkeypatch, listed, said):
    source, candidates = drilled(local, context, monkeypatch)
    with pytest.raises(DrillDamage, match=f"^{re.escape(candidates['big'].path)}: {said}"):
        restored(source, replace(candidates["big"], size=listed))


def test_a_listed_file_missing_from_its_snapshot_is_damage(local, context, monkeypatch):
    source, candidates = drilled(local, context, monkeypatch)
    missing = replace(candidates["big"], path=candidates["big"].path + "-gone")
    with pytest.raises(DrillDamage, match=f"^{re.escape(missing.path)}: restic dump: .*not found in snapshot"):
        restored(source, missing)


def test_a_forgotten_snapshot_is_no_longer_held(local, context, monkeypatch):
    source, candidates = drilled(local, context, monkeypatch)
    assert source.holds(candidates["big"].backup_id)
    local.repo.forget(candidates["big"].backup_id)
    assert not source.holds(candidates["big"].backup_id)


def test_a_repository_ssh_cannot_reach_is_not_damage(tmp_path, context, monkeypatch):
    with sshd(tmp_path / "sshd") as server:
        backend = over_sftp(server, tmp_path)
        source, candidates = drilled(backend, context, monkeypatch)
    repo = backend.repo
    with pytest.raises(DrillNotRun, match=rf"^restic dump on {re.escape(repo.repository)}: ssh: "):
        restored(source, candidates["big"])
    with pytest.raises(DrillNotRun, match=rf"^restic snapshots on {re.escape(repo.repository)}: ssh: "):
        source.holds(candidates["big"].backup_id)


# Through the engine (checks.drill, the backup_drill job): recorded, judged, cancelled by close().

def restic_job(backend: Backend):
    return drill_job("files", {"kind": "restic", "repository": backend.repo.repository,
                               "password": "${env:VIGIL_TEST_RESTIC}", **backend.config})


def test_a_drill_restores_every_sampled_file(local, context, monkeypatch):
    drilled(local, context, monkeypatch)
    assert_good_drill(BackupDrill(restic_job(local), context), context.clock.time())


def test_a_drill_of_a_damaged_pack_fails_naming_the_file(local, context, monkeypatch):
    _, candidates = drilled(local, context, monkeypatch)
    local.packs.corrupt()
    assert_failed_drill(BackupDrill(restic_job(local), context), context.clock.time(), candidates["big"], "restic dump",
                        "ciphertext verification failed")


def test_a_drill_closed_mid_dump_is_recorded_cancelled_and_leaves_nothing(local, context, monkeypatch, tmp_path):
    drilled(local, context, monkeypatch)
    slow = tmp_path / "slow-restic"  # a dump whose reader stalls after its first bytes: restic waits mid-dump
    slow.write_text(f'#!/bin/sh\ncase " $* " in *" dump "*) ;; *) exec {local.repo.binary} "$@";; esac\n'
                    f'{local.repo.binary} "$@" | {{ head -c 1000; sleep 60; cat; }}\n')
    slow.chmod(0o755)
    drills = BackupDrill(restic_job(replace(local, config={"binary": str(slow)})), context)
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.append(drills.drill(only_due=False)), daemon=True)
    thread.start()
    wait_until(lambda: tools_running(" dump "), 20, "restic dump")
    drills.close()
    thread.join(20)
    assert not thread.is_alive()
    drill = outcomes[0]["primary"].drill
    assert drill.ok is None and "cancelled" in drill.detail
    wait_until(lambda: not tools_running(*local.marks), 10, "the cancelled restic to exit")
    assert local.packs.locks() == []


def test_a_dump_that_hangs_times_out_and_is_not_damage(tmp_path, context, monkeypatch):
    """A host that accepts and never answers: the dump is stopped at its timeout, as could not drill."""
    import checks.sources.restic as restic

    monkeypatch.setattr(restic, "DUMP_TIMEOUT", 2.0)
    (tmp_path / "known_hosts").write_text("")
    with unaccepted() as port:
        source = location(Backend(None, None, {"key_file": make_key(tmp_path / "id"),
                                               "known_hosts": tmp_path / "known_hosts"}, ()), context, monkeypatch,
                          repository=f"sftp://vigil@127.0.0.1:{port}//srv/restic")
        with pytest.raises(DrillNotRun, match=rf"^restic dump timed out after 2s on sftp://vigil@127.0.0.1:{port}/"):
            restored(source, Candidate("0" * 64, "/srv/file", 10))


def test_s3_keys_the_server_refuses_are_not_damage(tmp_path, context, monkeypatch):
    with moto(tmp_path / "moto") as server:
        server.client().create_bucket(Bucket="drills")
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        backend = Backend(ResticRepo(tmp_path, repository=f"s3:{server.endpoint_url}/drills/repo", env=aws), None,
                          {"env": aws}, ())
        _, candidates = drilled(backend, context, monkeypatch)
        with server.enforcing_credentials() as (key_id, secret):
            backend.config = {"env": {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret[::-1]}}
            source = location(backend, context, monkeypatch)
            with pytest.raises(DrillNotRun) as refused:
                restored(source, candidates["big"])
    assert str(refused.value).startswith(f"restic dump on {backend.repo.repository}: the S3 server refused the "
                                         "credentials (")
