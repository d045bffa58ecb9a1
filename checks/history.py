"""What vigil has seen of one backup job, kept in the state database.

Every observed backup, every verification and the outcome of every scheduled window
are stored, so a restart loses nothing, "last success" survives an unreachable
location, shrinkage is judged against real history and the monthly report has data.
A detail (a tool's own words) is redacted before it is written.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from agent.redact import redact
from agent.section import Tables
from agent.statedb import StateDB
from checks.model import BackupSnapshot, VerifyOutcome
from checks.sources.filelike import printable

SHRINK_HISTORY = 7  # backups before the newest that make up "recent history"
# every observed backup, every verification attempt, and the verdict of each scheduled window
TABLES = Tables("""
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
-- restore drills (checks.drill): one row per drill of a location, one per file it restored
CREATE TABLE IF NOT EXISTS backup_drills (
    job TEXT NOT NULL,
    location TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    backup_id TEXT NOT NULL DEFAULT '',  -- the newest backup drilled from
    ok INTEGER,  -- NULL: could not drill (cancelled, unreachable, nothing to compare)
    files INTEGER NOT NULL DEFAULT 0,
    bytes_read INTEGER NOT NULL DEFAULT 0,
    salt TEXT NOT NULL DEFAULT '',
    cursor_from INTEGER NOT NULL DEFAULT -1,
    cursor_to INTEGER NOT NULL DEFAULT -1,
    lap INTEGER NOT NULL DEFAULT 0,
    coverage REAL,  -- the share of the ring passed in this lap
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, location, started_at)
);
CREATE TABLE IF NOT EXISTS backup_drill_files (
    job TEXT NOT NULL,
    location TEXT NOT NULL,
    started_at REAL NOT NULL,
    path TEXT NOT NULL,
    why TEXT NOT NULL,  -- newest, largest, rotation
    size INTEGER NOT NULL,
    mtime REAL,
    ctime REAL,
    sha256 TEXT NOT NULL DEFAULT '',
    reference TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL,  -- match, restored, skipped, mismatch, damaged, unreadable
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, location, started_at, path)
);
""", added_columns=(("backup_windows", "detail", "TEXT NOT NULL DEFAULT ''"),
                    ("backup_observations", "checksum", "TEXT NOT NULL DEFAULT ''")))


@dataclass(frozen=True)
class Verification:
    at: float
    ok: bool | None
    detail: str


class BackupHistory:
    def __init__(self, db: StateDB, job: str):
        self.db, self.job = db, job

    def record(self, location: str, snapshots: list[BackupSnapshot], verdicts: dict[str, str], now: float) -> None:
        """Store every listed backup; what was measured once (size, end, duration) is kept, and so is the
        checksum first seen (a dump rewritten later with its checksum file is caught by a drill)."""
        rows = [(self.job, location, s.id, s.completed_at, s.size_bytes, s.file_count, s.duration,
                 verdicts.get(s.id, "seen"), redact(s.detail), now, s.checksum) for s in snapshots]
        self.db.write(
            "INSERT INTO backup_observations (job, location, backup_id, completed_at, size_bytes, file_count,"
            " duration, verdict, detail, observed_at, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (job, location, backup_id) DO UPDATE SET"
            " completed_at = CASE WHEN excluded.size_bytes IS NULL THEN completed_at ELSE excluded.completed_at END,"
            " size_bytes = coalesce(excluded.size_bytes, size_bytes),"
            " file_count = coalesce(excluded.file_count, file_count),"
            " duration = coalesce(excluded.duration, duration),"
            " verdict = CASE WHEN excluded.verdict = 'seen' THEN verdict ELSE excluded.verdict END,"
            " detail = excluded.detail,"
            " checksum = CASE WHEN checksum = '' THEN excluded.checksum ELSE checksum END", rows, many=True)

    def measured(self, location: str, snapshot: BackupSnapshot) -> BackupSnapshot | None:
        """The backup as measured before (size, files, end, duration), so that happens once."""
        rows = self.db.query("SELECT completed_at, size_bytes, file_count, duration FROM backup_observations"
                             " WHERE job = ? AND location = ? AND backup_id = ? AND size_bytes IS NOT NULL",
                             (self.job, location, snapshot.id))
        if not rows:
            return None
        completed_at, size, files, duration = rows[0]
        return replace(snapshot, completed_at=completed_at, size_bytes=size, file_count=files, duration=duration)

    def median_size_before(self, location: str, completed_at: float) -> float | None:
        rows = self.db.query("SELECT size_bytes FROM backup_observations WHERE job = ? AND location = ?"
                             " AND completed_at < ? AND size_bytes IS NOT NULL AND verdict != 'failed'"
                             " ORDER BY completed_at DESC LIMIT ?",
                             (self.job, location, completed_at, SHRINK_HISTORY))
        return statistics.median(size for (size,) in rows) if rows else None

    def last_success(self, location: str) -> float | None:
        """When the newest good backup there completed, even if the location is unreachable now."""
        rows = self.db.query("SELECT max(completed_at) FROM backup_observations WHERE job = ? AND location = ?"
                             " AND verdict != 'failed'", (self.job, location))
        return rows[0][0] if rows else None

    def first_seen(self) -> float | None:
        rows = self.db.query("SELECT min(observed_at) FROM backup_observations WHERE job = ?", (self.job,))
        return rows[0][0] if rows else None

    def record_verification(self, location: str, at: float, outcome: VerifyOutcome) -> None:
        ok = None if outcome.ok is None else int(outcome.ok)
        self.db.write("INSERT OR REPLACE INTO backup_verifications (job, location, verified_at, ok, detail)"
                      " VALUES (?, ?, ?, ?, ?)", (self.job, location, at, ok, redact(outcome.detail)))

    def last_verification(self, location: str, conclusive: bool = False) -> Verification | None:
        """The latest verification attempt there; with `conclusive`, the latest that ran to a result."""
        rows = self.db.query("SELECT verified_at, ok, detail FROM backup_verifications WHERE job = ?"  # noqa: S608 — constant SQL, values bound
                             " AND location = ?" + " AND ok IS NOT NULL" * conclusive +
                             " ORDER BY verified_at DESC LIMIT 1", (self.job, location))
        if not rows:
            return None
        at, ok, detail = rows[0]
        return Verification(at, None if ok is None else bool(ok), detail)

    def last_verified_ok(self, location: str) -> float | None:
        rows = self.db.query("SELECT max(verified_at) FROM backup_verifications WHERE job = ? AND location = ?"
                             " AND ok = 1", (self.job, location))
        return rows[0][0] if rows else None

    def record_window(self, window_start: float, status: str, offsite_lag: float | None, now: float,
                      detail: str = "") -> None:
        """The outcome of a closed window and why; the worst off-site lag seen during it is kept.

        Final once a later window has one: a wall clock stepped back makes an earlier window the
        last closed one again, and the backups made since would rewrite its verdict.
        """
        self.db.write("INSERT INTO backup_windows (job, window_start, status, offsite_lag, updated_at, detail)"
                      " SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM backup_windows"
                      " WHERE job = ? AND window_start > ?) ON CONFLICT (job, window_start) DO UPDATE SET"
                      " status = excluded.status, updated_at = excluded.updated_at, detail = excluded.detail,"
                      " offsite_lag = CASE WHEN excluded.offsite_lag IS NULL THEN offsite_lag"
                      " ELSE max(coalesce(offsite_lag, 0), excluded.offsite_lag) END",
                      (self.job, window_start, status, offsite_lag, now, redact(detail), self.job, window_start))

    # restore drills (checks.drill): the evidence, the rotation's cursor, and the references of later drills

    def first_seen_checksum(self, location: str, backup_id: str) -> str:
        """The checksum vigil recorded when it first saw the backup ("" when it had none)."""
        rows = self.db.query("SELECT checksum FROM backup_observations WHERE job = ? AND location = ?"
                             " AND backup_id = ?", (self.job, location, backup_id))
        return rows[0][0] if rows else ""

    def record_drill(self, drill: Drill, files: list[DrillFile]) -> None:
        self.db.write("INSERT OR REPLACE INTO backup_drills (job, location, started_at, finished_at, backup_id, ok,"
                      " files, bytes_read, salt, cursor_from, cursor_to, lap, coverage, detail)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (self.job, drill.location, drill.started_at, drill.finished_at, printable(drill.backup_id),
                       None if drill.ok is None else int(drill.ok), drill.files, drill.bytes_read, drill.salt,
                       drill.cursor_from, drill.cursor_to, drill.lap, drill.coverage, redact(drill.detail)))
        self.db.write("INSERT OR REPLACE INTO backup_drill_files (job, location, started_at, path, why, size, mtime,"
                      " ctime, sha256, reference, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      [(self.job, drill.location, drill.started_at, printable(f.path), f.why, f.size, f.mtime, f.ctime,
                        f.sha256, f.reference, f.result, redact(f.detail)) for f in files], many=True)

    def last_drill(self, location: str, conclusive: bool = False) -> Drill | None:
        """The latest drill there; with `conclusive`, the latest that came to a result (its cursor is the
        rotation's: a drill that could not finish is planned again)."""
        found = self.drills(location, conclusive=conclusive, newest=1)
        return found[0] if found else None

    def last_drilled_ok(self, location: str) -> float | None:
        rows = self.db.query("SELECT max(started_at) FROM backup_drills WHERE job = ? AND location = ? AND ok = 1",
                             (self.job, location))
        return rows[0][0] if rows else None

    def drills(self, location: str, since: float | None = None, until: float | None = None,
               conclusive: bool = False, newest: int = -1) -> list[Drill]:
        """The drills there that started in [since, until), newest first (the report's restore evidence)."""
        rows = self.db.query(f"SELECT {_DRILL_COLUMNS} FROM backup_drills WHERE job = ? AND location = ?"  # noqa: S608 — constant SQL, values bound
                             " AND started_at >= ? AND started_at < ?" + " AND ok IS NOT NULL" * conclusive +
                             " ORDER BY started_at DESC LIMIT ?",
                             (self.job, location, -1e18 if since is None else since,
                              1e18 if until is None else until, newest))
        return [Drill(*row[:4], None if row[4] is None else bool(row[4]), *row[5:]) for row in rows]

    def drill_files(self, location: str, started_at: float) -> list[DrillFile]:
        """The files one drill restored, in the order it planned them (newest, largest, then the rotation)."""
        rows = self.db.query(f"SELECT {_DRILL_FILE_COLUMNS} FROM backup_drill_files WHERE job = ? AND location = ?"  # noqa: S608 — constant SQL, values bound
                             " AND started_at = ? ORDER BY rowid", (self.job, location, started_at))
        return [DrillFile(*row) for row in rows]

    def drilled_sha256(self, location: str, path: str, size: int, mtime: float | None,
                       ctime: float | None) -> str:
        """The sha256 an earlier drill there restored whole for the same file (path, size, mtime, ctime): restic and
        borg tell changed files by those, so the same metadata means the same content ("": none). A file skipped
        for want of a reference counts: its restore was whole, and it is the baseline of the next."""
        if mtime is None:
            return ""
        rows = self.db.query("SELECT sha256 FROM backup_drill_files WHERE job = ? AND location = ? AND path = ?"
                             " AND size = ? AND mtime = ? AND ctime IS ? AND result IN ('match', 'restored', 'skipped')"
                             " AND sha256 != '' ORDER BY started_at DESC LIMIT 1",
                             (self.job, location, printable(path), size, mtime, ctime))
        return rows[0][0] if rows else ""


@dataclass(frozen=True)
class Drill:
    """One restore drill of one location (ok None: it could not drill, `detail` says why)."""

    location: str
    started_at: float
    finished_at: float
    backup_id: str
    ok: bool | None
    files: int
    bytes_read: int
    salt: str
    cursor_from: int
    cursor_to: int
    lap: int
    coverage: float | None
    detail: str

    @property
    def at(self) -> float:
        return self.started_at


@dataclass(frozen=True)
class DrillFile:
    """One file a drill restored: why it was picked, what it was compared with, and the result."""

    path: str
    why: str  # newest, largest, rotation
    size: int
    mtime: float | None
    ctime: float | None
    sha256: str
    reference: str  # sidecar, s3-sha256, etag-md5, content-md5, first-seen, earlier-drill, other-location, source, tool
    result: str  # match, restored, skipped, mismatch, damaged, unreadable
    detail: str


_DRILL_COLUMNS = ("location, started_at, finished_at, backup_id, ok, files, bytes_read, salt, cursor_from, cursor_to,"
                  " lap, coverage, detail")
_DRILL_FILE_COLUMNS = "path, why, size, mtime, ctime, sha256, reference, result, detail"
