"""Restore drills of borg repositories (local, and over the lab's sshd) through borg 1.2 and 1.4."""

from __future__ import annotations

import hashlib
import re
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from checks.job import BackupDrill
from checks.model import Candidate, DrillDamage, DrillNotRun
from checks.sources.borg import BorgLocation
from tests.lab.backup_tools import (
    BORGS,
    DRILLED,
    PASSWORD,
    BorgRepo,
    PacksOnDisk,
    assert_cancel_leaves_nothing,
    assert_damage,
    assert_drill_candidates,
    assert_failed_drill,
    assert_good_drill,
    assert_restores_exactly,
    borg_drilled_backup,
    borg_holding_its_lock,
    drill_candidates,
    drill_job,
    restored,
)
from tests.lab.blackhole import unaccepted
from tests.lab.sshd import make_key, sshd


@dataclass
class Backend:
    repo: BorgRepo
    repository: str  # as the location reads it: the path, or ssh://
    config: dict  # the location's keys besides repository and passphrase
    marks: tuple[str, ...]  # what a left-behind borg or ssh has on its command line

    @property
    def segments(self) -> PacksOnDisk:
        return PacksOnDisk(Path(self.repo.repository) / "data")


@pytest.fixture(params=[f"{borg}-{where}" for borg in BORGS for where in ("local", "ssh")])
def backend(request, tmp_path):
    borg, _, where = request.param.partition("-")
    repo = BorgRepo(tmp_path, binary=BORGS[borg])
    if where == "local":
        yield Backend(repo, repo.repository, {"binary": repo.binary}, (repo.repository,))
        return
    with ExitStack() as stack:  # the server's borg is the client's (borg serve, first on the sessions' PATH)
        server = stack.enter_context(sshd(tmp_path / "sshd", path=f"{Path(repo.binary).parent}:/usr/bin:/bin"))
        yield Backend(repo, f"ssh://{server.user}@{server.host}:{server.port}{repo.repository}",
                      {"binary": repo.binary, "key_file": server.key_file, "known_hosts": server.known_hosts},
                      (repo.repository, str(server.key_file)))


def location(backend: Backend, context, monkeypatch) -> BorgLocation:
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    return BorgLocation(BorgLocation.Config(kind="borg", repository=backend.repository,
                                            passphrase="${env:VIGIL_TEST_BORG}", **backend.config), context)


def drilled(backend: Backend, context, monkeypatch) -> tuple[BorgLocation, dict[str, Candidate]]:
    """The location and its candidates (by file name) of a fresh archive of DRILLED."""
    borg_drilled_backup(backend.repo)
    source = location(backend, context, monkeypatch)
    return source, drill_candidates(source, backend.repo.data)


