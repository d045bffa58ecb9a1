"""Prometheus text exposition of the store's snapshot.

A scrape never triggers collection. Each job's samples are rendered once, by
prometheus_client, when a new result arrives; a scrape only stitches the pre-rendered
families together (one HELP/TYPE per family, every job's lines beneath it). That keeps
/metrics fast with tens of thousands of series.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Iterable, Mapping

from prometheus_client import ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import __version__
from agent.model import JobState, MetricSpec, Result, Sample

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CACHED = " Cached by the agent, refreshed on the target's interval."
JOB_LABELS = ("kind", "target")

UP = MetricSpec("vigil_up", "gauge",
                "1 when the target's last collection succeeded, 0 when it failed.", JOB_LABELS)
DURATION = MetricSpec("vigil_collect_duration_seconds", "gauge",
                      "How long the target's last collection took.", JOB_LABELS, "seconds")
LAST_SUCCESS = MetricSpec("vigil_last_success_timestamp_seconds", "gauge",
                          "When the target was last collected successfully (kept across restarts).",
                          JOB_LABELS, "seconds")
ERRORS = MetricSpec("vigil_collect_errors_total", "counter",
                    "Failed collections of the target since the agent started.", JOB_LABELS)
SKIPPED = MetricSpec("vigil_collect_skipped_total", "counter",
                     "Runs skipped because the target's previous run was still going.", JOB_LABELS)
INTERVAL = MetricSpec("vigil_collect_interval_seconds", "gauge",
                      "The target's collection interval.", JOB_LABELS, "seconds")
BUILD_INFO = MetricSpec("vigil_build_info", "gauge", "vigil's version, value 1.", ("version", "python"))
STATE_OK = MetricSpec("vigil_state_database_ok", "gauge",
                      "1 while the state database on disk is in use, 0 when vigil fell back to memory.")
AGENT_METRICS = (UP, DURATION, LAST_SUCCESS, ERRORS, SKIPPED, INTERVAL, BUILD_INFO, STATE_OK)

Rendered = dict[str, tuple[bytes, bytes]]  # family name -> (HELP/TYPE lines, sample lines)


class Exposition:
    """Turns snapshots into exposition text, re-rendering a job only when it changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: dict[str, tuple[JobState, Rendered]] = {}
        self._data: dict[str, tuple[Result | None, Rendered]] = {}
        self._process = ProcessCollector(registry=None)

    def render(self, snapshot: Mapping[str, JobState], state_ok: bool) -> bytes:
        headers: dict[str, bytes] = {}
        bodies: dict[str, list[bytes]] = {}
        keys = sorted(snapshot)
        with self._lock:
            for cache in (self._health, self._data):
                for gone in cache.keys() - snapshot.keys():
                    del cache[gone]
            parts = [self._health_of(snapshot[key]) for key in keys]
            parts += [self._data_of(snapshot[key]) for key in keys]
        for rendered in parts:
            for name, (header, body) in rendered.items():
                headers.setdefault(name, header)
                bodies.setdefault(name, []).append(body)
        agent = [
            _family(BUILD_INFO, [Sample(BUILD_INFO.name, 1, {"version": __version__,
                                                             "python": platform.python_version()})]),
            _family(STATE_OK, [Sample(STATE_OK.name, int(state_ok))]),
            *self._process.collect(),
        ]
        return generate_latest(_Families(agent)) + b"".join(
            headers[name] + b"".join(bodies[name]) for name in headers)

    def _health_of(self, state: JobState) -> Rendered:
        cached = self._health.get(state.key)
        if cached is None or cached[0] is not state:
            cached = (state, _render(_health_families(state)))
            self._health[state.key] = cached
        return cached[1]

    def _data_of(self, state: JobState) -> Rendered:
        cached = self._data.get(state.key)
        if cached is None or cached[0] is not state.result:
            cached = (state.result, _render(_data_families(state)))
            self._data[state.key] = cached
        return cached[1]


class _Families:
    """What generate_latest() needs of a registry: something with collect()."""

    def __init__(self, families: Iterable[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _health_families(state: JobState) -> list[Metric]:
    labels = {"kind": state.kind, "target": state.job}
    values: list[tuple[MetricSpec, float]] = [(INTERVAL, state.interval), (ERRORS, state.errors_total),
                                              (SKIPPED, state.skipped_total)]
    if state.result is not None:
        values += [(UP, int(state.result.ok)), (DURATION, state.result.duration)]
    if state.last_success is not None:
        values.append((LAST_SUCCESS, state.last_success))
    return [_family(spec, [Sample(spec.name, value, labels)]) for spec, value in values]


def _data_families(state: JobState) -> list[Metric]:
    """A job's own series, labelled with its target; a failed job has none (no stale values)."""
    if state.result is None or not state.result.ok:
        return []
    catalogue = {spec.name: spec for spec in state.metrics}
    grouped: dict[str, list[Sample]] = {}
    for sample in state.result.samples:
        if sample.name not in catalogue:
            log.error("undeclared metric dropped job=%s metric=%s", state.job, sample.name)
            continue
        grouped.setdefault(sample.name, []).append(sample)
    return [_family(catalogue[name], samples, (state.label, state.job)) for name, samples in grouped.items()]


def _family(spec: MetricSpec, samples: list[Sample], subject: tuple[str, str] | None = None) -> Metric:
    """One metric family; a subject (`target="nas"`) labels every series; duplicates are dropped."""
    names = ((subject[0],) if subject else ()) + spec.labels
    help_text = spec.help + (CACHED if subject else "")
    family_type = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
    family = family_type(spec.name, help_text, labels=names)
    seen: set[tuple[str, ...]] = set()
    for sample in samples:
        values = ((subject[1],) if subject else ()) + tuple(
            str(sample.labels.get(name, "")) for name in spec.labels)
        if values not in seen:
            seen.add(values)
            family.add_metric(values, sample.value)
    return family


def _render(families: list[Metric]) -> Rendered:
    """Render with prometheus_client, then split the text into per-family parts."""
    rendered: Rendered = {}
    text = b"\n" + generate_latest(_Families(families))
    for block in text.split(b"\n# HELP ")[1:]:  # sample lines never start with '#'
        help_line, type_line, body = (block.rstrip(b"\n") + b"\n").split(b"\n", 2)
        name = help_line.split(b" ", 1)[0].decode()
        rendered[name] = (b"# HELP " + help_line + b"\n" + type_line + b"\n", body)
    return rendered
