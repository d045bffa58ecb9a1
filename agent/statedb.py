"""Durable facts in SQLite (WAL): last success per job, backup history, verify results.

The agent must keep serving whatever happens to this file, and must never throw away
a sound one: only real damage (the integrity check fails, or SQLite says
SQLITE_CORRUPT / SQLITE_NOTADB) moves the file aside (with its WAL), and the rows that
can still be read are copied into the new one. A bad row is rejected with a log line.
A file that cannot be written (read-only directory, full disk, locked for long) is a
problem reported loudly (one log line, status page, `vigil_state_database_ok 0`): the
agent carries on in memory, starting from what it can still read of the file (so its
history is served), tries the file again every RETRY_EVERY seconds (`reconnect()`) and
at close, and moves the facts kept in memory into it once it takes writes again.
After close() every read and write is refused quietly: blocking runs that outlive the
agent's stop cannot harm the file.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from agent import registry
from agent.section import Tables

log = logging.getLogger(__name__)

FILENAME = "vigil.db"
CORE = Tables("""
CREATE TABLE IF NOT EXISTS job_success (
    job TEXT PRIMARY KEY,
    last_success REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_changes (
    job TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, at)
);
""")
RETRY_EVERY = 5.0  # seconds between attempts to write the file again while state is in memory


def schema() -> list[Tables]:
    """The agent's own table and each section's (the backup history's DDL is beside its queries)."""
    return [CORE, *(section.tables for section in registry.sections())]


def table_names() -> list[str]:
    return [name for tables in schema() for name in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", tables.ddl)]


def _create_schema(conn: sqlite3.Connection) -> None:
    """The tables, and the columns an older file lacks."""
    for tables in schema():
        conn.executescript(tables.ddl)
        for table, column, definition in tables.added_columns:
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
        self._away = ""  # why state is in memory rather than in the file; empty while the file is in use
        self._seeded = False  # whether the memory started from the file's rows (so it holds them all)
        self._retry_at = 0.0
        self._lock = threading.Lock()  # backup checks write from the collector threads
        self._conn: sqlite3.Connection | None = conn if conn is not None else self._open()

    @classmethod
    def private_copy(cls, state_dir: Path) -> StateDB:
        """An in-memory copy of the database in `state_dir` (for `vigil once`): whatever it
        writes stays in this process, so a live agent's file is only ever read."""
        path = state_dir / FILENAME
        conn = _read_only_copy(path) if path.exists() else None
        if conn is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
        _create_schema(conn)
        return cls(state_dir, conn=conn)

    @property
    def problem(self) -> str:
        """What is wrong now; empty while the file on disk is in use and writable."""
        if not self._away:
            return ""
        kept = "history read from the file, new facts kept in memory" if self._seeded else "state kept in memory"
        return f"{self._away}; {kept} until it can be written (retried every {RETRY_EVERY:g}s)"

    @property
    def ok(self) -> bool:
        return not self._away

    def last_successes(self) -> dict[str, float]:
        return dict(self.query("SELECT job, last_success FROM job_success"))

    def record_success(self, job: str, when: float) -> None:
        self.write(
            "INSERT INTO job_success (job, last_success) VALUES (?, ?) "
            "ON CONFLICT (job) DO UPDATE SET last_success = excluded.last_success",
            (job, when),
        )

    def last_changes(self) -> dict[str, tuple[str, str]]:
        """Each job's status and detail as last recorded: the first run after a restart adds no duplicate."""
        rows = self.query("SELECT job, status, detail FROM job_changes c WHERE at = "
                          "(SELECT MAX(at) FROM job_changes WHERE job = c.job)")
        return {job: (status, detail) for job, status, detail in rows}

    def record_changes(self, changes: Iterable[tuple[str, float, str, str]]) -> None:
        """(job, at, status, detail): when each job's status changed, and why."""
        self.write("INSERT OR REPLACE INTO job_changes (job, at, status, detail) VALUES (?, ?, ?, ?)",
                   changes, many=True)

    def changes(self, job: str, since: float = 0.0) -> list[tuple[float, str, str]]:
        """A job's recorded changes from `since`, oldest first: (at, status, detail)."""
        return self.query("SELECT at, status, detail FROM job_changes WHERE job = ? AND at >= ? ORDER BY at",
                          (job, since))

    def write(self, sql: str, params: Iterable = (), many: bool = False) -> bool:
        """Run one statement (for every row of `params` when `many`) in one transaction.

        True when every row was written (to memory, while the file refuses writes); False
        when closed or for a bad row (with `many`, the good rows are still written, one by one)."""
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
                if self._away:  # memory refused it: nothing better to go to
                    log.error("state database write failed in memory error=%s", exc)
                    return False
                if is_damage(exc):
                    self._conn.close()
                    self._conn = self._recreate(f"database damaged while writing: {exc}")
                else:
                    self._conn = self._leave_file(f"cannot write {self.path}: {self._diagnose(exc)}")
                try:
                    self._execute(sql, rows, many)
                except (sqlite3.Error, *_REJECTED) as retry_exc:
                    log.error("state database write failed after recovery error=%s", retry_exc)
                    return False
            return True

    def reconnect(self, force: bool = False) -> None:
        """Back to the file once it takes writes (tried every RETRY_EVERY s, or now with
        `force`): the facts kept in memory move into it and the problem clears."""
        with self._lock:
            if self._conn is None or not self._away or (not force and time.monotonic() < self._retry_at):
                return
            self._retry_at = time.monotonic() + RETRY_EVERY
            try:
                _private_dir(self.path.parent)
                try:
                    disk = self._connect(self.path)
                except sqlite3.DatabaseError as exc:
                    if not is_damage(exc):
                        raise
                    disk = self._replace_damaged(f"database is damaged: {exc}")
            except (OSError, sqlite3.Error) as exc:
                log.debug("state database still not writable path=%s error=%s", self.path, exc)
                return
            try:
                moved = self._move_into(disk)
            except sqlite3.Error as exc:
                disk.close()
                log.debug("state database still not writable path=%s error=%s", self.path, exc)
                return
            self._conn.close()
            self._conn, self._away = disk, ""
            log.info("state database writable again; facts kept in memory moved into it path=%s rows=%d",
                     self.path, moved)

    def _move_into(self, disk: sqlite3.Connection) -> int:
        """Copy the rows memory has and the file lacks (in one transaction); how many were written.

        Memory started from the file's rows holds the newest of each, so it wins; memory that
        started empty only adds, so a history the file kept is never overwritten."""
        verb = "REPLACE" if self._seeded else "IGNORE"
        before = disk.total_changes
        with disk:
            for table in table_names():
                names = [row[1] for row in disk.execute(f"PRAGMA table_info({table})")]
                columns, marks = ", ".join(names), ", ".join("?" * len(names))
                select = f"SELECT {columns} FROM {table}"  # noqa: S608 — names from the schema, not input
                kept = set(disk.execute(select))
                new = [row for row in self._conn.execute(select) if row not in kept]
                disk.executemany(f"INSERT OR {verb} INTO {table} ({columns}) VALUES ({marks})", new)  # noqa: S608 — as above
        return disk.total_changes - before

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
        """Wait for the write in progress, give facts kept in memory a last chance to reach
        the file, then refuse every later read and write."""
        self.reconnect(force=True)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._away:
            log.error("state database still not writable at stop; facts since the problem are lost path=%s",
                      self.path)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.error("state database close failed path=%s error=%s", self.path, exc)

    def _open(self) -> sqlite3.Connection:
        try:
            _private_dir(self.path.parent)
            return self._connect(self.path)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                return self._recreate(f"database is damaged: {exc}")
            reason = f"cannot open {self.path}: {self._diagnose(exc)}"
        except OSError as exc:
            reason = f"cannot create {self.path.parent}: {exc.strerror}"
        return self._in_memory(reason, _read_only_copy(self.path) if self.path.exists() else None)

    def _diagnose(self, exc: sqlite3.Error) -> str:
        """SQLite's words, and the cause they hide ("disk I/O error" when the disk is full)."""
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return str(exc)
        if fs.f_flag & os.ST_RDONLY or not os.access(self.path.parent, os.W_OK):
            return f"{exc} ({self.path.parent} is read-only)"
        if fs.f_bavail == 0:
            return f"{exc} (no space left on {self.path.parent})"
        return str(exc)

    def _connect(self, path: Path) -> sqlite3.Connection:
        _private_file(path)
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
        """A new file in place of the damaged one, or memory when that cannot be made."""
        try:
            return self._replace_damaged(reason)
        except (OSError, sqlite3.Error) as exc:
            return self._in_memory(f"cannot recreate {self.path}: {exc}", None)

    def _replace_damaged(self, reason: str) -> sqlite3.Connection:
        """Keep the damaged file and its WAL side by side under a new name; start afresh
        with the rows that can still be read from it."""
        aside = self.path.with_name(f"{FILENAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        self.path.rename(aside)  # a read-only directory refuses here, before anything is logged or changed
        log.error("state database damaged; moved aside and recreated path=%s moved_to=%s reason=%s",
                  self.path, aside, reason)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(FILENAME + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        conn = self._connect(self.path)
        saved = _salvage(aside, conn)
        self.notice = f"recreated after damage ({saved} rows recovered); the old file is kept as {aside.name}"
        return conn

    def _leave_file(self, reason: str) -> sqlite3.Connection:
        """Memory holding everything the file held (read through the connection still open)."""
        disk, source = self._conn, sqlite3.connect(":memory:", check_same_thread=False)
        try:
            disk.backup(source)
        except sqlite3.Error as exc:
            log.warning("cannot copy the state database into memory path=%s error=%s", self.path, exc)
            source.close()
            source = _read_only_copy(self.path)
        disk.close()
        return self._in_memory(reason, source)

    def _in_memory(self, reason: str, source: sqlite3.Connection | None) -> sqlite3.Connection:
        """Memory in place of the file, starting from `source` (the file's rows) when there is one."""
        self._away, self._seeded = reason, source is not None
        self._retry_at = time.monotonic() + RETRY_EVERY
        log.error("state database problem=%s", self.problem)
        if source is None:
            source = sqlite3.connect(":memory:", check_same_thread=False)
        _create_schema(source)
        return source


def _private_dir(directory: Path) -> None:
    """The state dir, made the agent's user's alone (0700) whatever the umask; one that exists is left as it is
    (under systemd, StateDirectoryMode= decides)."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)


def _private_file(path: Path) -> None:
    """The database file, made 0600 whatever the umask, before SQLite opens it: SQLite gives its -wal and -shm
    files the database's mode. One that exists is left as it is; one that cannot be made, to SQLite's words."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    os.fchmod(descriptor, 0o600)
    os.close(descriptor)


def _read_only_copy(path: Path) -> sqlite3.Connection | None:
    """The file's rows in memory, read without writing; None when it cannot be read.

    `mode=ro` replays a WAL left beside it; in a read-only directory without one SQLite
    can open the file only as immutable (nothing can change it there anyway)."""
    error: sqlite3.Error | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=5)
            try:
                source.backup(conn)
            finally:
                source.close()
        except sqlite3.Error as exc:
            conn.close()
            error = exc
            continue
        return conn
    log.warning("cannot read the state database path=%s error=%s", path, error)
    return None


def _salvage(damaged: Path, conn: sqlite3.Connection) -> int:
    """Copy the rows still readable in a damaged file: each table is read from both ends
    by rowid until the damage stops the scan, so only rows on broken pages are lost."""
    saved = 0
    wal = damaged.with_name(damaged.name + "-wal").exists()  # else immutable: no -shm is made beside it
    try:
        old = sqlite3.connect(f"{damaged.resolve().as_uri()}?mode=ro{'' if wal else '&immutable=1'}", uri=True)
    except sqlite3.Error:
        return 0
    try:
        for table in table_names():
            try:
                names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
                have = {row[1] for row in old.execute(f"PRAGMA table_info({table})")}
            except sqlite3.Error:
                continue
            if not have:  # an older file without this table
                continue
            columns = ", ".join(name for name in names if name in have)
            insert = f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({', '.join('?' * len(have & set(names)))})"  # noqa: S608 — schema names
            for order in ("ASC", "DESC"):
                try:
                    for row in old.execute(f"SELECT {columns} FROM {table} ORDER BY rowid {order}"):  # noqa: S608 — schema names
                        before = conn.total_changes
                        conn.execute(insert, row)
                        saved += conn.total_changes - before
                except sqlite3.Error as exc:
                    log.warning("state database rows lost to damage table=%s error=%s", table, exc)
    except sqlite3.Error as exc:
        log.warning("state database salvage stopped error=%s", exc)
    finally:
        conn.commit()
        old.close()
    return saved
