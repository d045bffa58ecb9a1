"""The state directory read-only, full or its database damaged: vigil keeps serving,
says so, reads the history it can, and is back on the file without a restart once fixed.

A real agent on a real tmpfs (a small one to fill, or bind-mounted read-only), so the
errors are the kernel's and SQLite's own. Mounting needs root: the tests skip without
it, and fail under VIGIL_LAB=require.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.statedb import FILENAME, RETRY_EVERY, StateDB
from tests.lab.harness import REQUIRED, wait_until
from tests.test_durability import FAKE_RESTIC, backup_job, rows

PROBLEM = "state database problem="
BACK = "state database writable again"


def _need_root() -> None:
    if os.geteuid() != 0:
        message = "mounting a tmpfs or a read-only bind mount needs root"
        if REQUIRED:
            pytest.fail(f"VIGIL_LAB=require: {message}")
        pytest.skip(message)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)  # noqa: S603, S607 — fixed argv, test only


@contextlib.contextmanager
def small_disk(where: Path, size: str = "8m") -> Iterator[Path]:
    _need_root()
    where.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S603, S607 — as above


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` on a read-only bind mount of itself until the block ends."""
    _need_root()
    _mount("--bind", str(directory), str(directory))
    try:
        _mount("-o", "remount,bind,ro", str(directory))
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)  # noqa: S603, S607 — as above


def fill(disk: Path) -> Path:
    """Write until the file system says ENOSPC; the file to delete to end the episode."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 4096, 512):  # down to the last page
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
        with pytest.raises(OSError) as full:
            os.write(fd, b"\0")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return ballast


def gauge(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def database_ok(agent) -> float | None:
    return gauge(agent.metrics(), "vigil_state_database_ok")


def last_good_backup(agent, job: str) -> float:
    """When the newest good backup of `job` completed, as served; 0 before its first evaluation."""
    return gauge(agent.metrics(), "vigil_backup_last_success_timestamp_seconds",
                 f'{{backup="{job}",location="primary"}}') or 0.0


def config_text(state: Path, broken: bool = False) -> str:
    """job0 keeps finding new backups; job1 too, or (broken) its tool fails, so only history shows it."""
    jobs = backup_job("job0", "0.05") + backup_job("job1", "0.05")
    if broken:
        head, tail = jobs.split("  - name: job1")
        jobs = head + "  - name: job1" + tail.replace(f"binary: {FAKE_RESTIC}", "binary: /bin/false")
    return f"listen: 127.0.0.1:{{port}}\nstate_dir: {state}\nbackups:\n{jobs}"


def seed(start_agent, write_config, state: Path) -> tuple[set[tuple], dict[str, float]]:
    """Run the agent until both jobs have history, stop it cleanly; the rows it wrote and
    when each job's newest backup completed.

    The file is left as a clean stop leaves it, alone: the empty WAL and shared-memory
    files the test's own readers made beside it are removed."""
    agent = start_agent(write_config(config_text(state), name="seed.yaml"))
    wait_until(lambda: {"job0", "job1"} <= {row[1] for row in rows(state) if row[0] == "backup_observations"},
               20, "history for both jobs")
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(15) == 0
    kept, newest_of = rows(state), {job: newest(state, job) for job in ("job0", "job1")}
    for side in state.glob(f"{FILENAME}-*"):
        assert side.name.endswith("-shm") or side.stat().st_size == 0, f"{side} holds rows"
        side.unlink()
    return kept, newest_of


def newest(state: Path, job: str) -> float:
    """When the newest backup of `job` in the file completed."""
    db = sqlite3.connect(f"file:{state / FILENAME}?mode=ro", uri=True)
    try:
        return db.execute("SELECT max(completed_at) FROM backup_observations WHERE job = ?", (job,)).fetchone()[0]
    finally:
        db.close()


def status_problem(agent) -> str:
    return json.loads(agent.get("/status.json")[1])["state_database"]["problem"]


