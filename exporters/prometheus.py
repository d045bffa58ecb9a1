"""Prometheus text exposition of the store's snapshot.

A scrape never triggers collection. Each job's samples are rendered once, by
prometheus_client, when a new result arrives; a scrape only stitches the pre-rendered
families together (one HELP/TYPE per family, every job's lines beneath it). That keeps
/metrics fast with tens of thousands of series.
"""

from __future__ import annotations

import logging
import platform
import struct
import threading
import zlib
from collections.abc import Iterable, Mapping

from prometheus_client import ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import __version__
from agent.collector import MAIN
from agent.metrics import (
    API_REQUESTS,
    API_WAIT,
    BUILD_INFO,
    DURATION,
    ERRORS,
    INTERVAL,
    JOB_LABELS,
    LAST_SUCCESS,
    REJECTED,
    SIGNAL_SUCCESS,
    SIGNAL_TIME,
    SKIPPED,
    STATE_OK,
    UP,
)
from agent.model import JobState, MetricSpec, Result, Sample

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CACHED = " Cached by the agent, refreshed on the target's interval."
GZIP_LEVEL = 6  # each piece of the text is compressed once, when its job publishes
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, unknown OS
_LAST_BLOCK = b"\x03\x00"  # an empty final block (fixed Huffman) ends the deflate stream
_WINDOW = 32768  # how far back deflate refers

Rendered = dict[str, tuple[bytes, bytes]]  # family name -> (HELP/TYPE lines, sample lines)
Counts = tuple[tuple[tuple[tuple[str, str], int], ...], tuple[tuple[str, float], ...]]  # a job's api counters, sorted


