"""`vigil report backups`: the monthly summary for the head of IT, from the history.

Per backup job: the scheduled runs in the period, how many ended in each status, the
success rate, the worst off-site lag and the last integrity check; then every bad night
with its reason; for each job with `drill:`, the restore evidence of each drilled location (the
drills in the period, the last one, its references, every file that failed or was skipped and
why, the rotation's coverage); and a legend. A night the agent did not watch (it was not installed or
not running) is reconstructed from what the location itself listed when the agent first
saw it — a backup completed inside that night's window is `ok`, none while the location
already held older backups is `missed` — and marked as reconstructed. Formats: text,
markdown, csv, json (with every drilled file, for auditors), and a standalone html page to attach
to an e-mail.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.statedb import StateDB
from agent.units import format_duration, format_size, readable_time
from checks.config import BackupJobConfig
from checks.drill import PASSED
from checks.history import BackupHistory, Drill, DrillFile
from checks.schedule import EARLY_SLACK, Schedule, Window
from checks.verdict import STATUSES

LEGEND = {
    "ok": "completed in its window, big enough, off-site copy in step, verified where configured",
    "missed": "no backup completed between the scheduled start and the deadline",
    "failed": "the tool reported the run failed, or an integrity check or a restore drill found damage",
    "too_small": "smaller than the configured minimum size",
    "shrunk": "much smaller than the recent median",
    "offsite_stale": "the off-site copy lagged the primary by more than allowed",
    "offsite_mismatch": "the off-site copy is not the same backup",
    "unverified": "no good integrity check for two verification periods, or no good restore drill for two "
                  "drill periods",
    "unreachable": "a location could not be read",
    "not seen": "neither watched by vigil nor found in the location's own history",
    "reconstructed": "not watched live: judged from the backups the location listed when vigil first saw it",
    # restore evidence (drill:)
    "drill": "a sample of the newest backup restored into a hash, writing nothing to disk, and compared: passed "
             "when a file passed and none failed, failed only when a second restore showed the same",
    "match": "the restored file's hash equals an independent reference",
    "restored": "restored whole by restic or borg, which check every chunk against its hash; no independent "
                "reference",
    "skipped": "restored, but nothing could vouch for it (the source changed since the backup, no reference)",
    "mismatch": "the restored content differs from its reference",
    "damaged": "the tool reported damage (hash, MAC or CRC error, a missing pack, chunk or object) or the byte "
               "count differs from the listing",
    "unreadable": "could not be restored for a reason that is not damage (lock, network, timeout)",
    "could not drill": "the drill came to no result (cancelled, timed out, the location unreadable)",
    "references": "what a restored file was compared with: sidecar (the .sha256 file), s3-sha256, etag-md5, "
                  "content-md5 (what the store recorded), first-seen (vigil's checksum when it first saw the "
                  "backup), earlier-drill, other-location, source (the live file, unchanged since the backup), "
                  "tool (restic or borg's own chunk hashes)",
    "coverage": "the share of the backup's files the rotating sample has passed over in its current lap",
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


@dataclass(frozen=True)
class Evidence:
    """The restore drills of one drilled location of one job in the period, newest first, with their files."""

    job: str
    location: str
    timezone: str
    drills: list[Drill]
    files: dict[float, list[DrillFile]]  # by the drill's start

    @property
    def last(self) -> Drill | None:
        return self.drills[0] if self.drills else None

    def count(self, ok: bool | None) -> int:
        return sum(1 for drill in self.drills if drill.ok is ok)

    @property
    def coverage(self) -> float | None:
        return next((drill.coverage for drill in self.drills if drill.coverage is not None), None)

    @property
    def references(self) -> str:
        """The references the last drill's files were compared with, and how many of each: `sidecar 2, tool 18`."""
        if self.last is None:
            return ""
        used = Counter(file.reference for file in self.files[self.last.started_at] if file.reference)
        return ", ".join(f"{name} {count}" for name, count in used.most_common())

    def problems(self) -> list[tuple[Drill, DrillFile | None]]:
        """Every file of the period's drills that did not pass, and each drill that came to no result."""
        found = []
        for drill in self.drills:
            files = [file for file in self.files[drill.started_at] if file.result not in PASSED]
            found += [(drill, file) for file in files]
            if drill.ok is None and not files:
                found.append((drill, None))
        return found


