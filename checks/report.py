"""`vigil report backups`: the monthly summary for the head of IT, from the history.

Per backup job: the scheduled runs in the period, how many ended in each status, the
success rate, the worst off-site lag and the last integrity check; then every bad night
with its reason, and a legend. A night the agent did not watch (it was not installed or
not running) is reconstructed from what the location itself listed when the agent first
saw it — a backup completed inside that night's window is `ok`, none while the location
already held older backups is `missed` — and marked as reconstructed. Formats: text,
markdown, csv, json, and a standalone html page to attach to an e-mail.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.statedb import StateDB
from agent.units import format_duration
from checks.config import BackupJobConfig
from checks.schedule import EARLY_SLACK, Schedule, Window
from checks.verdict import STATUSES

LEGEND = {
    "ok": "completed in its window, big enough, off-site copy in step, verified where configured",
    "missed": "no backup completed between the scheduled start and the deadline",
    "failed": "the tool reported the run failed, or an integrity check found damage",
    "too_small": "smaller than the configured minimum size",
    "shrunk": "much smaller than the recent median",
    "offsite_stale": "the off-site copy lagged the primary by more than allowed",
    "offsite_mismatch": "the off-site copy is not the same backup",
    "unverified": "no good integrity check for two verification periods",
    "unreachable": "a location could not be read",
    "not seen": "neither watched by vigil nor found in the location's own history",
    "reconstructed": "not watched live: judged from the backups the location listed when vigil first saw it",
}


@dataclass(frozen=True)
class Night:
    """One scheduled run of one job and how it ended."""

    job: str
    start: float
    status: str  # a status, or "not seen"
    detail: str = ""
    reconstructed: bool = False
    offsite_lag: float | None = None


@dataclass
class JobReport:
    job: str
    timezone: str
    nights: list[Night] = field(default_factory=list)
    last_check: str = ""

    def count(self, status: str) -> int:
        return sum(1 for night in self.nights if night.status == status)

    @property
    def judged(self) -> int:
        return sum(1 for night in self.nights if night.status != "not seen")

    @property
    def success(self) -> float | None:
        return self.count("ok") / self.judged if self.judged else None

    @property
    def worst_lag(self) -> float | None:
        lags = [night.offsite_lag for night in self.nights if night.offsite_lag is not None]
        return max(lags) if lags else None

    @property
    def bad(self) -> list[Night]:
        return [night for night in self.nights if night.status not in ("ok", "not seen")]


def backup_report(db: StateDB, jobs: tuple[BackupJobConfig, ...], now: float, days: int) -> list[JobReport]:
    since = now - days * 86400
    return [_job_report(db, job, Schedule(job.schedule, job.timezone, job.deadline).windows(since, now), since)
            for job in jobs]


def _job_report(db: StateDB, job: BackupJobConfig, windows: list[Window], since: float) -> JobReport:
    recorded = {start: (status, detail, lag) for start, status, detail, lag in db.query(
        "SELECT window_start, status, detail, offsite_lag FROM backup_windows WHERE job = ? AND window_start >= ?",
        (job.name, since - job.deadline))}
    observed = db.query("SELECT completed_at, verdict FROM backup_observations WHERE job = ? AND location = ?",
                        (job.name, "primary"))
    report = JobReport(job.name, job.timezone, last_check=_last_check(db, job.name))
    for window in windows:
        if window.start in recorded:
            status, detail, lag = recorded[window.start]
            report.nights.append(Night(job.name, window.start, status, detail, offsite_lag=lag))
        else:
            report.nights.append(_reconstructed(job.name, window, observed))
    return report


def _reconstructed(job: str, window: Window, observed: list[tuple[float, str]]) -> Night:
    """A night nobody watched, judged from the primary's own listing as first seen."""
    inside = [verdict for completed, verdict in observed if window.start - EARLY_SLACK <= completed <= window.deadline]
    if any(verdict != "failed" for verdict in inside):
        return Night(job, window.start, "ok", reconstructed=True)
    if inside:
        return Night(job, window.start, "failed", "the tool reported the run failed", reconstructed=True)
    if any(completed < window.start for completed, _ in observed):
        return Night(job, window.start, "missed", "no backup of that night in the location's history",
                     reconstructed=True)
    return Night(job, window.start, "not seen")


