"""The state database: durable last-success times, and it never stops the agent."""

from __future__ import annotations

import logging
import sqlite3
import threading

from agent.model import JobState, Result, Verdict
from agent.statedb import FILENAME, StateDB
from agent.store import Store


def test_last_success_survives_a_restart(tmp_path):
    store = Store(StateDB(tmp_path))
    store.publish(JobState("nas", "host", 60, last_success=1_700_000_000.5))
    store.publish(JobState("nas", "host", 60, last_success=1_700_000_060.5))
    store.close()
    again = Store(StateDB(tmp_path))
    assert again.restored_last_success("host:nas") == 1_700_000_060.5
    assert again.restored_last_success("unknown") is None
    assert again.db.ok


def probe_run(at: float, status: str, detail: str = "", ok: bool = True) -> JobState:
    verdict = Verdict(status, detail) if ok else None
    return JobState("erp-web", "http", 60, result=Result("erp-web", "http", ok, at, 0.1, verdict=verdict,
                                                          error="" if ok else detail))


def test_each_status_change_is_kept_with_its_reason_and_the_stop(tmp_path, caplog):
    caplog.set_level(logging.INFO, "agent.store")
    store = Store(StateDB(tmp_path))
    for at, status, detail in [(100, "ok", ""), (160, "ok", ""), (220, "down", "connection refused"),
                               (280, "down", "connection refused"), (340, "ok", "")]:
        store.publish(probe_run(at, status, detail))
    store.publish(probe_run(400, "", "the probe crashed: KeyError", ok=False))  # vigil could not tell
    store.close()
    changes = StateDB(tmp_path).changes("http:erp-web")
    assert [(at, status, detail) for at, status, detail in changes[:-1]] == [
        (100, "ok", ""), (220, "down", "connection refused"), (340, "ok", ""),
        (400, "error", "the probe crashed: KeyError")]
    assert changes[-1][1:] == ("stopped", "") and changes[-1][0] > 400
    changed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status changed")]
    assert changed == ["status changed job=http:erp-web from=ok to=down reason=connection refused",
                       "status changed job=http:erp-web from=down to=ok",
                       "status changed job=http:erp-web from=ok to=error reason=the probe crashed: KeyError"]


def test_a_restart_adds_no_change_until_a_run_differs(tmp_path):
    StateDB(tmp_path).record_changes([("http:erp-web", 100, "down", "timed out")])  # then a crash: no stop
    again = Store(StateDB(tmp_path))
    again.publish(probe_run(500, "down", "timed out"))
    again.publish(probe_run(560, "ok"))
    again.close()
    statuses = [(at, status) for at, status, _ in StateDB(tmp_path).changes("http:erp-web")]
    assert statuses[:2] == [(100, "down"), (560, "ok")] and statuses[2][1] == "stopped"


