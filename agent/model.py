"""The records that flow from collectors through the store to the exporters.

These are the only types shared across the layers: collectors return `Sample`s,
the scheduler wraps them in a `Result`, the store keeps the latest `JobState` per job,
and exporters read those. Nothing here knows about prometheus_client.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric family, with its labels (the `target` label is added later)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A catalogue entry: what a collector promises to emit."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    """A shipped alert rule (deploy/prometheus/rules) as the status page and `vigil once` judge it.

    `expr` is the rule's own expression, word for word (tests/test_conditions.py compares
    them and checks the agent's evaluation against Prometheus'), so the page and the
    pager cannot disagree on a threshold. `says` puts it in a few words for people:
    `{label}` fields and `{value}` with a format (agent.conditions). `not_judged` says why
    the page leaves a rule to Prometheus (it needs past samples, or concerns the scrape).
    """

    alert: str
    severity: Literal["critical", "warning"]  # critical pages on-call, warning waits for office hours
    expr: str
    says: str
    not_judged: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A job's own judgement for the status page (a backup job's status), with the times behind it."""

    status: str
    detail: str = ""
    times: Mapping[str, float] = field(default_factory=dict)  # label -> epoch seconds, shown as ages
    notes: Mapping[str, str] = field(default_factory=dict)  # label -> text
    timezone: str = ""  # the job's own zone, for showing the times; UTC when empty


@dataclass(frozen=True, slots=True)
class SignalState:
    """How one signal of a job fared: exported fresh, re-emitted from its last good run, or failed."""

    name: str
    ok: bool
    error: str = ""
    last_success: float | None = None  # when the exported data was collected (wall clock)
    fresh: bool = True  # collected by this run, not re-emitted


class ApiCounters:
    """Requests by (api, code) and seconds spent waiting for budget by api, for one job.

    Owned by the agent, not the run: a 429 storm is visible while it happens and survives
    the failed run it causes. Safe to call from collector threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._waits: dict[str, float] = {}

    def request(self, api: str, code: int | str) -> None:
        key = (api, str(code))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def waited(self, api: str, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._waits[api] = self._waits.get(api, 0.0) + seconds

    def requests(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._requests)

    def waits(self) -> dict[str, float]:
        with self._lock:
            return dict(self._waits)


def job_key(kind: str, name: str) -> str:
    """A job's identity: a target and a backup job may share a name, never a kind."""
    return f"{kind}:{name}"


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one run of one job."""

    job: str
    kind: str
    ok: bool
    started_at: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    samples: tuple[Sample, ...] = ()
    error: str = ""
    signals: tuple[SignalState, ...] = ()
    verdict: Verdict | None = None
    rejected: int = 0  # samples the Emitter refused (a collector bug, logged once)


@dataclass(frozen=True, slots=True)
class LastGood:
    """A job's last good series while its runs fail: gone from /metrics since `gone_at`.

    Prometheus keeps their samples, so a rule reading a range (`last_over_time(x[3m])`,
    which bridges one failed poll) still sees them; the status page judges them the same
    way. `gone_at` is when the failed run replaced them, at most one scrape interval after
    Prometheus' last sample of them: the page holds them that much longer, never shorter.
    """

    samples: tuple[Sample, ...]
    gone_at: float


@dataclass(frozen=True, slots=True)
class JobState:
    """What the scheduler knows about a job; the store keeps the latest per job."""

    job: str
    kind: str
    interval: float
    metrics: tuple[MetricSpec, ...] = ()  # the collector's catalogue, for the exporter
    label: str = "target"  # the label naming the job's subject on its series
    board: str = ""  # the status page's board for this kind's verdicts ("Backups")
    conditions: tuple[Condition, ...] = ()  # the collector's alert conditions, for the status page
    api: ApiCounters | None = None  # the job's live request counters (owned by the scheduler)
    result: Result | None = None  # None until the first run finishes
    last_good: LastGood | None = None  # while runs fail after a good one
    last_success: float | None = None
    next_run: float | None = None
    consecutive_failures: int = 0
    errors_total: int = 0
    skipped_total: int = 0
    rejected_total: int = 0
    running: bool = False

    @property
    def key(self) -> str:
        return job_key(self.kind, self.job)

    @property
    def state(self) -> str:
        if self.result is None:
            return "pending"
        return "ok" if self.result.ok else "failed"
