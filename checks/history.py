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
""", added_columns=(("backup_windows", "detail", "TEXT NOT NULL DEFAULT ''"),))


@dataclass(frozen=True)
class Verification:
    at: float
    ok: bool | None
    detail: str


class BackupHistory:
    def __init__(self, db: StateDB, job: str):
        self.db, self.job = db, job

    def record(self, location: str, snapshots: list[BackupSnapshot], verdicts: dict[str, str], now: float) -> None:
        """Store every listed backup; what was measured once (size, end, duration) is kept."""
        rows = [(self.job, location, s.id, s.completed_at, s.size_bytes, s.file_count, s.duration,
                 verdicts.get(s.id, "seen"), redact(s.detail), now) for s in snapshots]
        self.db.write(
            "INSERT INTO backup_observations (job, location, backup_id, completed_at, size_bytes, file_count,"
            " duration, verdict, detail, observed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (job, location, backup_id) DO UPDATE SET"
            " completed_at = CASE WHEN excluded.size_bytes IS NULL THEN completed_at ELSE excluded.completed_at END,"
            " size_bytes = coalesce(excluded.size_bytes, size_bytes),"
            " file_count = coalesce(excluded.file_count, file_count),"
            " duration = coalesce(excluded.duration, duration),"
            " verdict = CASE WHEN excluded.verdict = 'seen' THEN verdict ELSE excluded.verdict END,"
            " detail = excluded.detail", rows, many=True)

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