def test_a_corrupt_database_is_moved_aside_and_recreated(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"this is not sqlite, it is a disk error" * 200)
    db = StateDB(tmp_path)
    aside = list(tmp_path.glob(f"{FILENAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")
    assert db.ok and "recreated" in db.notice
    db.record_success("nas", 1.0)
    assert db.last_successes() == {"nas": 1.0}
    assert sqlite3.connect(tmp_path / FILENAME).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unusable_state_directory_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    db = StateDB(blocker / "state")
    assert not db.ok and "state kept in memory" in db.problem
    db.record_success("nas", 2.0)  # the agent keeps working
    assert db.last_successes() == {"nas": 2.0}


def test_the_backup_tables_exist_for_the_backup_checks(tmp_path):
    db = StateDB(tmp_path)
    tables = {name for (name,) in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"job_success", "backup_observations", "backup_verifications"} <= tables


def test_readers_see_immutable_snapshots(tmp_path):
    store = Store(StateDB(tmp_path))
    before = store.snapshot()
    store.publish(JobState("a", "host", 60))
    assert "host:a" not in before and "host:a" in store.snapshot()
    store.retain(["b"])
    assert dict(store.snapshot()) == {}


def observations(db: StateDB) -> list[tuple]:
    return db.query("SELECT backup_id FROM backup_observations ORDER BY backup_id")


OBSERVATION = ("INSERT INTO backup_observations (job, location, backup_id, completed_at, verdict, observed_at)"
               " VALUES (?, ?, ?, ?, 'ok', 0)")


def test_a_bad_row_is_rejected_and_the_file_kept(tmp_path, caplog):
    db = StateDB(tmp_path)
    rows = [("nightly", "primary", "a1", 1.0), ("nightly", "primary", None, 2.0),  # borg JSON "id": null
            ("nightly", "primary", "a3", 2 ** 70)]  # too large for SQLite
    assert db.write(OBSERVATION, [*rows, ("nightly", "primary", "a4", 4.0)], many=True) is False
    assert observations(db) == [("a1",), ("a4",)]
    assert db.write(OBSERVATION, ("nightly", "primary", None, 5.0)) is False
    assert db.ok and not db.notice and not list(tmp_path.glob(f"{FILENAME}.corrupt-*"))
    assert caplog.text.count("row rejected table=backup_observations") == 3


def test_a_write_the_disk_refuses_is_kept_in_memory_until_the_file_takes_it(tmp_path):
    db = StateDB(tmp_path)
    db.record_success("nas", 1.0)
    db._conn.execute("PRAGMA query_only = 1")  # what a read-only file system answers
    db.record_success("nas", 2.0)
    assert "cannot write" in db.problem and "readonly" in db.problem
    assert db.last_successes() == {"nas": 2.0}  # served from memory, with the file's history
    db.reconnect()
    assert not db.ok  # not before RETRY_EVERY
    db.reconnect(force=True)  # a new connection to the file: it takes writes
    assert db.ok and db.last_successes() == {"nas": 2.0}
    db.record_success("nas", 3.0)
    db.close()
    assert StateDB(tmp_path).last_successes() == {"nas": 3.0}
    assert not list(tmp_path.glob(f"{FILENAME}.corrupt-*"))


def test_after_close_writes_and_reads_are_refused_quietly(tmp_path, caplog):
    db = StateDB(tmp_path)
    db.record_success("nas", 1.0)
    db.close()
    assert db.write(OBSERVATION, ("nightly", "primary", "late", 1.0)) is False
    assert db.query("SELECT * FROM job_success") == []
    assert db.ok and not list(tmp_path.glob(f"{FILENAME}.corrupt-*"))
    assert "ERROR" not in caplog.text
    assert StateDB(tmp_path).last_successes() == {"nas": 1.0}


def test_close_waits_for_writes_in_flight(tmp_path):
    db = StateDB(tmp_path)
    written: list[int] = []

    def writer(base: int) -> None:
        for n in range(base, base + 200):
            if db.write(OBSERVATION, ("nightly", "primary", f"b{n}", float(n))):
                written.append(n)

    threads = [threading.Thread(target=writer, args=(base,)) for base in (0, 1000, 2000)]
    for thread in threads:
        thread.start()
    while not written:
        pass
    db.close()
    for thread in threads:
        thread.join()
    assert sorted(StateDB(tmp_path).query("SELECT completed_at FROM backup_observations")) == \
        [(float(n),) for n in sorted(written)]
    assert not list(tmp_path.glob(f"{FILENAME}.corrupt-*"))


def test_real_damage_moves_the_file_aside(tmp_path):
    db = StateDB(tmp_path)
    db.write(OBSERVATION, [("nightly", "primary", f"c{n}" * 200, float(n)) for n in range(200)], many=True)
    db.close()
    raw = bytearray((tmp_path / FILENAME).read_bytes())
    raw[4096 * 2:4096 * 4] = b"\xff" * 8192  # b-tree pages, not the header
    (tmp_path / FILENAME).write_bytes(bytes(raw))
    again = StateDB(tmp_path)
    assert "recreated" in again.notice and again.ok
    assert len(list(tmp_path.glob(f"{FILENAME}.corrupt-*"))) == 1


def test_a_private_copy_reads_the_file_and_writes_only_to_memory(tmp_path):
    live = StateDB(tmp_path)
    live.record_success("nas", 1.0)
    copy = StateDB.private_copy(tmp_path)
    assert copy.last_successes() == {"nas": 1.0}
    copy.record_success("nas", 99.0)
    copy.write(OBSERVATION, ("nightly", "primary", "x", 1.0))
    copy.close()
    assert live.last_successes() == {"nas": 1.0} and observations(live) == []
    assert StateDB.private_copy(tmp_path / "none-yet").last_successes() == {}
    assert not (tmp_path / "none-yet").exists()


def test_publish_leaves_sqlite_to_the_writer_thread(tmp_path, monkeypatch):
    db = StateDB(tmp_path)
    threads = []
    record = db.record_success
    monkeypatch.setattr(db, "record_success", lambda *a: (threads.append(threading.current_thread().name),
                                                          record(*a)))
    store = Store(db)
    for second in range(50):
        store.publish(JobState("nas", "host", 60, last_success=1_700_000_000.0 + second))
    store.close()
    assert set(threads) == {"vigil-store-writer"} and 1 <= len(threads) <= 50  # superseded values skipped
    assert StateDB(tmp_path).last_successes() == {"host:nas": 1_700_000_049.0}


def test_while_the_file_is_locked_only_the_newest_value_waits(tmp_path, monkeypatch):
    db = StateDB(tmp_path)
    writes = []
    record = db.record_success
    monkeypatch.setattr(db, "record_success", lambda *a: (writes.append(a), record(*a)))
    store = Store(db)
    blocker = sqlite3.connect(tmp_path / FILENAME)
    blocker.execute("BEGIN IMMEDIATE")  # an admin's sqlite3 shell in a write transaction
    for second in range(100):
        store.publish(JobState(f"nas{second % 2}", "host", 60, last_success=1_700_000_000.0 + second))
    assert blocker.in_transaction  # every publish returned while the file was locked
    blocker.rollback()
    store.close()
    assert len(writes) <= 4  # the first waited for the lock; the rest were superseded
    assert StateDB(tmp_path).last_successes() == {"host:nas0": 1_700_000_098.0, "host:nas1": 1_700_000_099.0}