def test_candidates_are_the_regular_files_of_the_newest_archive(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    assert_drill_candidates(source, candidates, backend.repo.data)
    big, newest = candidates["big"], source.backups()[0]
    assert big.key == newest.name and not big.path.startswith("/")


def test_a_good_restore_streams_the_exact_bytes(backend, context, monkeypatch):
    assert_restores_exactly(*drilled(backend, context, monkeypatch))


@pytest.mark.parametrize(("damage", "said"), [
    ("corrupt", r"(Segment entry checksum mismatch|id verification failed|Data integrity error)"),
    ("delete", r"(a segment is missing \(.*/data/\d+/\d+|ObjectNotFound|Object with key)")])
def test_a_damaged_or_deleted_segment_is_damage_naming_the_file(backend, context, monkeypatch, damage, said):
    source, candidates = drilled(backend, context, monkeypatch)
    getattr(backend.segments, damage)()
    assert_damage(source, candidates["big"], "borg extract", said)


def test_a_running_backup_is_not_disturbed(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    with borg_holding_its_lock(backend.repo):
        assert restored(source, candidates["big"]) == hashlib.sha256(DRILLED["big"]).hexdigest()
        assert source.holds(candidates["big"].backup_id)
    backend.repo.run("check", backend.repo.repository)


def test_a_cancel_mid_extract_leaves_no_child_and_no_lock(backend, context, monkeypatch):
    source, candidates = drilled(backend, context, monkeypatch)
    assert_cancel_leaves_nothing(source, candidates["big"], "borg extract", backend.marks)
    assert not list(Path(backend.repo.repository).glob("lock*"))


# What a restore that fails for a reason of its own says (local repositories).

@pytest.fixture(params=list(BORGS))
def local(tmp_path, request):
    repo = BorgRepo(tmp_path, binary=BORGS[request.param])
    return Backend(repo, repo.repository, {"binary": repo.binary}, (repo.repository,))


@pytest.mark.parametrize(("listed", "said"), [(len(DRILLED["big"]) + 1, r"3000000 bytes restored, 3000001 listed$"),
                                              (len(DRILLED["big"]) - 1, r"more bytes than listed \(2999999\)$")])
def test_a_byte_count_other_than_listed_is_damage(local, context, monkeypatch, listed, said):
    source, candidates = drilled(local, context, monkeypatch)
    with pytest.raises(DrillDamage, match=f"^{re.escape(candidates['big'].path)}: {said}"):
        restored(source, replace(candidates["big"], size=listed))


def test_a_file_check_repair_zeroed_is_damage(local, context, monkeypatch):
    """After `borg check --repair` replaced a lost chunk with zeros, the file lists as not healthy and its
    extract says so."""
    source, candidates = drilled(local, context, monkeypatch)
    local.segments.delete()
    local.repo.env["BORG_CHECK_I_KNOW_WHAT_I_AM_DOING"] = "YES"
    local.repo.run("check", "--repair", local.repo.repository)
    (big,) = [c for c in source.candidates(source.backups()) if c.path == candidates["big"].path]
    with pytest.raises(DrillDamage, match=f"^{re.escape(big.path)}: borg extract: .*damaged \\(all-zero\\) chunks"):
        restored(source, big)


def test_a_deleted_archive_is_no_longer_held(local, context, monkeypatch):
    source, candidates = drilled(local, context, monkeypatch)
    local.repo.run("delete", f"{local.repo.repository}::{candidates['big'].key}")
    assert not source.holds(candidates["big"].backup_id)


def test_a_repository_ssh_cannot_reach_is_not_damage(tmp_path, context, monkeypatch):
    repo = BorgRepo(tmp_path, binary=BORGS["borg1.4"])
    with sshd(tmp_path / "sshd", path=f"{Path(repo.binary).parent}:/usr/bin:/bin") as server:
        backend = Backend(repo, f"ssh://{server.user}@{server.host}:{server.port}{repo.repository}",
                          {"binary": repo.binary, "key_file": server.key_file, "known_hosts": server.known_hosts}, ())
        source, candidates = drilled(backend, context, monkeypatch)
    with pytest.raises(DrillNotRun, match=rf"^borg extract on {re.escape(backend.repository)}: ssh: "):
        restored(source, candidates["big"])


# Through the engine (checks.drill, the backup_drill job): recorded and judged.

def borg_job(backend: Backend):
    return drill_job("files", {"kind": "borg", "repository": backend.repository,
                               "passphrase": "${env:VIGIL_TEST_BORG}", **backend.config})


def test_a_drill_restores_every_sampled_file(local, context, monkeypatch):
    drilled(local, context, monkeypatch)
    assert_good_drill(BackupDrill(borg_job(local), context), context.clock.time())


def test_a_drill_of_a_damaged_segment_fails_naming_the_file(local, context, monkeypatch):
    _, candidates = drilled(local, context, monkeypatch)
    local.segments.corrupt()
    assert_failed_drill(BackupDrill(borg_job(local), context), context.clock.time(), candidates["big"], "borg extract",
                        "Segment entry checksum mismatch")


def test_an_extract_that_hangs_times_out_and_is_not_damage(tmp_path, context, monkeypatch):
    """A host that accepts and never answers: the extract is stopped at its timeout, as could not drill."""
    import checks.sources.borg as borg

    monkeypatch.setattr(borg, "EXTRACT_TIMEOUT", 2.0)
    (tmp_path / "known_hosts").write_text("")
    with unaccepted() as port:
        repository = f"ssh://vigil@127.0.0.1:{port}/./repo"
        keys = {"key_file": make_key(tmp_path / "id"), "known_hosts": tmp_path / "known_hosts"}
        source = location(Backend(None, repository, keys, ()), context, monkeypatch)
        with pytest.raises(DrillNotRun, match=rf"^borg extract timed out after 2s on {re.escape(repository)}$"):
            restored(source, Candidate("0" * 64, "srv/file", 10, key="nightly"))