def started_degraded(agent, newest_of: dict[str, float], cause: str) -> str:
    """An agent started on a file it cannot write: it says so and serves the file's history
    (job1's tool fails, so what it shows comes from the file), and job0 keeps finding new
    backups (kept in memory). The problem it reports."""
    assert database_ok(agent) == 0
    problem = status_problem(agent)
    assert cause in problem and "history read from the file" in problem, problem
    wait_until(lambda: last_good_backup(agent, "job1"), 10, "job1 evaluated")
    assert last_good_backup(agent, "job1") == newest_of["job1"]
    wait_until(lambda: last_good_backup(agent, "job0") > newest_of["job0"], 10, "a new backup kept in memory")
    return problem


def fix_and_stop(agent, fix: Callable[[], object]) -> float:
    """Seconds from `fix()` until vigil_state_database_ok is 1 again; then a clean stop."""
    fixed_at = time.monotonic()
    fix()
    wait_until(lambda: database_ok(agent) == 1, RETRY_EVERY * 4, "vigil_state_database_ok 1 again")
    recovered = time.monotonic() - fixed_at
    assert not status_problem(agent)
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(15) == 0
    return recovered


def kept_and_moved(before: set[tuple], after: set[tuple], log: str) -> int:
    """One problem line, one recovery line, no row of `before` missing, and job0's backups
    seen during the episode in the file: the rows lost (0)."""
    assert log.count(PROBLEM) == 1 and BACK in log, log
    assert before <= after, f"lost {sorted(before - after)[:5]}"
    assert newest_row(after, "job0") > newest_row(before, "job0"), "the backups seen meanwhile never reached the file"
    return len(before - after)


def newest_row(kept: set[tuple], job: str) -> str:
    """The newest backup id of `job` among rows (fake restic ids grow with time)."""
    return max(row[3] for row in kept if row[:2] == ("backup_observations", job))


def test_a_full_disk_at_start_serves_the_history_and_recovers_without_restart(start_agent, write_config,
                                                                              tmp_path, fault_report):
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        seeded, newest_of = seed(start_agent, write_config, state)
        ballast = fill(disk)
        agent = start_agent(write_config(config_text(state, broken=True)))
        started_degraded(agent, newest_of, "no space left")
        recovered = fix_and_stop(agent, ballast.unlink)
        lost = kept_and_moved(seeded, rows(state), agent.peer.output())
    fault_report(fault="state disk full when vigil starts", expected="history served, ok 0, ok 1 when freed; none lost",
                 observed=f"history served, ok 0 'no space left', ok 1 {recovered:.1f}s after freeing",
                 recovered_in=recovered, lost=lost)


def test_a_disk_that_fills_while_running_loses_nothing_and_recovers(start_agent, write_config, tmp_path,
                                                                   fault_report):
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        agent = start_agent(write_config(config_text(state)))
        wait_until(lambda: len(rows(state)) > 6, 20, "some history")
        ballast = fill(disk)
        wait_until(lambda: database_ok(agent) == 0, 30, "vigil_state_database_ok 0 on the full disk")
        problem = status_problem(agent)
        assert "database or disk is full" in problem or "no space left" in problem, problem
        kept = rows(state)
        wait_until(lambda: last_good_backup(agent, "job0") > newest(state, "job0"), 10, "a backup kept in memory")
        recovered = fix_and_stop(agent, ballast.unlink)
        lost = kept_and_moved(kept, rows(state), agent.peer.output())
    fault_report(fault="state disk fills while vigil runs", expected="ok 0 while full, ok 1 once freed; none lost",
                 observed=f"ok 0, then ok 1 {recovered:.1f}s after freeing; memory facts moved",
                 recovered_in=recovered, lost=lost)


