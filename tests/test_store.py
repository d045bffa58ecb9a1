"""The state database: durable last-success times, and it never stops the agent."""

from __future__ import annotations

import sqlite3

from agent.model import JobState
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
    assert not db.ok and "keeping state in memory" in db.problem
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
