"""Durable facts in SQLite (WAL): last success per job, backup history, verify results.

The agent must keep serving whatever happens to this file: a corrupt database is moved
aside and recreated, an unwritable one is replaced by an in-memory one, and both are
reported loudly (log, status page, `vigil_state_database_ok 0`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "vigil.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS job_success (
    job TEXT PRIMARY KEY,
    last_success REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS backup_observations (
    job TEXT NOT NULL,
    location TEXT NOT NULL,
    backup_id TEXT NOT NULL,
    completed_at REAL NOT NULL,
    size_bytes INTEGER,
    file_count INTEGER,
    duration REAL,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    observed_at REAL NOT NULL,
    PRIMARY KEY (job, location, backup_id)
);
CREATE TABLE IF NOT EXISTS backup_verifications (
    job TEXT NOT NULL,
    location TEXT NOT NULL,
    verified_at REAL NOT NULL,
    ok INTEGER,  -- NULL: the check could not run
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, location, verified_at)
);
CREATE TABLE IF NOT EXISTS backup_windows (
    job TEXT NOT NULL,
    window_start REAL NOT NULL,
    status TEXT NOT NULL,
    offsite_lag REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job, window_start)
);
"""


class StateDB:
    def __init__(self, state_dir: Path):
        self.path = state_dir / FILENAME
        self.problem = ""  # what is wrong now; empty while the file on disk is in use
        self.notice = ""  # what went wrong earlier and was repaired
        self._lock = threading.Lock()  # backup checks write from the collector threads
        self._conn = self._open()

    @property
    def ok(self) -> bool:
        return not self.problem

    def last_successes(self) -> dict[str, float]:
        return dict(self.query("SELECT job, last_success FROM job_success"))

    def record_success(self, job: str, when: float) -> None:
        self.write(
            "INSERT INTO job_success (job, last_success) VALUES (?, ?) "
            "ON CONFLICT (job) DO UPDATE SET last_success = excluded.last_success",
            (job, when),
        )

    def write(self, sql: str, params: tuple = (), many: bool = False) -> None:
        """Run one statement (for every row of `params` when `many`) in one transaction;
        on a damaged file, start a new one."""
        with self._lock:
            self._write(sql, params, many)

    def _write(self, sql: str, params, many: bool) -> None:
        execute = self._conn.executemany if many else self._conn.execute
        try:
            with self._conn:
                execute(sql, params)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
                self._fail(f"cannot write {self.path}: {exc}")  # disk full, read-only, ...
                return
            self._conn.close()
            self._conn = self._recreate(f"database damaged while writing: {exc}")
            try:
                with self._conn:
                    (self._conn.executemany if many else self._conn.execute)(sql, params)
            except sqlite3.Error as retry_exc:
                self._fail(f"cannot write {self.path}: {retry_exc}")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                log.error("state database read failed path=%s error=%s", self.path, exc)
                return []

    def close(self) -> None:
        try:
            with self._lock:
                self._conn.close()
        except sqlite3.Error as exc:
            log.error("state database close failed path=%s error=%s", self.path, exc)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(self.path)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
                return self._in_memory(f"cannot open {self.path}: {exc}")
            return self._recreate(f"database is damaged: {exc}")
        except OSError as exc:
            return self._in_memory(f"cannot create {self.path.parent}: {exc.strerror}")
        return conn

    def _connect(self, path: Path | str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=5, check_same_thread=False)  # guarded by _lock
        try:
            (check,) = conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # committed rows survive a crash of vigil
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _recreate(self, reason: str) -> sqlite3.Connection:
        aside = self.path.with_name(f"{FILENAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("state database damaged; moved aside and recreated path=%s moved_to=%s reason=%s",
                  self.path, aside, reason)
        try:
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(FILENAME + suffix).unlink(missing_ok=True)
            conn = self._connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            return self._in_memory(f"cannot recreate {self.path}: {exc}")
        self.notice = f"recreated after damage; the old file is kept as {aside.name}"
        return conn

    def _in_memory(self, reason: str) -> sqlite3.Connection:
        self._fail(f"{reason}; keeping state in memory until restart")
        return self._connect(":memory:")

    def _fail(self, problem: str) -> None:
        log.error("state database problem=%s", problem)
        self.problem = problem