@dataclass
class JobReport:
    job: str
    timezone: str
    nights: list[Night] = field(default_factory=list)
    last_check: str = ""
    evidence: list[Evidence] = field(default_factory=list)

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
    return [_job_report(db, job, Schedule(job.schedule, job.timezone, job.deadline).windows(since, now), since, now)
            for job in jobs]


def _job_report(db: StateDB, job: BackupJobConfig, windows: list[Window], since: float, now: float) -> JobReport:
    recorded = {start: (status, detail, lag) for start, status, detail, lag in db.query(
        "SELECT window_start, status, detail, offsite_lag FROM backup_windows WHERE job = ? AND window_start >= ?",
        (job.name, since - job.deadline))}
    observed = db.query("SELECT completed_at, verdict FROM backup_observations WHERE job = ? AND location = ?",
                        (job.name, "primary"))
    report = JobReport(job.name, job.timezone, last_check=_last_check(db, job.name),
                       evidence=_evidence(db, job, since, now))
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


def _evidence(db: StateDB, job: BackupJobConfig, since: float, now: float) -> list[Evidence]:
    if job.drill is None:
        return []
    history = BackupHistory(db, job.name)
    found = []
    for where in ("primary", "offsite"):
        if job.drill.drilled(where):
            drills = history.drills(where, since, now)
            found.append(Evidence(job.name, where, job.timezone, drills,
                                  {drill.started_at: history.drill_files(where, drill.started_at) for drill in drills}))
    return found


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


EVIDENCE_COLUMNS = ("backup job", "location", "drills", "passed", "failed", "could not drill", "last drill", "backup",
                    "files", "bytes read", "references", "coverage")
PROBLEM_COLUMNS = ("drilled", "backup job", "location", "file", "result", "reason")


def _evidence_cells(evidence: Evidence) -> list[str]:
    last = evidence.last
    coverage = evidence.coverage
    facts = [readable_time(last.started_at, evidence.timezone), _short(last.backup_id), str(last.files),
             format_size(last.bytes_read), evidence.references] if last else ["none in the period", "", "", "", ""]
    return [evidence.job, evidence.location, str(len(evidence.drills)), str(evidence.count(True)),
            str(evidence.count(False)), str(evidence.count(None)), *facts,
            "" if coverage is None else f"{coverage:.0%}"]


def _problem_cells(evidence: Evidence) -> list[list[str]]:
    return [[readable_time(drill.started_at, evidence.timezone), evidence.job, evidence.location,
             _shown(file.path) if file else "", file.result if file else "could not drill",
             _shown(file.detail if file else drill.detail)] for drill, file in evidence.problems()]


def _short(backup_id: str) -> str:
    """A restic snapshot's or borg archive's 64-digit id as the tools print it (the JSON keeps it whole)."""
    return backup_id[:8] if re.fullmatch(r"[0-9a-f]{17,}", backup_id) else backup_id


