"""The landing page and /status.json: every job, its state, last success, error, next run,
and a board of the backup jobs with their verdicts."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.model import JobState

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
td, th { padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
.bad, p.bad { color: #b00020; font-weight: bold; } .good { color: #1b5e20; }
"""


def status_document(snapshot: Mapping[str, JobState], info: Mapping[str, Any],
                    state_problem: str, state_notice: str) -> dict[str, Any]:
    """Everything the status page shows, as plain JSON-able data."""
    states = [snapshot[key] for key in sorted(snapshot)]
    return {
        "version": __version__,
        **info,
        "state_database": {"ok": not state_problem, "problem": state_problem, "notice": state_notice},
        "jobs": [_job(state) for state in states],
        "backups": [_backup(state) for state in states if state.kind == "backup"],
    }


def _job(state: JobState) -> dict[str, Any]:
    result = state.result
    return {
        "name": state.job,
        "kind": state.kind,
        "state": "running" if state.running and result is None else state.state,
        "interval_seconds": state.interval,
        "last_run": _iso(result.started_at) if result else None,
        "last_duration_seconds": round(result.duration, 3) if result else None,
        "last_success": _iso(state.last_success),
        "last_error": result.error if result and not result.ok else "",
        "next_run": _iso(state.next_run),
        "consecutive_failures": state.consecutive_failures,
        "errors_total": state.errors_total,
        "skipped_total": state.skipped_total,
        "series": len(result.samples) if result else 0,
    }


def _backup(state: JobState) -> dict[str, Any]:
    """A backup job's verdict; while the evaluation itself fails, its error is the detail."""
    result = state.result
    facts = dict(result.info) if result and result.ok else {}
    return {
        "name": state.job,
        "status": facts.get("status", "pending" if result is None else "unknown"),
        "detail": facts.get("detail", result.error if result else ""),
        "newest": facts.get("newest", ""),
        "next_deadline": facts.get("next_deadline", ""),
        "offsite_lag": facts.get("offsite_lag", ""),
    }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]], status_column: int) -> str:
    """An HTML table; the status column is green when ok, red when something is wrong."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = ""
    for row in rows:
        status = row[status_column]
        tone = "good" if status == "ok" else "" if status in ("pending", "running") else "bad"
        cells = "".join(f"<td class='{tone}'>{html.escape(c)}</td>" if i == status_column
                        else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row))
        body += f"<tr>{cells}</tr>\n"
    return f"<table><tr>{head}</tr>\n{body}</table>"


def landing_html(document: Mapping[str, Any]) -> str:
    esc = html.escape
    backups = _table(("Backup job", "Status", "Detail", "Newest backup (UTC)", "Next deadline (UTC)",
                      "Off-site lag"),
                     [(b["name"], b["status"], b["detail"], b["newest"], b["next_deadline"], b["offsite_lag"])
                      for b in document["backups"]], 1)
    jobs = _table(("Job", "Kind", "State", "Last success (UTC)", "Last error", "Next run (UTC)"),
                  [(j["name"], j["kind"], j["state"], j["last_success"] or "never", j["last_error"],
                    j["next_run"] or "") for j in document["jobs"]], 2)
    database = document["state_database"]
    banner = ""
    if database["problem"] or database["notice"]:
        banner = f"<p class='bad'>State database: {esc(database['problem'] or database['notice'])}</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vigil</title><style>{STYLE}</style></head><body>
<h1>vigil {esc(document['version'])}</h1>
<p>Config: {esc(str(document.get('config', '')))} &middot; started {esc(str(document.get('started', '')))}
&middot; <a href="/metrics">/metrics</a> &middot; <a href="/status.json">/status.json</a></p>
{banner}
{"<h2>Backups</h2>" + backups if document["backups"] else ""}
<h2>Jobs</h2>
{jobs}
</body></html>
"""