class Exposition:
    """Turns snapshots into exposition text, re-rendering a job only when it changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: dict[str, tuple[JobState, Rendered]] = {}
        self._data: dict[str, tuple[Result | None, Rendered]] = {}
        self._api: dict[str, tuple[Counts, Rendered]] = {}
        self._process = ProcessCollector(registry=None)
        # id(piece) -> (piece, the piece before it, its deflate blocks after that one)
        self._deflated: dict[int, tuple[bytes, bytes, bytes]] = {}

    def render(self, snapshot: Mapping[str, JobState], state_ok: bool, facts: Mapping[MetricSpec, float] | None = None,
               gzip: bool = False) -> bytes:
        """The exposition, gzip-compressed when asked."""
        keys = sorted(snapshot)
        with self._lock:
            for cache in (self._health, self._data, self._api):
                for gone in cache.keys() - snapshot.keys():
                    del cache[gone]
            parts = [self._health_of(snapshot[key]) for key in keys]
            parts += [self._data_of(snapshot[key]) for key in keys]
            parts += [self._api_of(snapshot[key]) for key in keys if snapshot[key].api is not None]
        agent = [
            _family(BUILD_INFO, [Sample(BUILD_INFO.name, 1, {"version": __version__,
                                                             "python": platform.python_version()})]),
            _family(STATE_OK, [Sample(STATE_OK.name, int(state_ok))]),
            *(_family(spec, [Sample(spec.name, value)]) for spec, value in (facts or {}).items()),
            *self._process.collect(),
        ]
        pieces = _stitch(parts) + [generate_latest(_Families(agent))]
        return self._gzip(pieces) if gzip else b"".join(pieces)

    def _gzip(self, pieces: list[bytes]) -> bytes:
        """One gzip member made of each piece's own deflate blocks, a piece compressed once.

        A piece (a family's HELP/TYPE, one job's lines of it) is the same bytes object
        until its job publishes again. Each is deflated on its own, with the piece before
        it as the preset dictionary (a decoder's window holds exactly those bytes), and
        ends on a byte boundary (Z_SYNC_FLUSH), so the blocks concatenate into one stream,
        as pigz does. Only a piece that changed, or whose predecessor did, is compressed
        again; the trailer's CRC-32 and length are those of the whole text.
        """
        with self._lock:
            known, self._deflated = self._deflated, {}
            blocks = [_GZIP_HEADER]
            crc = size = 0
            before = b""
            for piece in filter(None, pieces):  # b"" is one shared object: it would have many predecessors
                entry = known.get(id(piece))
                if entry is None or entry[0] is not piece or entry[1] is not before:
                    entry = (piece, before, _deflate(piece, before[-_WINDOW:]))
                self._deflated[id(piece)] = entry
                blocks.append(entry[2])
                crc, size, before = zlib.crc32(piece, crc), size + len(piece), piece
        blocks.append(_LAST_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF))
        return b"".join(blocks)

    def _health_of(self, state: JobState) -> Rendered:
        cached = self._health.get(state.key)
        if cached is None or cached[0] is not state:
            cached = (state, _render(_health_families(state)))
            self._health[state.key] = cached
        return cached[1]

    def _api_of(self, state: JobState) -> Rendered:
        """Re-rendered only when a counter moved: unchanged pieces keep their compressed blocks."""
        assert state.api is not None  # noqa: S101 — narrows a type; the caller checked
        counts = (tuple(sorted(state.api.requests().items())), tuple(sorted(state.api.waits().items())))
        cached = self._api.get(state.key)
        if cached is None or cached[0] != counts:
            cached = (counts, _render(_api_families(state, counts)))
            self._api[state.key] = cached
        return cached[1]

    def _data_of(self, state: JobState) -> Rendered:
        cached = self._data.get(state.key)
        if cached is None or cached[0] is not state.result:
            cached = (state.result, _render(_data_families(state)))
            self._data[state.key] = cached
        return cached[1]


def _deflate(piece: bytes, before: bytes) -> bytes:
    """Raw deflate blocks of `piece` that may refer back into `before`, ending byte-aligned."""
    compressor = (zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, zdict=before) if before
                  else zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15))
    return compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _stitch(parts: list[Rendered]) -> list[bytes]:
    """Rendered parts in order family by family: one HELP/TYPE, then every job's lines."""
    headers: dict[str, bytes] = {}
    bodies: dict[str, list[bytes]] = {}
    for rendered in parts:
        for name, (header, body) in rendered.items():
            headers.setdefault(name, header)
            bodies.setdefault(name, []).append(body)
    return [piece for name in headers for piece in (headers[name], *bodies[name])]


class _Families:
    """What generate_latest() needs of a registry: something with collect()."""

    def __init__(self, families: Iterable[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def job_series(state: JobState) -> list[tuple[str, dict[str, str], float]]:
    """A job's series as a scrape shows them (the agent's about it, then its data), to judge conditions on."""
    health = {"kind": state.kind, state.label: state.job}
    series = [(s.name, {**health, **s.labels}, s.value) for _, samples in _health_samples(state) for s in samples]
    if state.result is not None and state.result.ok:
        series += [(s.name, {state.label: state.job, **s.labels}, s.value) for s in state.result.samples]
    return series


def gone_series(state: JobState) -> list[tuple[str, dict[str, str], float, float]]:
    """A failing job's last good series, with when they left /metrics: a rule's range still reads them."""
    last = state.last_good
    if last is None:
        return []
    return [(s.name, {state.label: state.job, **s.labels}, s.value, last.gone_at) for s in last.samples]


def agent_series(state_ok: bool, facts: Mapping[MetricSpec, float]) -> list[tuple[str, dict[str, str], float]]:
    """The agent's series about itself (state database, reload, certificate)."""
    return [(STATE_OK.name, {}, int(state_ok)), *((spec.name, {}, value) for spec, value in facts.items())]


def _health_families(state: JobState) -> list[Metric]:
    """The agent's series about a job, with the job's own subject label (`target` or `backup`)."""
    subject = ("kind", state.kind), (state.label, state.job)
    return [_family(spec, samples, subject) for spec, samples in _health_samples(state)]


def _health_samples(state: JobState) -> list[tuple[MetricSpec, list[Sample]]]:
    values: list[tuple[MetricSpec, float]] = [(INTERVAL, state.interval), (ERRORS, state.errors_total),
                                              (SKIPPED, state.skipped_total), (REJECTED, state.rejected_total)]
    if state.result is not None:
        values += [(UP, int(state.result.ok)), (DURATION, state.result.duration)]
    if state.last_success is not None:
        values.append((LAST_SUCCESS, state.last_success))
    samples = [(spec, [Sample(spec.name, value)]) for spec, value in values]
    signals = state.result.signals if state.result is not None and state.result.ok else ()
    if [s.name for s in signals] == [MAIN]:
        signals = ()  # a job of one signal: vigil_up says it all
    samples.append((SIGNAL_SUCCESS, [Sample(SIGNAL_SUCCESS.name, int(s.ok), {"signal": s.name}) for s in signals]))
    samples.append((SIGNAL_TIME, [Sample(SIGNAL_TIME.name, s.last_success, {"signal": s.name})
                                  for s in signals if s.last_success is not None]))
    return samples


def _api_families(state: JobState, counts: Counts) -> list[Metric]:
    """Live counters: read on every scrape, so a 429 storm shows while it lasts."""
    subject = ("kind", state.kind), (state.label, state.job)
    requests, waits = counts
    return [_family(API_REQUESTS, [Sample(API_REQUESTS.name, count, {"api": api, "code": code})
                                   for (api, code), count in requests], subject),
            _family(API_WAIT, [Sample(API_WAIT.name, seconds, {"api": api}) for api, seconds in waits], subject)]


def _data_families(state: JobState) -> list[Metric]:
    """A job's own series, labelled with its subject; a failed job has none (no stale values)."""
    if state.result is None or not state.result.ok:
        return []
    catalogue = {spec.name: spec for spec in state.metrics}
    grouped: dict[str, list[Sample]] = {}
    for sample in state.result.samples:
        grouped.setdefault(sample.name, []).append(sample)
    return [_family(catalogue[name], samples, ((state.label, state.job),), CACHED)
            for name, samples in grouped.items()]


def _family(spec: MetricSpec, samples: list[Sample], subject: tuple[tuple[str, str], ...] = (),
            cached: str = "") -> Metric:
    """One metric family; the subject labels (`kind`, `target="nas"`) go on every series.

    The agent's own specs declare `kind, target` first: the subject stands in for them.
    """
    own = spec.labels[len(JOB_LABELS):] if spec.labels[:len(JOB_LABELS)] == JOB_LABELS else spec.labels
    names = tuple(name for name, _ in subject) + own
    family_type = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
    family = family_type(spec.name, spec.help + cached, labels=names)
    fixed = tuple(value for _, value in subject)
    for sample in samples:
        family.add_metric(fixed + tuple(sample.labels[name] for name in own), sample.value)
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