def _last_check(db: StateDB, job: str) -> str:
    found = db.query("SELECT verified_at, ok FROM backup_verifications WHERE job = ? AND ok IS NOT NULL"
                     " ORDER BY verified_at DESC LIMIT 1", (job,))
    if not found:
        return ""
    at, ok = found[0]
    return f"{datetime.fromtimestamp(at, ZoneInfo('UTC')):%Y-%m-%d} {'ok' if ok else 'ERRORS'}"


COLUMNS = ("backup job", "runs", "success", *STATUSES, "not seen", "reconstructed", "worst off-site lag",
           "last integrity check")


def _cells(report: JobReport) -> list[str]:
    success = "" if report.success is None else f"{report.success:.0%}"
    lag = report.worst_lag
    return [report.job, str(len(report.nights)), success, *(str(report.count(s)) for s in STATUSES),
            str(report.count("not seen")), str(sum(night.reconstructed for night in report.nights)),
            "" if lag is None else format_duration(lag) if lag >= 1 else "0", report.last_check]


def _night_cells(night: Night, zone: str) -> list[str]:
    when = datetime.fromtimestamp(night.start, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    return [when, night.job, night.status + (" (reconstructed)" if night.reconstructed else ""), night.detail]


def render(reports: list[JobReport], fmt: str, title: str) -> str:
    table = [list(COLUMNS)] + [_cells(report) for report in reports]
    bad = [_night_cells(night, report.timezone) for report in reports for night in report.bad]
    if fmt == "json":
        return json.dumps({"title": title, "jobs": [{
            "job": r.job, "timezone": r.timezone, "runs": len(r.nights), "success_ratio": r.success,
            "counts": {status: r.count(status) for status in (*STATUSES, "not seen")},
            "worst_offsite_lag_seconds": r.worst_lag, "last_integrity_check": r.last_check,
            "nights": [asdict(night) for night in r.nights]} for r in reports], "legend": LEGEND}, indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        return out.getvalue()
    if fmt == "html":
        return _html(title, table, bad)
    if fmt == "markdown":
        lines = [f"## {title}", "", _md_row(COLUMNS), "|" + "---|" * len(COLUMNS)]
        lines += [_md_row(cells) for cells in table[1:]]
        lines += ["", "### Bad nights", ""]
        lines += [f"- {when}, {job}: **{status}**" + (f" — {detail}" if detail else "")
                  for when, job, status, detail in bad] or ["None."]
        lines += ["", "### Legend", ""] + [f"- **{name}**: {meaning}" for name, meaning in LEGEND.items()]
        return "\n".join(lines) + "\n"
    lines = [title, "", *_aligned(table), "", "Bad nights:"]
    lines += [f"  {when}  {job}  {status}" + (f": {detail}" if detail else "") for when, job, status, detail in bad]
    lines += ["  none"] if not bad else []
    lines += ["", "Legend:"] + [f"  {name}: {meaning}" for name, meaning in LEGEND.items()]
    return "\n".join(lines) + "\n"


def _md_row(cells) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _aligned(table: list[list[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
            for cells in table]


def _html(title: str, table: list[list[str]], bad: list[list[str]]) -> str:
    esc = html.escape

    def rows(cells_list, tag="td"):
        return "".join("<tr>" + "".join(f"<{tag}>{esc(c)}</{tag}>" for c in cells) + "</tr>\n" for cells in cells_list)

    legend = "".join(f"<dt>{esc(name)}</dt><dd>{esc(meaning)}</dd>" for name, meaning in LEGEND.items())
    nights = rows(bad) if bad else "<tr><td colspan='4'>None.</td></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: Arial, Helvetica, sans-serif; color: #222; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0 2em; }}
th, td {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; }}
th {{ background: #f0f0f0; }} dt {{ font-weight: bold; }} dd {{ margin: 0 0 .4em 1.5em; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{rows(table[:1], "th")}{rows(table[1:])}</table>
<h2>Bad nights</h2>
<table><tr><th>scheduled</th><th>backup job</th><th>status</th><th>reason</th></tr>
{nights}</table>
<h2>Legend</h2><dl>{legend}</dl>
</body></html>
"""
