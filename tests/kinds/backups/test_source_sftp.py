"""The sftp location against a real OpenSSH sshd: listing, verification, and host key and key checks."""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import zipfile
from pathlib import Path

import paramiko
import pytest
from pydantic import ValidationError

from checks.model import VerifyConfig
from checks.sources import filelike
from checks.sources.filelike import LocationError
from checks.sources.sftp import WINDOW, SftpLocation
from tests.dumps import sha256, write
from tests.lab.blackhole import unaccepted
from tests.lab.harness import free_port
from tests.lab.sshd import Sshd, fingerprint, known_hosts_line, make_key, sshd

DAY = 86400


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Sshd:
    with sshd(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture
def dumps(tmp_path) -> Path:
    """The directory the server exposes (the tests run as the SSH user, on the same machine)."""
    (tmp_path / "dumps").mkdir()
    return tmp_path / "dumps"


@pytest.fixture
def sftp(context, server, dumps):
    def sftp(pattern: str = "*", **overrides) -> SftpLocation:
        config = {"kind": "sftp", "host": server.host, "port": server.port, "user": server.user,
                  "key_file": server.key_file, "known_hosts": server.known_hosts, "path": str(dumps),
                  "pattern": pattern, "timeout": "10s", **overrides}
        return SftpLocation(SftpLocation.Config(**config), context)

    return sftp


def test_lists_backups_newest_first_with_checksums(sftp, dumps):
    write(dumps / "db-a.sql.gz", b"a" * 10, age=2 * DAY)
    older = write(dumps / "db-b.sql.gz", b"b" * 20, age=3 * DAY)
    write(dumps / "db-c.sql.gz", b"c" * 30, age=1 * DAY)
    write(dumps / "db-c.sql.gz.sha256", f"{sha256(b'c' * 30)}  db-c.sql.gz\n".encode())
    write(dumps / "db-d.sql.gz.part", b"still writing")
    write(dumps / "notes.txt", b"not a backup")

    backups = sftp("db-*").backups()

    assert [b.id for b in backups] == ["db-c.sql.gz", "db-a.sql.gz", "db-b.sql.gz"]
    assert backups[0].checksum == f"sha256:{sha256(b'c' * 30)}"
    assert backups[1].checksum == ""
    assert (backups[2].size_bytes, backups[2].file_count) == (20, 1)
    assert backups[2].completed_at == int(older.stat().st_mtime)  # SFTP v3 has whole seconds


def test_directory_backups_are_measured_over_sftp(sftp, dumps):
    write(dumps / "backup-1" / "etc" / "hosts", b"x" * 100)
    write(dumps / "backup-1" / "README", b"x" * 5)
    location = sftp("backup-*")

    [directory] = location.backups()
    measured = location.measure(directory)

    assert (directory.file_count, measured.file_count, measured.size_bytes) == (None, 2, 105)


def test_a_missing_path_names_the_location(sftp, server, dumps):
    with pytest.raises(LocationError, match=f"cannot list sftp://{server.user}@{server.host}:{server.port}"
                                            f"{dumps}/missing: No such file"):
        sftp(path=str(dumps / "missing")).backups()


def test_verify_reads_the_newest_file_over_sftp(sftp, dumps):
    data = gzip.compress(os.urandom(WINDOW + WINDOW // 2))  # more than one read window
    write(dumps / "db-2.sql.gz", data)
    write(dumps / "SHA256SUMS", f"{sha256(data)}  db-2.sql.gz\n".encode())
    write(dumps / "db-1.sql.gz", b"older and broken", age=DAY)

    outcome = sftp().verify(VerifyConfig())

    assert (outcome.ok, outcome.detail) == (True, "db-2.sql.gz: sha256 matches its checksum file; "
                                                  "gz archive is intact")


def test_verify_finds_damage_and_checksum_mismatches_over_sftp(sftp, dumps):
    write(dumps / "db-1.sql.gz", gzip.compress(b"x" * 100_000)[:-40], age=DAY)
    assert sftp().verify(VerifyConfig()).detail.startswith("db-1.sql.gz is damaged: Compressed file ended")

    write(dumps / "db-2.sql", b"as written")
    write(dumps / "db-2.sql.sha256", sha256(b"as expected").encode())
    outcome = sftp().verify(VerifyConfig())
    assert outcome.ok is False
    assert outcome.detail.startswith(f"db-2.sql: sha256 is {sha256(b'as written')}")


def test_verify_tests_zip_archives_with_seeks_over_sftp(sftp, dumps):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", b"1,2,3\n" * 10_000)
        archive.writestr("b.csv", os.urandom(100_000))
    write(dumps / "export.zip", buffer.getvalue())

    assert sftp().verify(VerifyConfig()).detail == "export.zip: zip archive is intact"


def test_an_unknown_host_key_is_refused(sftp, server, tmp_path):
    other_host = make_key(tmp_path / "other_host")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(server.port, other_host).replace("127.0.0.1", "192.0.2.1"))

    expected = (f"sftp://{server.user}@127.0.0.1:{server.port}: the server's ssh-ed25519 key ({server.fingerprint}) "
                f"is not in {known_hosts}")
    with pytest.raises(LocationError, match=re.escape(expected)):
        sftp(known_hosts=known_hosts).backups()
    assert known_hosts.read_text().count("\n") == 1  # nothing was added


def test_a_changed_host_key_is_refused(sftp, server, tmp_path):
    impostor = make_key(tmp_path / "old_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(server.port, impostor))

    expected = (f"the host key has changed: the server sent {server.fingerprint}, "
                f"{known_hosts} has {fingerprint(impostor)}")
    with pytest.raises(LocationError, match=re.escape(expected)):
        sftp(known_hosts=known_hosts).backups()


def test_a_key_the_server_does_not_know_is_refused(sftp, server, tmp_path):
    stranger = make_key(tmp_path / "stranger")

    with pytest.raises(LocationError, match=f"{server.user}@127.0.0.1:{server.port}: the server refused the key "
                                            f"{stranger}"):
        sftp(key_file=stranger).backups()
    outcome = sftp(key_file=stranger).verify(VerifyConfig())
    assert outcome.ok is None and "refused the key" in outcome.detail


@pytest.mark.parametrize(("key_file", "problem"), [("missing", "does not exist"),
                                                   ("user_ed25519.pub", "is not a private key vigil can read")])
def test_an_unusable_key_file_is_named(sftp, server, key_file, problem):
    path = server.key_file.parent / key_file
    with pytest.raises(LocationError, match=f"^sftp://.+@127.0.0.1:{server.port}: key_file {path} {problem}"):
        sftp(key_file=path).backups()


def test_a_pinned_fingerprint_is_accepted_and_another_refused(sftp, server, dumps, tmp_path):
    write(dumps / "db-1.sql", b"dump")
    pinned = sftp(known_hosts=None, host_key_fingerprint=server.fingerprint)
    assert [b.id for b in pinned.backups()] == ["db-1.sql"]

    wrong = fingerprint(make_key(tmp_path / "other"))
    with pytest.raises(LocationError, match=re.escape(f"key is {server.fingerprint}, not the pinned {wrong}")):
        sftp(known_hosts=None, host_key_fingerprint=wrong).backups()


def test_a_closed_port_is_a_clear_error(sftp):
    port = free_port()
    with pytest.raises(LocationError, match=f"^sftp://.+@127.0.0.1:{port}: connection refused; check the host"):
        sftp(port=port).backups()


@pytest.mark.parametrize("keys", [{"known_hosts": None}, {"host_key_fingerprint": "SHA256:" + "A" * 43}])
def test_config_needs_exactly_one_way_to_know_the_host_key(keys):
    config = {"kind": "sftp", "host": "nas", "user": "vigil", "key_file": "/k", "path": "/b",
              "known_hosts": "/etc/vigil/known_hosts", **keys}
    with pytest.raises(ValidationError, match="set one of known_hosts or host_key_fingerprint"):
        SftpLocation.Config(**config)


def test_an_encrypted_key_is_opened_with_its_passphrase_by_reference(sftp, server, dumps, tmp_path, monkeypatch):
    locked = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(locked)], check=True)
    with (server.key_file.parent / "authorized_keys").open("a") as keys:
        keys.write((tmp_path / "locked_ed25519.pub").read_text())
    write(dumps / "db-1.sql", b"dump")
    monkeypatch.setenv("VIGIL_TEST_SFTP_PASSPHRASE", "open sesame")

    unlocked = sftp(key_file=locked, key_passphrase="${env:VIGIL_TEST_SFTP_PASSPHRASE}")
    assert [b.id for b in unlocked.backups()] == ["db-1.sql"]
    with pytest.raises(LocationError, match=f"^sftp://.+:{server.port}: key_file {locked} is encrypted; set key_pass"):
        sftp(key_file=locked).backups()


def test_a_server_that_accepts_and_never_answers_fails_within_the_timeout(sftp):
    with unaccepted() as port:
        expected = f"@127.0.0.1:{port}: no SSH banner within 1s (is this an SSH server?)"
        with pytest.raises(LocationError, match=re.escape(expected)):
            sftp(port=port, timeout="1s").backups()


def test_a_name_that_is_not_utf8_is_listed_with_an_escape_and_verified(sftp, dumps, fault_report):
    """paramiko's listdir_attr fails the whole listing with UnicodeDecodeError on such a name."""
    (dumps / os.fsdecode(b"db-caf\xe9.sql.gz")).write_bytes(gzip.compress(b"dump"))
    (backup,) = sftp("db-*").backups()
    outcome = sftp("db-*").verify(VerifyConfig())
    fault_report(fault="sftp dump named db-caf\\xe9 (not UTF-8)", expected="listed with an escape, verified",
                 observed=f"{backup.name}; verify: {outcome.detail}")
    assert (backup.id, backup.name) == ("db-caf\\xe9.sql.gz", "db-caf\\xe9.sql.gz")
    assert (outcome.ok, outcome.detail) == (True, "db-caf\\xe9.sql.gz: gz archive is intact")


@pytest.mark.parametrize("size", [-5, 2**63, 2**64 - 1])
def test_a_listed_size_out_of_range_is_unknown(size):
    """An SFTP size is an unsigned 64-bit number: 2^63 and more would fail every SQLite write."""
    attributes = paramiko.SFTPAttributes()
    attributes.st_mode, attributes.st_size, attributes.st_mtime = 0o100644, size, 1_800_000_000
    assert filelike.entry("db-1.sql.gz", attributes).size is None
