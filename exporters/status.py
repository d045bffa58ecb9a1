"""The landing page and /status.json: every job, its state, last success, error, next run,
and a board of the backup jobs with their verdicts."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from agent import __version__
from agent.model import JobState
from agent.units import iso_time

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
        "boards": _boards(states),
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
        "signals": [{"name": s.name, "ok": s.ok, "error": s.error, "last_success": _iso(s.last_success),
                     "fresh": s.fresh} for s in (result.signals if result else ())],
    }


def _boards(states: list[JobState]) -> dict[str, list[dict[str, Any]]]:
    """The verdicts of the kinds that give one (backup jobs), one board per kind's title."""
    boards: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        if state.board:
            boards.setdefault(state.board, []).append(_verdict(state))
    return boards


def _verdict(state: JobState) -> dict[str, Any]:
    """A job's verdict; while the job itself fails, its error is the detail."""
    result = state.result
    verdict = result.verdict if result and result.ok else None
    if verdict is None:
        return {"name": state.job, "status": "pending" if result is None else "unknown",
                "detail": result.error if result else "", "times": {}, "notes": {}}
    return {"name": state.job, "status": verdict.status, "detail": verdict.detail,
            "times": {label: _iso(at) for label, at in verdict.times.items()}, "notes": dict(verdict.notes)}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso_time(timestamp)


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
    boards = ""
    for title, verdicts in document["boards"].items():
        columns = list(dict.fromkeys(key for v in verdicts for key in (*v["times"], *v["notes"])))
        rows = [(v["name"], v["status"], v["detail"], *(v["times"].get(c) or v["notes"].get(c) or "" for c in columns))
                for v in verdicts]
        boards += f"<h2>{esc(title)}</h2>\n" + _table(("Job", "Status", "Detail", *columns), rows, 1)
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
{boards}
<h2>Jobs</h2>
{jobs}
</body></html>
"""