def test_a_read_only_state_dir_is_read_and_written_again_once_writable(start_agent, write_config, tmp_path,
                                                                      fault_report):
    state = tmp_path / "state"
    seeded, newest_of = seed(start_agent, write_config, state)
    image = (state / FILENAME).read_bytes()
    with read_only(state):
        agent = start_agent(write_config(config_text(state, broken=True)))
        started_degraded(agent, newest_of, "is read-only")
        assert (state / FILENAME).read_bytes() == image
        recovered = fix_and_stop(agent, lambda: _mount("-o", "remount,bind,rw", str(state)))
    lost = kept_and_moved(seeded, rows(state), agent.peer.output())
    fault_report(fault="state dir read-only, good database in it", expected="history served, ok 0; ok 1 when rw",
                 observed=f"history served, ok 0 'is read-only', ok 1 {recovered:.1f}s after rw",
                 recovered_in=recovered, lost=lost)


def test_a_damaged_database_is_kept_aside_and_its_readable_rows_recovered(start_agent, write_config, tmp_path,
                                                                         fault_report):
    state = tmp_path / "state"
    db = StateDB(state)
    many = [("old", "primary", f"b{n:03}" + "x" * 400, float(n), "ok", 0.0) for n in range(300)]
    db.write("INSERT INTO backup_observations (job, location, backup_id, completed_at, verdict, observed_at)"
             " VALUES (?, ?, ?, ?, ?, ?)", many, many=True)
    db.close()
    raw = bytearray((state / FILENAME).read_bytes())
    raw[4096 * 10:4096 * 12] = b"\xff" * 8192  # two b-tree pages in the middle, not the header
    (state / FILENAME).write_bytes(bytes(raw))
    agent = start_agent(write_config(config_text(state)))
    assert database_ok(agent) == 1
    notice = json.loads(agent.get("/status.json")[1])["state_database"]["notice"]
    assert "recreated after damage" in notice, notice
    wait_until(lambda: last_good_backup(agent, "job0"), 10, "job0 evaluated on the new file")
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(15) == 0
    log = agent.peer.output()
    assert log.count("moved aside") == 1, log
    aside = list(state.glob(f"{FILENAME}.corrupt-*"))
    assert [path.name.count("-") for path in aside] == [1], aside  # the file alone: no -wal, no -shm made
    recovered = {row[3] for row in rows(state) if row[1] == "old"}
    assert recovered <= {row[2] for row in many}
    assert len(recovered) >= len(many) * 3 // 4, f"only {len(recovered)} of {len(many)} rows recovered"
    fault_report(fault="state database damaged (2 b-tree pages)", expected="kept aside, new file, readable rows copied",
                 observed=f"{len(recovered)}/{len(many)} rows recovered (the rest were on the overwritten pages), "
                          "ok 1, damaged file kept", recovered_in=None, lost=0)


def test_a_damaged_file_in_a_read_only_dir_waits_in_memory_until_it_can_be_replaced(tmp_path, caplog,
                                                                                   fault_report):
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(b"not sqlite at all " * 300)
    with read_only(state):
        db = StateDB(state)
        assert not db.ok and "cannot recreate" in db.problem and "state kept in memory" in db.problem, db.problem
        db.record_success("nas", 1.0)
        db.reconnect(force=True)  # still read-only: nothing moved, nothing logged again
        assert not db.ok and "moved aside" not in caplog.text
        _mount("-o", "remount,bind,rw", str(state))
        db.reconnect(force=True)
    assert db.ok and "recreated after damage" in db.notice
    assert db.last_successes() == {"nas": 1.0}
    db.close()
    assert StateDB(state).last_successes() == {"nas": 1.0}
    assert len(list(state.glob(f"{FILENAME}.corrupt-*"))) == 1
    fault_report(fault="damaged state database in a read-only dir", expected="memory until writable, then replaced",
                 observed="ok 0 in memory; once rw: moved aside, new file, memory facts kept",
                 recovered_in=None, lost=0)
