"""The status page and /status.json: the page an administrator keeps open.

One summary line (targets down, backups not ok, state database, last reload), then the
boards of the kinds that judge (backup jobs: verdict, detail, newest backup, next
deadline, last integrity check, off-site lag), then every job with its signals and last
error. Times are ages ("3 h ago") with the exact time on hover, in the job's own time
zone where it has one. It refreshes itself, loads nothing from elsewhere and fits a phone.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent import __version__
from agent.model import JobState

REFRESH_SECONDS = 30
GOOD = ("ok", "pending", "running")

STYLE = """
:root { color-scheme: light dark; --bad: #c62828; --good: #2e7d32; --warn: #ef6c00; --muted: #777; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1em; max-width: 80em; line-height: 1.4; }
header { display: flex; flex-wrap: wrap; gap: .3em 1.2em; align-items: baseline; color: var(--muted); }
header h1 { margin: 0; font-size: 1.4em; color: CanvasText; }
.summary { font-size: 1.15em; padding: .6em .9em; border-radius: .4em; margin: .8em 0 1.2em; }
.summary.bad { background: color-mix(in srgb, var(--bad) 15%, Canvas); border-left: .35em solid var(--bad); }
.summary.good { background: color-mix(in srgb, var(--good) 12%, Canvas); border-left: .35em solid var(--good); }
.scroll { overflow-x: auto; margin-bottom: 1.5em; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: .35em .6em; border-bottom: 1px solid color-mix(in srgb, CanvasText 15%, Canvas);
         text-align: left; vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
.badge { display: inline-block; padding: .05em .55em; border-radius: 1em; font-weight: 600; white-space: nowrap;
         color: #fff; background: var(--bad); }
.badge.ok { background: var(--good); } .badge.pending, .badge.running { background: var(--muted); }
.signal { display: inline-block; margin: 0 .3em .2em 0; padding: 0 .45em; border-radius: .3em;
          border: 1px solid var(--good); font-size: .9em; }
.signal.failed { border-color: var(--bad); color: var(--bad); }
.error { color: var(--bad); } time { white-space: nowrap; } .muted { color: var(--muted); }
@media (max-width: 40em) { body { padding: .5em; font-size: 15px; } td, th { padding: .3em .35em; } }
"""


def status_document(snapshot: Mapping[str, JobState], info: Mapping[str, Any],
                    state_problem: str, state_notice: str, now: float) -> dict[str, Any]:
    """Everything the status page shows, as plain JSON-able data (times in UTC ISO 8601)."""
    states = [snapshot[key] for key in sorted(snapshot)]
    jobs = [_job(state) for state in states]
    boards = _boards(states)
    return {
        "version": __version__,
        **info,
        "now": _iso(now),
        "summary": {
            "targets": sum(1 for state in states if not state.board and state.label == "target"),
            "targets_down": [job["name"] for job, state in zip(jobs, states, strict=True)
                             if state.label == "target" and job["state"] == "failed"],
            "not_ok": {title: [v["name"] for v in verdicts if v["status"] not in GOOD]
                       for title, verdicts in boards.items()},
        },
        "state_database": {"ok": not state_problem, "problem": state_problem, "notice": state_notice},
        "jobs": jobs,
        "boards": boards,
    }


def _job(state: JobState) -> dict[str, Any]:
    result = state.result
    return {
        "name": state.job,
        "kind": state.kind,
        "label": state.label,
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
                     "fresh": s.fresh} for s in (result.signals if result else ()) if s.name != "main"],
    }


def _boards(states: list[JobState]) -> dict[str, list[dict[str, Any]]]:
    """The verdicts of the kinds that give one (backup jobs), one board per kind's title."""
    boards: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        if state.board:
            boards.setdefault(state.board, []).append(_verdict(state))
    return boards


def _verdict(state: JobState) -> dict[str, Any]:
    """A job's verdict; while the job itself fails, its error is the detail and the verdict unknown."""
    result = state.result
    verdict = result.verdict if result and result.ok else None
    if verdict is None:
        return {"name": state.job, "status": "pending" if result is None else "unknown",
                "detail": result.error if result else "", "timezone": "UTC", "times": {}, "notes": {}}
    zone = verdict.timezone or "UTC"
    return {"name": state.job, "status": verdict.status, "detail": verdict.detail, "timezone": zone,
            "times": {label: _iso(at, zone) for label, at in verdict.times.items()}, "notes": dict(verdict.notes)}


def _iso(timestamp: float | None, zone: str = "UTC") -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, ZoneInfo(zone)).isoformat(timespec="seconds")


def age(when: str | None, now: str) -> str:
    """`3 h ago` / `in 20 min` between two ISO times."""
    if when is None:
        return ""
    seconds = (datetime.fromisoformat(now) - datetime.fromisoformat(when)).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        text = f"{seconds:.0f} s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 2 * 86400:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} d"
    return f"in {text}" if ahead else f"{text} ago"


def _time(when: str | None, now: str, never: str = "", zone: str = "UTC") -> str:
    """An age with the exact time, in the job's own zone, on hover."""
    if when is None:
        return f"<span class='muted'>{html.escape(never)}</span>" if never else ""
    exact = datetime.fromisoformat(when).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"<time datetime='{html.escape(when)}' title='{html.escape(exact)}'>{html.escape(age(when, now))}</time>"


def _badge(status: str) -> str:
    tone = status if status in GOOD else "bad"
    return f"<span class='badge {tone}'>{html.escape(status.replace('_', ' '))}</span>"


def _summary(document: Mapping[str, Any]) -> str:
    summary, esc = document["summary"], html.escape
    parts, bad = [], False
    down = summary["targets_down"]
    if down:
        bad = True
        parts.append(f"{len(down)} of {summary['targets']} targets down ({esc(', '.join(down))})")
    else:
        parts.append(f"all {summary['targets']} targets up")
    for title, names in summary["not_ok"].items():
        total = len(document["boards"][title])
        if names:
            bad = True
            parts.append(f"{len(names)} of {total} {esc(title.lower())} not ok ({esc(', '.join(names))})")
        else:
            parts.append(f"all {total} {esc(title.lower())} ok")
    if document.get("reload_error"):
        bad = True
        parts.append(f"the last reload was rejected, the running config is kept: {esc(document['reload_error'])}")
    database = document["state_database"]
    if database["problem"]:
        bad = True
        parts.append(f"state database: {esc(database['problem'])}")
    elif database["notice"]:
        parts.append(f"state database: {esc(database['notice'])}")
    return f"<p class='summary {'bad' if bad else 'good'}' id='summary'>{' · '.join(parts)}</p>"


def _board(title: str, verdicts: list[dict[str, Any]], now: str) -> str:
    esc = html.escape
    times = list(dict.fromkeys(label for v in verdicts for label in v["times"]))
    notes = list(dict.fromkeys(label for v in verdicts for label in v["notes"]))
    head = "".join(f"<th>{esc(h)}</th>" for h in ("Job", "Status", *[t.capitalize() for t in times],
                                                   *[n.capitalize() for n in notes], "Detail"))
    rows = ""
    for v in verdicts:
        cells = [f"<td>{esc(v['name'])}</td>", f"<td>{_badge(v['status'])}</td>"]
        cells += [f"<td>{_time(v['times'].get(label), now, zone=v['timezone'])}</td>" for label in times]
        cells += [f"<td>{esc(v['notes'].get(label, ''))}</td>" for label in notes]
        tone = "" if v["status"] in GOOD else " class='error'"
        cells.append(f"<td{tone}>{esc(v['detail'])}</td>")
        rows += f"<tr>{''.join(cells)}</tr>\n"
    return f"<h2>{esc(title)}</h2>\n<div class='scroll'><table><tr>{head}</tr>\n{rows}</table></div>"


def _signal(signal: dict[str, Any], now: str) -> str:
    """A signal's chip: red when failed, its error (or its data's age) on hover."""
    hover = signal["error"] or f"data from {age(signal['last_success'], now)}"
    tone = "" if signal["ok"] else " failed"
    return f"<span class='signal{tone}' title='{html.escape(hover)}'>{html.escape(signal['name'])}</span>"


def _targets(jobs: list[dict[str, Any]], now: str) -> str:
    esc = html.escape
    rows = ""
    for job in jobs:
        if job["label"] != "target":
            continue
        signals = "".join(_signal(signal, now) for signal in job["signals"])
        rows += (f"<tr><td>{esc(job['name'])}</td><td>{esc(job['kind'])}</td><td>{_badge(job['state'])}</td>"
                 f"<td>{_time(job['last_success'], now, 'never')}</td><td>{signals}</td>"
                 f"<td class='error'>{esc(job['last_error'])}</td><td>{_time(job['next_run'], now)}</td></tr>\n")
    head = "".join(f"<th>{h}</th>" for h in ("Target", "Kind", "State", "Last success", "Signals", "Last error",
                                              "Next run"))
    return f"<h2>Targets</h2>\n<div class='scroll'><table><tr>{head}</tr>\n{rows}</table></div>"


def landing_html(document: Mapping[str, Any]) -> str:
    esc, now = html.escape, document["now"]
    reloaded = document.get("reloaded")
    header = (f"<h1>vigil</h1><span>{esc(document['version'])}</span>"
              f"<span>config {esc(str(document.get('config', '')))}</span>"
              f"<span>started {_time(document.get('started'), now)}</span>"
              f"<span>last reload {_time(reloaded, now) if reloaded else 'never'}</span>"
              f"<a href='/metrics'>/metrics</a><a href='/status.json'>/status.json</a>")
    boards = "".join(_board(title, verdicts, now) for title, verdicts in document["boards"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vigil</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<style>{STYLE}</style></head><body>
<header>{header}</header>
{_summary(document)}
{boards}
{_targets(document["jobs"], now)}
<p class="muted">Refreshes every {REFRESH_SECONDS} s. Hover a time for the exact moment.</p>
</body></html>
"""
