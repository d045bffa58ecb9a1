"""The files location on real directories: listing rules, checksum files, measuring, verification."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.clock import Clock
from agent.statedb import StateDB
from checks.model import VerifyConfig
from checks.sources.filelike import LocationError, parse_manifest
from checks.sources.files import FilesLocation
from tests.clocks import RunawayClock
from tests.conftest import vigil_argv
from tests.dumps import sha256, write
from tests.lab.harness import wait_until

DAY = 86400


@pytest.fixture
def dumps(tmp_path) -> Path:
    """The directory the backups are written to (tmp_path also holds the agent's state)."""
    (tmp_path / "dumps").mkdir()
    return tmp_path / "dumps"


@pytest.fixture
def files(context):
    def files(path: Path, pattern: str = "*", clock: Clock | None = None) -> FilesLocation:
        config = FilesLocation.Config(kind="files", path=path, pattern=pattern)
        return FilesLocation(config, replace(context, clock=clock) if clock else context)

    return files


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def verify(location: FilesLocation, timeout: str = "1h"):
    return location.verify(VerifyConfig(timeout=timeout))


def test_backups_are_newest_first_by_modification_time(files, dumps):
    # name order (a, b, c) differs from time order (c, a, b) on purpose
    write(dumps / "db-a.sql.gz", b"a" * 10, age=2 * DAY)
    write(dumps / "db-b.sql.gz", b"b" * 20, age=3 * DAY)
    newest = write(dumps / "db-c.sql.gz", b"c" * 30, age=1 * DAY)

    backups = files(dumps).backups()

    assert [b.id for b in backups] == ["db-c.sql.gz", "db-a.sql.gz", "db-b.sql.gz"]
    assert backups[0].name == "db-c.sql.gz"
    assert backups[0].completed_at == newest.stat().st_mtime
    assert [(b.size_bytes, b.file_count, b.ok) for b in backups] == [(30, 1, None), (10, 1, None), (20, 1, None)]


def test_only_matching_finished_backups_are_listed(files, dumps):
    for name in ("db-1.sql.gz", "db-2.sql.gz", "notes.txt", "db-3.sql.gz.tmp", "db-4.sql.gz.part",
                 ".db-5.sql.gz.Xa81Qz", "db-1.sql.gz.sha256", "db-2.sql.gz.md5", "SHA256SUMS"):
        write(dumps / name, b"x")
    (dumps / "db-latest").symlink_to(dumps / "db-2.sql.gz")

    assert sorted(b.id for b in files(dumps, "db-*").backups()) == ["db-1.sql.gz", "db-2.sql.gz"]


def test_the_listing_keeps_the_newest_fifty(files, dumps):
    for number in range(60):
        write(dumps / f"db-{number:02}.sql", b"x", age=(60 - number) * 60)

    backups = files(dumps).backups()

    assert len(backups) == 50
    assert backups[0].id == "db-59.sql" and backups[-1].id == "db-10.sql"


def test_checksums_come_from_sidecars_then_manifests(files, dumps):
    one, two, three = b"one", b"two", b"three"
    for name, data in (("db-1.sql", one), ("db-2.sql", two), ("db-3.sql", three), ("db-4.sql", b"four")):
        write(dumps / name, data)
    write(dumps / "db-1.sql.sha256", f"{sha256(one).upper()}  db-1.sql\n".encode())
    write(dumps / "SHA256SUMS", (f"{'0' * 64}  db-1.sql\n"  # the sidecar wins
                                    f"{sha256(two)} *db-2.sql\n"
                                    f"SHA256 (db-3.sql) = {sha256(three)}\n").encode())

    checksums = {b.id: b.checksum for b in files(dumps).backups()}

    assert checksums == {"db-1.sql": f"sha256:{sha256(one)}", "db-2.sql": f"sha256:{sha256(two)}",
                         "db-3.sql": f"sha256:{sha256(three)}", "db-4.sql": ""}


def test_manifest_lines_in_both_layouts():
    text = f"{'a' * 64}  ./db.sql.gz\n# a comment\n\nSHA256 (other file.tar) = {'B' * 64}\nnot a line\n"
    assert parse_manifest(text) == {"db.sql.gz": "a" * 64, "other file.tar": "b" * 64}


def test_directory_backups_are_counted_when_measured(files, dumps):
    write(dumps / "backup-2024-05-01" / "etc" / "hosts", b"x" * 100, age=DAY)
    write(dumps / "backup-2024-05-01" / "home" / "a" / "notes", b"x" * 20, age=DAY)
    write(dumps / "backup-2024-05-01" / "README", b"x" * 3, age=DAY)
    os.utime(dumps / "backup-2024-05-01", (time.time() - DAY, time.time() - DAY))
    write(dumps / "backup-2024-05-02.tar", b"x" * 7)
    location = files(dumps, "backup-*")

    directory, archive = sorted(location.backups(), key=lambda b: b.id)

    assert (directory.file_count, directory.size_bytes, directory.detail) == (None, None, "directory")
    measured = location.measure(directory)
    assert (measured.id, measured.file_count, measured.size_bytes) == ("backup-2024-05-01", 3, 123)
    assert location.measure(archive) == archive


def test_an_unreadable_path_is_a_clear_error(files, dumps):
    with pytest.raises(LocationError, match=f"cannot list {dumps}/missing: No such file or directory"):
        files(dumps / "missing").backups()


@pytest.mark.parametrize("config", [{"path": "relative/dumps"}, {"path": "/srv", "pattern": "*/db.sql"}])
def test_config_rejects_relative_paths_and_nested_patterns(config):
    with pytest.raises(ValidationError):
        FilesLocation.Config(kind="files", **config)


def test_verify_checks_the_sidecar_and_the_gzip_stream(files, dumps):
    data = gzipped(b"CREATE TABLE t (id int);\n" * 1000)
    write(dumps / "db-1.sql.gz", data)
    write(dumps / "db-1.sql.gz.sha256", f"{sha256(data)}  db-1.sql.gz\n".encode())

    outcome = verify(files(dumps))

    assert outcome.ok is True
    assert outcome.detail == "db-1.sql.gz: sha256 matches its checksum file; gz archive is intact"


def test_verify_reports_a_checksum_mismatch(files, dumps):
    write(dumps / "db-1.sql", b"the dump as written")
    write(dumps / "db-1.sql.sha256", f"{sha256(b'the dump as planned')}\n".encode())

    outcome = verify(files(dumps))

    assert outcome.ok is False
    assert outcome.detail.startswith(f"db-1.sql: sha256 is {sha256(b'the dump as written')}")


def test_verify_reads_only_the_newest_backup(files, dumps):
    write(dumps / "db-1.sql.gz", gzipped(b"x" * 1000)[:-10], age=DAY)  # damaged, but older
    write(dumps / "db-2.sql.gz", gzipped(b"y" * 1000))

    outcome = verify(files(dumps))

    assert (outcome.ok, outcome.detail) == (True, "db-2.sql.gz: gz archive is intact")


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


_GZ = gzipped(os.urandom(50_000))
_TAR = tar_bytes({"etc/hosts": b"127.0.0.1 localhost\n" * 50, "etc/passwd": b"root:x:0:0\n" * 50})
_SECOND_HEADER = 512 + 1024  # the first member: its header, then 1000 bytes of data in 512-byte blocks
_ZIP = zip_bytes({"report.csv": b"a,b,c\n" * 500})


@pytest.mark.parametrize(("name", "data", "damage"), [
    ("db.sql.gz", _GZ[: len(_GZ) // 2], "Compressed file ended before the end-of-stream marker"),
    ("db.sql.gz", _flip(_GZ, len(_GZ) - 6), "CRC check failed"),
    ("etc.tar", _TAR[:1200], "unexpected end of data"),
    ("etc.tar", _TAR[:_SECOND_HEADER], f"no end-of-archive marker after byte {_SECOND_HEADER}"),
    ("etc.tar", _flip(_TAR, _SECOND_HEADER + 100), f"unreadable tar header at byte {_SECOND_HEADER}"),
    ("etc.tar.gz", gzipped(_TAR)[:-20], "Compressed file ended"),
    ("etc.tgz", gzipped(_TAR[:_SECOND_HEADER]), "no end-of-archive marker"),
    ("report.zip", _ZIP[:-30], "File is not a zip file"),
    ("report.zip", _flip(_ZIP, 100), "bad CRC in member report.csv"),
])
def test_verify_finds_damaged_archives(files, dumps, name, data, damage):
    write(dumps / name, data)

    outcome = verify(files(dumps))

    assert outcome.ok is False
    assert outcome.detail.startswith(f"{name} is damaged: ")
    assert damage in outcome.detail


@pytest.mark.parametrize(("name", "data"), [("etc.tar", _TAR), ("etc.tgz", gzipped(_TAR)), ("report.zip", _ZIP)])
def test_verify_passes_sound_archives(files, dumps, name, data):
    write(dumps / name, data)
    write(dumps / "SHA256SUMS", f"{sha256(data)}  {name}\n".encode())

    outcome = verify(files(dumps))

    assert outcome.ok is True
    assert outcome.detail.startswith(f"{name}: sha256 matches its checksum file; ")


def test_verify_has_nothing_to_check_without_checksum_or_archive(files, dumps):
    write(dumps / "db-1.sql", b"plain dump")

    outcome = verify(files(dumps))

    assert outcome.ok is None
    assert outcome.detail.startswith("nothing to check in db-1.sql: no sha256 checksum file")


def test_verify_cannot_check_a_directory_or_an_empty_location(files, dumps):
    (dumps / "backup-1").mkdir()
    assert verify(files(dumps, "backup-*")).detail == "backup-1 is a directory: only single files are verified"
    assert verify(files(dumps, "db-*")).detail == f"no backup matching db-* in {dumps}"
    assert verify(files(dumps / "missing")).ok is None


def test_verify_stops_when_its_time_is_spent(files, dumps):
    write(dumps / "db-1.sql.gz", gzipped(b"x" * 1000))

    outcome = verify(files(dumps, clock=RunawayClock()), timeout="10m")

    assert outcome.ok is None
    assert outcome.detail == f"verifying {dumps} took longer than 600s"


NOT_UTF8 = os.fsdecode(b"db-caf\xe9.sql.gz")  # as os.listdir gives it: a surrogate escape for the byte
SHOWN = "db-caf\\xe9.sql.gz"


def test_a_name_that_is_not_utf8_is_listed_measured_and_verified(files, dumps):
    (dumps / NOT_UTF8).write_bytes(gzip.compress(b"dump"))
    (dumps / os.fsdecode(b"dir-\xff")).mkdir()
    (dumps / os.fsdecode(b"dir-\xff") / os.fsdecode(b"part-\xfe")).write_bytes(b"12345")
    backups = {backup.name: backup for backup in files(dumps).backups()}
    assert set(backups) == {SHOWN, "dir-\\xff"} and backups[SHOWN].size_bytes == len(gzip.compress(b"dump"))
    assert files(dumps).measure(backups["dir-\\xff"]).size_bytes == 5
    (dumps / "dir-\udcff" / "part-\udcfe").unlink()
    (dumps / "dir-\udcff").rmdir()
    assert files(dumps).verify(VerifyConfig()).detail == f"{SHOWN}: gz archive is intact"


def strings(document: object):
    """Every string in a JSON document."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict | list):
        for item in document.values() if isinstance(document, dict) else document:
            yield from strings(item)


def test_a_name_that_is_not_utf8_reaches_every_output(start_agent, write_config, dumps, tmp_path, fault_report):
    """The status page, /status.json, /metrics, the state database and `vigil report` in every format."""
    (dumps / NOT_UTF8).write_bytes(b"small")
    os.utime(dumps / NOT_UTF8, (time.time() - 60, time.time() - 60))
    config = write_config(f"""
listen: 127.0.0.1:{{port}}
state_dir: {{state}}
backups:
  - name: dumps
    schedule: "0 * * * *"
    timezone: UTC
    deadline: 50m
    min_size: 1KiB
    interval: 1m
    primary: {{kind: files, path: {dumps}, pattern: "db-*"}}
""")
    agent = start_agent(config)
    wait_until(lambda: '"too_small"' in agent.get("/status.json")[1].decode(), 30, "the first evaluation")
    detail = f"{SHOWN} is 5 B, below the minimum"
    status = json.loads(agent.get("/status.json")[1])
    page = agent.get("/")[1].decode()
    metrics = agent.metrics()
    agent.peer.stop()
    fault_report(fault="a dump named db-caf\\xe9 (not UTF-8)", expected="listed, its name escaped everywhere",
                 observed=f"{detail}: in the page, status.json, DB, report"[:70])
    assert any(detail in text for text in strings(status)) and detail in page
    assert 'vigil_backup_status{backup="dumps",status="too_small"} 1' in metrics
    db = StateDB(tmp_path / "state")
    assert db.query("SELECT backup_id FROM backup_observations") == [(SHOWN,)]
    db.close()
    for form in ("text", "markdown", "csv", "json", "html"):
        done = subprocess.run(vigil_argv("report", "backups", "-c", str(config), "--format", form),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        shown = {"csv": lambda out: out.splitlines()[1].startswith("dumps,"),  # csv holds only the counts
                 "json": lambda out: any(SHOWN in text for text in strings(json.loads(out)))}
        assert shown.get(form, lambda out: SHOWN in out)(done.stdout), (form, done.stdout)
