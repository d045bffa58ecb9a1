"""Which alert conditions hold now, in words for the status page and `vigil once`.

A condition (agent.model.Condition) holds for every series its rule's expression returns
over the series the agent exports; each becomes a Concern worded from the condition's
`says`: `{mountpoint}` is a label of the result, `{value:FORMAT}` its value as a
`duration` ("8 min"), `percent`, `ms`, `expires` ("expires in 5 d" / "expired 2 d ago"),
`count NOUN` ("2 failed units") or plain. The `for:` delay of a rule is not waited for:
the page shows a condition as soon as it holds, when Prometheus calls the alert pending.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.model import Condition
from agent.promql import Gone, Series, evaluate, index
from agent.units import spoken_duration

SEVERITIES = ("critical", "warning")  # the order concerns are shown in


@dataclass(frozen=True, slots=True)
class Concern:
    """A condition that holds for one series: what the matching alert is about, in words."""

    alert: str
    severity: str
    says: str
    labels: Mapping[str, str]  # the result's labels, as the alert carries them


def judge(conditions: Iterable[Condition], series: Series, now: float, gone: Gone = ()) -> list[Concern]:
    """The concerns of the conditions that hold now, the critical ones first.

    `series` are exported now; `gone` are no longer exported, with when they left, for a
    rule that reads a range (`last_over_time(x[3m])` still holds a value a failed poll lost).
    """
    indexed = index(series, now, gone)
    concerns = [Concern(condition.alert, condition.severity, words(condition.says, point.labels, point.value),
                        {k: v for k, v in point.labels.items() if k != "__name__"})
                for condition in conditions if not condition.not_judged
                for point in evaluate(condition.expr, indexed, now)]
    return sorted(concerns, key=lambda concern: SEVERITIES.index(concern.severity))


def words(says: str, labels: Mapping[str, str], value: float) -> str:
    return string.Formatter().vformat(says, (), _Fields(labels, value))


def fields(says: str) -> set[str]:
    """The names `says` fills in: labels, and `value`."""
    return {name for _, name, _, _ in string.Formatter().parse(says) if name}


class _Fields(dict):
    """Labels by name, `value` as a figure; a label the result lacks reads as empty."""

    def __init__(self, labels: Mapping[str, str], value: float):
        super().__init__(labels, value=_Figure(value))

    def __missing__(self, key: str) -> str:
        return ""


class _Figure:
    def __init__(self, value: float):
        self.value = value

    def __format__(self, spec: str) -> str:
        value = self.value
        if spec == "duration":
            return spoken_duration(value)
        if spec == "expires":
            return f"expires in {spoken_duration(value)}" if value >= 0 else f"expired {spoken_duration(value)} ago"
        if spec == "percent":
            return f"{value:.0%}" if abs(value) >= 0.1 else f"{value:.1%}"
        if spec == "ms":
            return f"{value * 1000:.0f} ms"
        if spec.startswith("count "):
            return f"{value:g} {spec.removeprefix('count ')}{'s' * (value != 1)}"
        if spec:
            raise ValueError(f"unknown format {spec!r}")
        return f"{value:g}"
