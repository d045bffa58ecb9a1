"""Restore drills of restic repositories (local, sftp, s3 on moto, rest-server) through the real restic CLI."""

from __future__ import annotations

import hashlib
import re
import threading
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from checks.model import Candidate, DrillDamage, DrillNotRun
from checks.sources.restic import ResticLocation
from tests.lab.backup_tools import (
    DRILLED,
    PASSWORD,
    PacksInS3,
    PacksOnDisk,
    ResticRepo,
    restic_backup_holding_its_lock,
    restic_drilled_backup,
    tools_running,
)
from tests.lab.harness import wait_until
from tests.lab.moto import moto
from tests.lab.rest_server import rest_server
from tests.lab.sshd import sshd


class Hashed:
    """The drill's sink as the engine has it: a SHA-256 of what arrives."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)


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


def location(backend: Backend, context, monkeypatch) -> ResticLocation:
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticLocation(ResticLocation.Config(kind="restic", repository=backend.repo.repository,
                                                password="${env:VIGIL_TEST_RESTIC}", **backend.config), context)


def drilled(backend: Backend, context, monkeypatch) -> tuple[ResticLocation, dict[str, Candidate]]:
    """The location and its candidates (by file name) of a fresh backup of DRILLED."""
    restic_drilled_backup(backend.repo)
    source = location(backend, context, monkeypatch)
    below = f"/{backend.repo.data.name}/"
    return source, {c.path.partition(below)[2]: c for c in source.candidates(source.backups())}


def restored(source: ResticLocation, candidate: Candidate) -> str:
    sink = Hashed()
    source.restore(candidate, sink, threading.Event())
    return sink.sha256.hexdigest()


def test_candidates_are_the_regular_files_of_the_newest_snapshot(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    newest = source.backups()[0]
    assert sorted(candidates) == ["big", "small", "sub/other"]
    big = candidates["big"]
    assert big.backup_id == newest.id and big.path.endswith("/big") and big.size == len(DRILLED["big"])
    stat = (backend.repo.data / "big").stat()
    assert int(big.mtime) == int(stat.st_mtime) and int(big.ctime) == int(stat.st_ctime)
    assert source.holds(newest.id) and not source.holds("0" * 64)


def test_a_good_restore_streams_the_exact_bytes(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    for name, content in DRILLED.items():
        assert restored(source, candidates[name]) == hashlib.sha256(content).hexdigest(), name


@pytest.mark.parametrize(("damage", "said"), [
    ("corrupt", r"(ciphertext verification failed|returned invalid hash)"),
    # restic 0.14 retries a missing pack for about 90 s: the first retry's words are enough
    ("delete", r"a pack is missing \(.*(no such file|does not exist|NoSuchKey)")])
def test_a_damaged_or_deleted_pack_is_damage_naming_the_file(backend, context, monkeypatch, damage, said):
    source, candidates = drilled(backend, context, monkeypatch)
    getattr(backend.packs, damage)()
    with pytest.raises(DrillDamage) as found:
        restored(source, candidates["big"])
    assert str(found.value).startswith(f"{candidates['big'].path}: restic dump: "), found.value
    assert re.search(said, str(found.value)), found.value


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
    cancel = threading.Event()

    class CancelledWhileWriting(Hashed):
        def write(self, data: bytes) -> None:  # the engine's close() comes from another thread
            super().write(data)
            threading.Thread(target=cancel.set).start()
            cancel.wait(5)

    with pytest.raises(DrillNotRun, match=r"^restic dump on .* was cancelled$"):
        source.restore(candidates["big"], CancelledWhileWriting(), cancel)
    wait_until(lambda: not tools_running(*backend.marks), 10, "the cancelled restic to exit")
    assert backend.packs.locks() == []


# What a restore that fails for a reason of its own says (a local repository, or one ssh cannot reach).

@pytest.fixture
def local(tmp_path):
    repo = ResticRepo(tmp_path)
    return Backend(repo, PacksOnDisk(Path(repo.repository) / "data"), {}, (repo.repository,))


@pytest.mark.parametrize(("listed", "said"), [(len(DRILLED["big"]) + 1, r"3000000 bytes restored, 3000001 listed$"),
                                              (len(DRILLED["big"]) - 1, r"more bytes than the 2999999 listed$")])
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