def _shown(path: str) -> str:
    """A path on one line: a newline or other control character in a file name is shown escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in path)


def _evidence_json(evidence: Evidence) -> dict:
    return {"job": evidence.job, "location": evidence.location, "drill_count": len(evidence.drills),
            "passed": evidence.count(True), "failed": evidence.count(False), "could_not_drill": evidence.count(None),
            "coverage_ratio": evidence.coverage,
            "drills": [{**asdict(drill), "file_results": [asdict(file) for file in evidence.files[drill.started_at]]}
                       for drill in evidence.drills]}


def render(reports: list[JobReport], fmt: str, title: str) -> str:
    table = [list(COLUMNS)] + [_cells(report) for report in reports]
    bad = [_night_cells(night, report.timezone) for report in reports for night in report.bad]
    evidence = [each for report in reports for each in report.evidence]
    drilled = [list(EVIDENCE_COLUMNS)] + [_evidence_cells(each) for each in evidence] if evidence else []
    problems = [row for each in evidence for row in _problem_cells(each)]
    if fmt == "json":
        return json.dumps({"title": title, "jobs": [{
            "job": r.job, "timezone": r.timezone, "runs": len(r.nights), "success_ratio": r.success,
            "counts": {status: r.count(status) for status in (*STATUSES, "not seen")},
            "worst_offsite_lag_seconds": r.worst_lag, "last_integrity_check": r.last_check,
            "nights": [asdict(night) for night in r.nights],
            "restore_evidence": [_evidence_json(each) for each in r.evidence]} for r in reports],
            "legend": LEGEND}, indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(table)
        if drilled:  # the restore evidence and its files, each a table after an empty line
            writer.writerows([[], *drilled, [], list(PROBLEM_COLUMNS), *problems])
        return out.getvalue()
    if fmt == "html":
        return _html(title, table, bad, drilled, problems)
    if fmt == "markdown":
        lines = [f"## {title}", "", _md_row(COLUMNS), "|" + "---|" * len(COLUMNS)]
        lines += [_md_row(cells) for cells in table[1:]]
        lines += ["", "### Bad nights", ""]
        lines += [f"- {when}, {job}: **{status}**" + (f" — {detail}" if detail else "")
                  for when, job, status, detail in bad] or ["None."]
        if drilled:
            lines += ["", "### Restore evidence", "", _md_row(EVIDENCE_COLUMNS), "|" + "---|" * len(EVIDENCE_COLUMNS)]
            lines += [_md_row(cells) for cells in drilled[1:]]
            lines += ["", "Failed and skipped files:", ""]
            lines += [f"- {when}, {job}, {where}:" + (f" `{path}`" if path else "") + f" **{result}**"
                      + (f" — {detail}" if detail else "") for when, job, where, path, result, detail in problems]
            lines += [] if problems else ["None."]
        lines += ["", "### Legend", ""] + [f"- **{name}**: {meaning}" for name, meaning in LEGEND.items()]
        return "\n".join(lines) + "\n"
    lines = [title, "", *_aligned(table), "", "Bad nights:"]
    lines += [f"  {when}  {job}  {status}" + (f": {detail}" if detail else "") for when, job, status, detail in bad]
    lines += ["  none"] if not bad else []
    if drilled:
        lines += ["", "Restore evidence:", *(f"  {line}" for line in _aligned(drilled))]
        lines += ["", "Failed and skipped files:"]
        lines += [f"  {when}  {job}  {where}  {path}  {result}" + (f": {detail}" if detail else "")
                  for when, job, where, path, result, detail in problems] or ["  none"]
    lines += ["", "Legend:"] + [f"  {name}: {meaning}" for name, meaning in LEGEND.items()]
    return "\n".join(lines) + "\n"


def _md_row(cells) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _aligned(table: list[list[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
            for cells in table]


def _html(title: str, table: list[list[str]], bad: list[list[str]], drilled: list[list[str]],
          problems: list[list[str]]) -> str:
    esc = html.escape

    def rows(cells_list, tag="td"):
        return "".join("<tr>" + "".join(f"<{tag}>{esc(c)}</{tag}>" for c in cells) + "</tr>\n" for cells in cells_list)

    legend = "".join(f"<dt>{esc(name)}</dt><dd>{esc(meaning)}</dd>" for name, meaning in LEGEND.items())
    nights = rows(bad) if bad else "<tr><td colspan='4'>None.</td></tr>"
    files = rows(problems) if problems else f"<tr><td colspan='{len(PROBLEM_COLUMNS)}'>None.</td></tr>"
    evidence = "" if not drilled else (
        f"<h2>Restore evidence</h2>\n<table>{rows(drilled[:1], 'th')}{rows(drilled[1:])}</table>\n"
        f"<h3>Failed and skipped files</h3>\n<table>{rows([PROBLEM_COLUMNS], 'th')}{files}</table>\n")
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
{evidence}<h2>Legend</h2><dl>{legend}</dl>
</body></html>
"""
