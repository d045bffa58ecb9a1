"""Durable facts in SQLite (WAL): last success per job, backup history, verify results.

The agent must keep serving whatever happens to this file, and must never throw away
a sound one: only real damage (the integrity check fails, or SQLite says
SQLITE_CORRUPT / SQLITE_NOTADB) moves the file aside (with its WAL) and starts a new
one. A bad row is rejected with a log line; a locked, full or read-only disk is a
problem reported loudly (log, status page, `vigil_state_database_ok 0`) until the next
write succeeds; an unusable directory means state in memory until restart. After
close() every read and write is refused quietly: blocking runs that outlive the
agent's stop cannot harm the file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
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
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, window_start)
);
"""
# Columns added since the first release: (table, column, definition), applied to older files.
ADDED_COLUMNS = (("backup_windows", "detail", "TEXT NOT NULL DEFAULT ''"),)


def _create_schema(conn: sqlite3.Connection) -> None:
    """The tables, and the columns an older file lacks."""
    conn.executescript(SCHEMA)
    for table, column, definition in ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# what a bad row or statement raises: the row is refused, the file is fine
_REJECTED = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, sqlite3.ProgrammingError,
             OverflowError)


class Damaged(sqlite3.DatabaseError):
    """The integrity check found damage."""


def is_damage(exc: BaseException) -> bool:
    """Whether an error means the file itself is damaged (extended codes keep the primary in the low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, Damaged) or (code is not None and code & 0xFF in _DAMAGE_CODES)


class StateDB:
    def __init__(self, state_dir: Path, *, conn: sqlite3.Connection | None = None):
        self.path = state_dir / FILENAME
        self.notice = ""  # what went wrong earlier and was repaired
        self._lasting = ""  # a problem until restart (state kept in memory)
        self._passing = ""  # the last write failed (locked, disk full); cleared by a good write
        self._lock = threading.Lock()  # backup checks write from the collector threads
        self._conn: sqlite3.Connection | None = conn if conn is not None else self._open()

    @classmethod
    def private_copy(cls, state_dir: Path) -> StateDB:
        """An in-memory copy of the database in `state_dir` (for `vigil once`): whatever it
        writes stays in this process, so a live agent's file is only ever read."""
        path = state_dir / FILENAME
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        if path.exists():
            try:
                source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
                try:
                    source.backup(conn)
                finally:
                    source.close()
            except sqlite3.Error as exc:
                log.warning("cannot read the state database, starting from nothing path=%s error=%s", path, exc)
                conn.close()
                conn = sqlite3.connect(":memory:", check_same_thread=False)
        _create_schema(conn)
        return cls(state_dir, conn=conn)

    @property
    def problem(self) -> str:
        """What is wrong now; empty while the file on disk is in use and writable."""
        return self._lasting or self._passing

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

    def write(self, sql: str, params: Iterable = (), many: bool = False) -> bool:
        """Run one statement (for every row of `params` when `many`) in one transaction.

        True when every row was written; False when closed, when the disk refused, or
        for a bad row (with `many`, the good rows are still written, one by one)."""
        with self._lock:
            if self._conn is None:
                log.debug("state database closed; write refused path=%s", self.path)
                return False
            rows = list(params) if many else [params]
            try:
                self._execute(sql, rows, many)
            except _REJECTED as exc:
                return self._rejected(sql, rows, many, exc)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    return self._cannot_write(exc)
                self._conn.close()
                self._conn = self._recreate(f"database damaged while writing: {exc}")
                try:
                    self._execute(sql, rows, many)
                except (sqlite3.Error, *_REJECTED) as retry_exc:
                    return self._cannot_write(retry_exc)
            if self._passing:
                log.info("state database writable again path=%s", self.path)
                self._passing = ""
            return True

    def _execute(self, sql: str, rows: list, many: bool) -> None:
        with self._conn:
            if many:
                self._conn.executemany(sql, rows)
            else:
                self._conn.execute(sql, rows[0])

    def _rejected(self, sql: str, rows: list, many: bool, exc: BaseException) -> bool:
        """Write the good rows one by one and log each bad one."""
        table = sql.split(" INTO ", 1)[-1].split(" ", 1)[0]
        for row in rows if many else ():
            try:
                self._execute(sql, [row], many=False)
            except (sqlite3.Error, *_REJECTED) as row_exc:
                log.warning("state database row rejected table=%s error=%s", table, row_exc)
        if not many:
            log.warning("state database row rejected table=%s error=%s", table, exc)
        return False

    def _cannot_write(self, exc: BaseException) -> bool:
        problem = f"cannot write {self.path}: {exc}"
        if problem != self._passing:
            log.error("state database problem=%s", problem)
        self._passing = problem
        return False

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._conn is None:
                log.debug("state database closed; read refused path=%s", self.path)
                return []
            try:
                return self._conn.execute(sql, params).fetchall()
            except (sqlite3.Error, *_REJECTED) as exc:
                log.error("state database read failed path=%s error=%s", self.path, exc)
                return []

    def close(self) -> None:
        """Wait for the write in progress, then refuse every later one."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.error("state database close failed path=%s error=%s", self.path, exc)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(self.path)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                return self._recreate(f"database is damaged: {exc}")
            return self._in_memory(f"cannot open {self.path}: {exc}")
        except OSError as exc:
            return self._in_memory(f"cannot create {self.path.parent}: {exc.strerror}")

    def _connect(self, path: Path | str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=5, check_same_thread=False)  # guarded by _lock
        try:
            (check,) = conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise Damaged(f"integrity check: {check}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # committed rows survive a crash of vigil
            _create_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _recreate(self, reason: str) -> sqlite3.Connection:
        """Keep the damaged file and its WAL side by side under a new name; start afresh."""
        aside = self.path.with_name(f"{FILENAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("state database damaged; moved aside and recreated path=%s moved_to=%s reason=%s",
                  self.path, aside, reason)
        try:
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(FILENAME + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            conn = self._connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            return self._in_memory(f"cannot recreate {self.path}: {exc}")
        self.notice = f"recreated after damage; the old file is kept as {aside.name}"
        return conn

    def _in_memory(self, reason: str) -> sqlite3.Connection:
        self._lasting = f"{reason}; keeping state in memory until restart"
        log.error("state database problem=%s", self._lasting)
        return self._connect(":memory:")
