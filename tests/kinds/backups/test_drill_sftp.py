"""Restore drills of sftp backups against a real OpenSSH sshd: dumps compared with their sidecars and with what
vigil first saw, directory backups' files, reads bounded to the listed size, files gone, and cancellation."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from checks.model import DrillNotRun
from checks.sources.sftp import WINDOW, SftpLocation
from tests.clocks import RunawayClock
from tests.drills import candidates, deleting_the_rest, drill, restored, seen
from tests.dumps import sha256, write
from tests.kinds.backups import test_source_sftp
from tests.lab.harness import wait_until

DAY = 86400
server, dumps = test_source_sftp.server, test_source_sftp.dumps  # the same sshd, and a directory it serves


@pytest.fixture
def location(context, server, dumps) -> SftpLocation:
    config = {"kind": "sftp", "host": server.host, "port": server.port, "user": server.user,
              "key_file": server.key_file, "known_hosts": server.known_hosts, "path": str(dumps),
              "pattern": "db-*", "timeout": "10s"}
    return SftpLocation(SftpLocation.Config(**config), context)


def dump(dumps: Path, name: str, data: bytes, age: float = 0) -> None:
    """A dump and its sidecar, as a dump script writes them."""
    write(dumps / name, data, age)
    write(dumps / f"{name}.sha256", f"{sha256(data)}  {name}\n".encode(), age)


def sockets() -> int:
    """The test process's open sockets (the SSH connections among them)."""
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


def test_a_drill_restores_each_dump_and_matches_its_sidecar(location, dumps, context):
    dump(dumps, "db-1.sql.gz", os.urandom(WINDOW + WINDOW // 2), age=DAY)  # more than one read window
    dump(dumps, "db-2.sql.gz", os.urandom(1000))
    seen(location, context)

    outcome = drill(location, context)

    assert outcome.drill.ok is True, outcome.drill.detail
    assert sorted((f.path, f.result, f.reference) for f in outcome.files) == [
        ("db-1.sql.gz", "match", "sidecar"), ("db-2.sql.gz", "match", "sidecar")]
    assert outcome.drill.bytes_read == WINDOW + WINDOW // 2 + 1000


def test_a_directory_backup_s_files_are_candidates_and_restored(location, dumps):
    write(dumps / "db-dir" / "etc" / "hosts", b"127.0.0.1 localhost\n")
    write(dumps / "db-dir" / "README", b"x" * 5)

    found = candidates(location)

    assert {path: candidate.size for path, candidate in found.items()} == {"db-dir/etc/hosts": 20, "db-dir/README": 5}
    assert restored(location, found["db-dir/etc/hosts"]).sha256.hexdigest() == sha256(b"127.0.0.1 localhost\n")


def test_a_dump_rewritten_with_its_sidecar_after_vigil_saw_it_fails_the_drill(location, dumps, context):
    dump(dumps, "db-1.sql.gz", b"the dump as written")
    seen(location, context)
    dump(dumps, "db-1.sql.gz", b"the dump rewritten later")  # and its sidecar with it: they agree

    outcome = drill(location, context)

    [restored] = outcome.files
    assert (outcome.drill.ok, restored.result, restored.reference) == (False, "mismatch", "first-seen")
    assert restored.detail.startswith(f"sha256 {sha256(b'the dump rewritten later')[:12]}… ≠ first-seen "
                                      f"{sha256(b'the dump as written')[:12]}…")


def test_a_restore_reads_the_listed_size_and_no_more(location, dumps):
    write(dumps / "db-1.sql", b"x" * 1000)
    [candidate] = location.candidates(location.backups())
    with (dumps / "db-1.sql").open("ab") as grown:  # still being written, in place
        grown.write(b"y" * WINDOW)

    sink = restored(location, candidate)

    assert (sink.size, sink.sha256.hexdigest()) == (1000, sha256(b"x" * 1000))


def test_a_dump_deleted_after_it_was_listed_is_not_drilled_and_not_held(location, dumps, server):
    dump(dumps, "db-1.sql.gz", b"dump")
    [candidate] = location.candidates(location.backups())
    assert location.holds("db-1.sql.gz")

    (dumps / "db-1.sql.gz").unlink()

    with pytest.raises(DrillNotRun, match=f"^cannot read db-1.sql.gz in sftp://{server.user}@.*: No such file"):
        restored(location, candidate)
    assert not location.holds("db-1.sql.gz")


def test_a_cancelled_restore_stops_and_leaves_no_session_or_thread(location, dumps):
    write(dumps / "db-1.sql", os.urandom(4 * WINDOW))
    [candidate] = location.candidates(location.backups())
    before, threads = sockets(), threading.active_count()
    cancel = threading.Event()
    sizes = []

    with pytest.raises(DrillNotRun, match="^cancelled$"):
        restored(location, candidate, cancel, then=lambda size: (sizes.append(size), cancel.set()))

    assert sizes[-1] < 4 * WINDOW
    wait_until(lambda: sockets() <= before, what="the SSH connection to close")
    wait_until(lambda: threading.active_count() <= threads, what="paramiko's transport thread to end")


def test_a_dump_deleted_during_a_drill_is_unreadable_never_damaged(location, dumps, context):
    for name in ("db-1.sql.gz", "db-2.sql.gz"):
        dump(dumps, name, os.urandom(1000))

    outcome = drill(location, context, progress=deleting_the_rest(lambda name: (dumps / name).unlink(),
                                                                  {"db-1.sql.gz", "db-2.sql.gz"}))

    first, second = outcome.files
    assert (outcome.drill.ok, first.result, second.result) == (True, "match", "unreadable")
    assert f"cannot read {second.path} in sftp://" in second.detail


def test_a_restore_may_take_longer_than_one_operation_s_timeout(location, dumps, context):
    """A large dump over a slow link: each request has the timeout, the whole read the drill's own time."""
    write(dumps / "db-1.sql", os.urandom(2 * WINDOW))
    [candidate] = location.candidates(location.backups())
    slow = SftpLocation(location.config, replace(context, clock=RunawayClock()))  # an hour passes at every look

    assert restored(slow, candidate).size == 2 * WINDOW
