"""The status page and /status.json: the page an administrator keeps open.

One summary line (targets down, targets that need attention, backups not ok, state
database, last reload), then the boards of the kinds that judge (backup jobs: verdict,
detail, newest backup, next deadline, last integrity check, off-site lag), then every
target with what needs attention, its signals and its errors. A job needs attention when
a condition of the shipped alert rules holds for it, judged with the rules' own
expressions over the series the agent exports (agent.conditions), so the page never
shows green while the rules page on-call. Times are ages with the exact time beside them,
in the job's own time zone where it has one. It refreshes itself, loads nothing from
elsewhere and fits a phone: on a narrow screen each table row becomes a card, so no
column is ever off-screen.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent import __version__
from agent.conditions import Concern, judge
from agent.metrics import AGENT_CONDITIONS, JOB_CONDITIONS
from agent.model import JobState, MetricSpec
from agent.units import spoken_duration
from exporters.prometheus import agent_series, gone_series, job_series

REFRESH_SECONDS = 30
WAITING = ("pending", "running", "not_checked")  # not judged yet: neither ok nor a problem
GOOD = ("ok", *WAITING)

STYLE = """
:root { color-scheme: light dark; --bad: #c62828; --good: #2e7d32; --warn: #ef6c00; --muted: #777; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1em; max-width: 80em; line-height: 1.4; }
header { display: flex; flex-wrap: wrap; gap: .3em 1.2em; align-items: baseline; color: var(--muted); }
header h1 { margin: 0; font-size: 1.4em; color: CanvasText; }
header > *, .summary { min-width: 0; overflow-wrap: anywhere; }
.summary { font-size: 1.15em; padding: .6em .9em; border-radius: .4em; margin: .8em 0 1.2em; }
.summary.bad { background: color-mix(in srgb, var(--bad) 15%, Canvas); border-left: .35em solid var(--bad); }
.summary.warn { background: color-mix(in srgb, var(--warn) 15%, Canvas); border-left: .35em solid var(--warn); }
.summary.good { background: color-mix(in srgb, var(--good) 12%, Canvas); border-left: .35em solid var(--good); }
.scroll { overflow-x: auto; margin-bottom: 1.5em; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: .35em .6em; border-bottom: 1px solid color-mix(in srgb, CanvasText 15%, Canvas);
         text-align: left; vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
.badge { display: inline-block; padding: .05em .55em; border-radius: 1em; font-weight: 600; white-space: nowrap;
         color: #fff; background: var(--bad); }
.badge.ok { background: var(--good); } .badge.waiting { background: var(--muted); }
.signal, .concern { display: inline-block; margin: 0 .3em .2em 0; padding: 0 .45em; border-radius: .3em;
                    font-size: .9em; }
.signal { border: 1px solid var(--good); }
.signal.failed { border-color: var(--bad); color: var(--bad); }
.concern { font-weight: 600; border: 1px solid var(--warn); color: var(--warn); white-space: nowrap; }
.concern.critical { border-color: var(--bad); background: var(--bad); color: #fff; }
.error { color: var(--bad); } .muted { color: var(--muted); }
.reason { overflow-wrap: anywhere; min-width: 8em; }  /* a digest or a path never widens the table past the page */
time { white-space: nowrap; } td time small { display: block; } time small { color: var(--muted); }
@media (max-width: 40em) {
  body { padding: .5em; font-size: 15px; }
  table, tbody, tr, td { display: block; }
  thead { display: none; }
  tr { padding: .5em 0; border-bottom: 1px solid color-mix(in srgb, CanvasText 15%, Canvas); }
  td { border: 0; padding: .1em 0; overflow-wrap: anywhere; }
  td:empty { display: none; }
  td::before { content: attr(data-label) ": "; color: var(--muted); }
  td:first-child { font-weight: 600; } td:first-child::before { content: none; }
  td time small { display: inline; } .concern { white-space: normal; }
}
"""


def status_document(snapshot: Mapping[str, JobState], info: Mapping[str, Any], state_problem: str,
                    state_notice: str, now: float, facts: Mapping[MetricSpec, float] | None = None) -> dict[str, Any]:
    """Everything the status page shows, as plain JSON-able data (times in UTC ISO 8601).

    `facts` are the agent's own gauges (reload outcome, certificate expiry), for its own conditions.
    """
    states = [snapshot[key] for key in sorted(snapshot)]
    jobs = [_job(state, now) for state in states]
    boards = _boards(states, jobs)
    targets = [(job, state) for job, state in zip(jobs, states, strict=True) if state.label == "target"]
    agent = judge(AGENT_CONDITIONS, agent_series(not state_problem, facts or {}), now)
    return {
        "version": __version__,
        **info,
        "now": _iso(now),
        "summary": {
            "targets": sum(1 for state in states if not state.board and state.label == "target"),
            "targets_down": [job["name"] for job, _ in targets if job["state"] == "failed"],
            "attention": {job["name"]: [c["says"] for c in job["concerns"]] for job, _ in targets
                          if job["concerns"] and job["state"] != "failed"},
            "not_ok": {title: [v["name"] for v in verdicts if v["status"] not in GOOD]
                       for title, verdicts in boards.items()},
            "waiting": {title: [v["name"] for v in verdicts if v["status"] in WAITING]
                        for title, verdicts in boards.items()},
            "agent": [asdict(concern) for concern in agent],
        },
        "state_database": {"ok": not state_problem, "problem": state_problem, "notice": state_notice},
        "jobs": jobs,
        "boards": boards,
        "not_judged": _not_judged(states),
    }


def concerns(state: JobState, now: float) -> list[Concern]:
    """What the shipped rules alert on for this job now: the agent's rules about every job, then its kind's."""
    return judge((*JOB_CONDITIONS, *state.conditions), job_series(state), now, gone_series(state))


def _not_judged(states: list[JobState]) -> list[dict[str, str]]:
    """The rules of the configured kinds that the page does not judge itself, and why."""
    rules = [*AGENT_CONDITIONS, *JOB_CONDITIONS, *(c for state in states for c in state.conditions)]
    seen: dict[str, str] = {}
    for condition in rules:
        if condition.not_judged:
            seen.setdefault(condition.alert, condition.not_judged)
    return [{"alert": alert, "why": why} for alert, why in seen.items()]


def _job(state: JobState, now: float) -> dict[str, Any]:
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
        "concerns": [asdict(concern) for concern in concerns(state, now)],
    }


def _boards(states: list[JobState], jobs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The verdicts of the kinds that give one (backup jobs), one board per kind's title."""
    boards: dict[str, list[dict[str, Any]]] = {}
    for state, job in zip(states, jobs, strict=True):
        if state.board:
            boards.setdefault(state.board, []).append({**_verdict(state), "concerns": job["concerns"]})
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
    return f"in {spoken_duration(seconds)}" if seconds < 0 else f"{spoken_duration(seconds)} ago"


def _time(when: str | None, now: str, never: str = "", zone: str = "UTC") -> str:
    """An age and, beside it, the exact time in the job's own zone (a phone has no hover)."""
    if when is None:
        return f"<span class='muted'>{html.escape(never)}</span>" if never else ""
    moment = datetime.fromisoformat(when).astimezone(ZoneInfo(zone))
    exact, seconds = moment.strftime("%Y-%m-%d %H:%M %Z"), moment.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (f"<time datetime='{html.escape(when)}' title='{html.escape(seconds)}'>{html.escape(age(when, now))} "
            f"<small>{html.escape(exact)}</small></time>")


def _badge(status: str) -> str:
    tone = "ok" if status == "ok" else "waiting" if status in WAITING else "bad"
    return f"<span class='badge {tone}'>{html.escape(status.replace('_', ' '))}</span>"


def _concerns(concerns: list[dict[str, Any]]) -> str:
    """One chip per condition that holds: red when the rule pages on-call, orange when it waits for the day."""
    return "".join(f"<span class='concern {c['severity']}' title='{html.escape(c['alert'])} ({c['severity']})'>"
                   f"{html.escape(c['says'])}</span>" for c in concerns)


def _noun(count: int, plural: str) -> str:
    return plural if count != 1 else plural.removesuffix("s")


def _summary(document: Mapping[str, Any]) -> str:
    summary, esc = document["summary"], html.escape
    parts, tones = [], set()
    total, down, attention = summary["targets"], summary["targets_down"], summary["attention"]
    if down:
        tones.add("bad")
        targets = f"{len(down)} of {total} {_noun(total, 'targets')} down ({esc(', '.join(down))})"
    else:
        targets = f"{total} {_noun(total, 'targets')} up" if total else "no targets"
    if attention:
        tones |= {_tone(job["concerns"]) for job in document["jobs"] if job["name"] in attention}
        needs = "needs" if len(attention) == 1 else "need"
        targets += (f", {len(attention)} {needs} attention: "
                    + "; ".join(f"{esc(name)} {esc(', '.join(says))}" for name, says in attention.items()))
    parts.append(targets)
    for title, verdicts in document["boards"].items():
        total, bad, waiting = len(verdicts), summary["not_ok"][title], summary["waiting"][title]
        what = esc(_noun(total, title.lower()))
        if bad:
            tones.add("bad")
            parts.append(f"{len(bad)} of {total} {what} not ok ({esc(', '.join(bad))})")
        elif waiting:
            parts.append(f"{total - len(waiting)} of {total} {what} ok, {len(waiting)} not checked yet "
                         f"({esc(', '.join(waiting))})")
        else:
            parts.append(f"all {total} {what} ok" if total > 1 else f"{total} {what} ok")
    for concern in summary["agent"]:
        tones.add(_tone([concern]))
        parts.append(esc(concern["says"]))
    if document.get("reload_error"):
        tones.add("bad")
        parts.append(f"the last reload was rejected, the running config is kept: {esc(document['reload_error'])}")
    database = document["state_database"]
    if database["problem"]:
        tones.add("bad")
        parts.append(f"state database: {esc(database['problem'])}")
    elif database["notice"]:
        parts.append(f"state database: {esc(database['notice'])}")
    tone = next((t for t in ("bad", "warn") if t in tones), "good")
    return f"<p class='summary {tone}' id='summary'>{' · '.join(parts)}</p>"


def _tone(concerns: list[dict[str, Any]]) -> str:
    return "bad" if any(c["severity"] == "critical" for c in concerns) else "warn" if concerns else "good"


def _table(title: str, head: tuple[str, ...], rows: list[list[str]]) -> str:
    """A table whose cells carry their column's name: on a phone each row is a card of `name: value` lines."""
    esc = html.escape
    header = "".join(f"<th>{esc(name)}</th>" for name in head)
    body = "".join("<tr>" + "".join(f"<td data-label='{esc(name)}'{cell}</td>" for name, cell in zip(head, row,
                                                                                                    strict=True))
                   + "</tr>\n" for row in rows)
    return (f"<h2>{esc(title)}</h2>\n<div class='scroll'><table><thead><tr>{header}</tr></thead>\n"
            f"<tbody>{body}</tbody></table></div>")


def _cell(content: str, tone: str = "") -> str:
    """A cell's attributes' end and content (empty content stays empty, so a card leaves it out)."""
    return (f" class='{tone}'>" if tone and content else ">") + content


def _heading(label: str) -> str:
    """A column's label with its first letter raised, the rest as written ("TLS" stays TLS)."""
    return label[:1].upper() + label[1:]


def _board(title: str, verdicts: list[dict[str, Any]], now: str) -> str:
    esc = html.escape
    times = list(dict.fromkeys(label for v in verdicts for label in v["times"]))
    notes = list(dict.fromkeys(label for v in verdicts for label in v["notes"]))
    head = ("Job", "Status", "Attention", *[_heading(t) for t in times], *[_heading(n) for n in notes], "Detail")
    rows = []
    for v in verdicts:
        cells = [_cell(esc(v["name"])), _cell(_badge(v["status"])), _cell(_concerns(v["concerns"]))]
        cells += [_cell(_time(v["times"].get(label), now, zone=v["timezone"])) for label in times]
        cells += [_cell(esc(v["notes"].get(label, ""))) for label in notes]
        cells.append(_cell(esc(v["detail"]), "reason" if v["status"] in GOOD else "reason error"))
        rows.append(cells)
    return _table(title, head, rows)


def _signal(signal: dict[str, Any], now: str) -> str:
    """A signal's chip: red when failed (the error is in the Errors column), its data's age on hover."""
    hover = signal["error"] or f"data from {age(signal['last_success'], now)}"
    tone = "" if signal["ok"] else " failed"
    return f"<span class='signal{tone}' title='{html.escape(hover)}'>{html.escape(signal['name'])}</span>"


def _targets(jobs: list[dict[str, Any]], now: str) -> str:
    esc = html.escape
    rows = []
    for job in jobs:
        if job["label"] != "target":
            continue
        errors = [job["last_error"], *(f"{s['name']}: {s['error']}" for s in job["signals"] if not s["ok"])]
        rows.append([_cell(esc(job["name"])), _cell(esc(job["kind"])), _cell(_badge(job["state"])),
                     _cell(_concerns(job["concerns"])), _cell(_time(job["last_success"], now, "never")),
                     _cell("".join(_signal(signal, now) for signal in job["signals"])),
                     _cell("<br>".join(esc(error) for error in errors if error), "reason error"),
                     _cell(_time(job["next_run"], now))])
    return _table("Targets", ("Target", "Kind", "Collection", "Attention", "Last success", "Signals", "Errors",
                              "Next run"), rows)


def _footer(document: Mapping[str, Any]) -> str:
    reasons: dict[str, list[str]] = {}
    for rule in document["not_judged"]:
        reasons.setdefault(rule["why"], []).append(rule["alert"])
    unjudged = "; ".join(f"{html.escape(', '.join(alerts))} ({html.escape(why)})" for why, alerts in reasons.items())
    return (f"<p class='muted'>Refreshes every {REFRESH_SECONDS} s. Attention lists the conditions the shipped "
            "alert rules alert on (red pages on-call, orange waits for office hours), judged here with the rules' "
            "own expressions as soon as they hold, before any <code>for:</code> delay. "
            f"Not judged here: {unjudged}.</p>")


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
{_footer(document)}
</body></html>
"""
