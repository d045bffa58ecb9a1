"""`vigil report backups`: the monthly summary for the head of IT, from the history.

One row per backup job: how many scheduled runs closed in the period, how many were
ok, missed, failed or had another problem (too small, shrunk, off-site behind, ...),
how many the agent did not see (it was not running), the worst off-site lag, and
the last integrity check.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.statedb import StateDB
from agent.units import format_duration
from checks.config import BackupJobConfig
from checks.schedule import Schedule

COLUMNS = ("backup job", "runs", "ok", "missed", "failed", "other problem", "not seen", "worst off-site lag",
           "last integrity check")


@dataclass(frozen=True)
class Row:
    job: str
    runs: int
    counts: Counter
    unseen: int
    worst_lag: float | None
    last_check: str

    def cells(self) -> list[str]:
        other = self.runs - self.unseen - self.counts["ok"] - self.counts["missed"] - self.counts["failed"]
        lag = "" if self.worst_lag is None else format_duration(self.worst_lag) if self.worst_lag else "0"
        return [self.job, str(self.runs), str(self.counts["ok"]), str(self.counts["missed"]),
                str(self.counts["failed"]), str(other), str(self.unseen), lag, self.last_check]


def backup_report(db: StateDB, jobs: tuple[BackupJobConfig, ...], now: float, days: int) -> list[Row]:
    since = now - days * 86400
    rows = []
    for job in jobs:
        windows = Schedule(job.schedule, job.timezone, job.deadline).windows(since, now)
        recorded = {start: (status, lag) for start, status, lag in db.query(
            "SELECT window_start, status, offsite_lag FROM backup_windows WHERE job = ? AND window_start >= ?",
            (job.name, since - job.deadline))}
        seen = [recorded[w.start] for w in windows if w.start in recorded]
        lags = [lag for _, lag in seen if lag is not None]
        rows.append(Row(job.name, len(windows), Counter(status for status, _ in seen), len(windows) - len(seen),
                        max(lags) if lags else None, _last_check(db, job.name)))
    return rows


def _last_check(db: StateDB, job: str) -> str:
    found = db.query("SELECT verified_at, ok FROM backup_verifications WHERE job = ? AND ok IS NOT NULL"
                     " ORDER BY verified_at DESC LIMIT 1", (job,))
    if not found:
        return ""
    at, ok = found[0]
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d} {'ok' if ok else 'ERRORS'}"


def render(rows: list[Row], fmt: str, title: str) -> str:
    table = [list(COLUMNS)] + [row.cells() for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        return out.getvalue()
    if fmt == "markdown":
        lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table[1:]]
        return "\n".join(lines) + "\n"
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
    lines = [title, ""] + ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
                           for cells in table]
    return "\n".join(lines) + "\n"
