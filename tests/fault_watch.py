"""Reading a running agent during a fault: its series by job, and how late its healthy jobs ran.

A job's lateness is measured from /metrics alone: a successful run ends at
`vigil_last_success_timestamp_seconds` after lasting `vigil_collect_duration_seconds`, and
the next should start one interval after it ended. Polling faster than the interval sees
every run; the jitter the scheduler adds (±5% of the interval) counts as lateness here,
which the bounds allow for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningAgent


def series(agent: RunningAgent, name: str) -> dict[str, float]:
    """`{target or backup: value}` of one family, for the main signal where it has one."""
    values = {}
    for family in text_string_to_metric_families(agent.metrics()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("signal", "main") == "main":
                values[sample.labels.get("target") or sample.labels.get("backup", "")] = sample.value
    return values


@dataclass
class Schedule:
    """The runs of some jobs seen by polling /metrics: `{job: {start: duration}}`."""

    jobs: tuple[str, ...]
    interval: float
    runs: dict[str, dict[float, float]] = field(default_factory=dict)
    down: dict[str, int] = field(default_factory=dict)  # polls in which a job was not up

    def poll(self, agent: RunningAgent) -> None:
        families = {family.name: family for family in text_string_to_metric_families(agent.metrics())}
        ends, durations, up = {}, {}, {}
        for family, into in (("vigil_last_success_timestamp_seconds", ends),
                             ("vigil_collect_duration_seconds", durations), ("vigil_up", up)):
            for sample in families[family].samples if family in families else ():
                into[sample.labels.get("target", "")] = sample.value
        for job in self.jobs:
            if up.get(job) != 1:
                self.down[job] = self.down.get(job, 0) + 1
            elif job in ends and job in durations:
                self.runs.setdefault(job, {})[ends[job] - durations[job]] = durations[job]

    def watch(self, agent: RunningAgent, seconds: float, every: float = 0.1) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(agent)
            time.sleep(every)

    def lateness(self, job: str) -> list[float]:
        """How much later than its schedule (the previous run's end plus the interval) each run started."""
        runs = sorted(self.runs.get(job, {}).items())
        return [start - (before + duration + self.interval)
                for (before, duration), (start, _) in zip(runs, runs[1:], strict=False)]

    def drift(self, job: str) -> float:
        """The worst lateness of a job's runs (early runs, by jitter, count as none)."""
        return max([0.0, *self.lateness(job)])
