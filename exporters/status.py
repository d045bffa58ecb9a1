"""The landing page and /status.json: every job, its state, last success, error, next run."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.model import JobState


def status_document(snapshot: Mapping[str, JobState], info: Mapping[str, Any],
                    state_problem: str, state_notice: str) -> dict[str, Any]:
    """Everything the status page shows, as plain JSON-able data."""
    return {
        "version": __version__,
        **info,
        "state_database": {"ok": not state_problem, "problem": state_problem, "notice": state_notice},
        "jobs": [_job(snapshot[key]) for key in sorted(snapshot)],
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


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def landing_html(document: Mapping[str, Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(job['state'])}'><td>{esc(job['name'])}</td><td>{esc(job['kind'])}</td>"
        f"<td>{esc(job['state'])}</td><td>{esc(job['last_success'] or 'never')}</td>"
        f"<td>{esc(job['last_error'])}</td><td>{esc(job['next_run'] or '')}</td></tr>"
        for job in document["jobs"]
    )
    database = document["state_database"]
    banner = ""
    if database["problem"] or database["notice"]:
        banner = f"<p class='failed'>State database: {esc(database['problem'] or database['notice'])}</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vigil</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
tr.failed td:nth-child(3), p.failed {{ color: #b00020; font-weight: bold; }} tr.ok td:nth-child(3) {{ color: #1b5e20; }}
</style></head><body>
<h1>vigil {esc(document['version'])}</h1>
<p>Config: {esc(str(document.get('config', '')))} &middot; started {esc(str(document.get('started', '')))} &middot;
<a href="/metrics">/metrics</a> &middot; <a href="/status.json">/status.json</a></p>
{banner}
<table><tr><th>Job</th><th>Kind</th><th>State</th><th>Last success (UTC)</th><th>Last error</th><th>Next run (UTC)</th></tr>
{rows}
</table></body></html>
"""
