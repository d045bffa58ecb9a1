"""The contract every collector kind implements, and the Emitter it writes into.

Modelled on go.d's Init/Check/Collect/Cleanup, node_exporter's per-collector success and
Telegraf's AddError:

- `__init__(config, ctx)` does no I/O; `open()` makes the session (SSH transport, vCenter
  login, SNMP engine); `collect(out, due)` polls; `close()` ends the session on reload,
  removal, stop, and after a failed run (the next run opens a new instance). Each of the
  three may be `async` or plain: plain ones block and run in a thread of their own.
- A collector writes samples into `out` (an Emitter), which checks every sample against
  the catalogue: the exact label names, the declared type. A mismatch raises when
  `VIGIL_STRICT_METRICS=1` (the tests) and is counted and logged once in production.
- `with out.signal("licenses"):` isolates one part of a poll: an exception inside it fails
  that signal only (its samples are dropped, the reason kept) and the job's other data
  stays. Samples emitted outside any block belong to the `main` signal; an exception
  there fails the whole run (`vigil_up 0`).
- A signal with its own `every` is slow: `due` names the signals to collect this run; the
  agent re-emits the last good samples of the others, and their age is exported.
- `out.request(api, code)` and `out.waited(api, seconds)` count API calls and throttling
  waits in counters the agent keeps for the job, so they survive failed runs.
- A session kept from an earlier poll that the peer closed meanwhile (an idle limit, a
  restart) is no failure of the device: the collector raises `SessionLost`, and the agent
  opens a new instance and collects once more, within the same run and timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from agent.model import ApiCounters, Condition, MetricSpec, Sample, Verdict, job_key
from agent.reasons import describe
from agent.redact import redact

if TYPE_CHECKING:
    from agent.clock import Clock
    from agent.ratelimit import RateLimits
    from agent.schema import TargetConfig
    from agent.statedb import StateDB

log = logging.getLogger(__name__)

MAIN = "main"
STRICT = os.environ.get("VIGIL_STRICT_METRICS") == "1"
# The pools of slots a run takes (agent.scheduler.pool_sizes sizes them); a kind picks one with POOL.
COLLECT = "collect"  # polls of devices and APIs: `workers` at once
TOOLS = "tools"  # runs that wait on a local tool, mostly CPU-bound (restic, borg): two per core
LONG = "long"  # runs that read data for hours (integrity checks): a few; `vigil once` leaves them out


@dataclass(frozen=True)
class Signal:
    """One independently failing part of a poll; `every` (seconds) makes it slow."""

    every: float | None = None
    help: str = ""


DEFAULT_SIGNALS: Mapping[str, Signal] = {MAIN: Signal()}


class SessionLost(Exception):
    """A session kept from an earlier poll was found closed by the peer before it answered anything.

    The peer dropped it while idle (upsd after 60 s, sshd's UnusedConnectionTimeout, a
    keep-alive limit) or restarted. Raise it (or a subclass that is also the collector's own
    error) only then: the agent closes the instance, opens a new one and collects once more
    within the same run and timeout, so that a failed poll means the device failed. Never for
    a session made in this poll, a timeout, or a request that may have reached the peer: those
    are real failures, and a retry would double the time to fail or repeat a side effect.
    """


class MetricError(Exception):
    """A sample that does not match its catalogue entry: a bug in the collector."""


@dataclass(frozen=True)
class Context:
    """What the agent lends one job: the clock, shared API budgets, durable state, its counters."""

    clock: Clock
    rate_limits: RateLimits
    state_dir: Path  # for caches a tool keeps between runs (restic, borg)
    db: StateDB  # the history the backup checks keep
    api: ApiCounters = field(default_factory=ApiCounters)
    kind: str = ""
    target: str = ""
    interval: float = 60.0  # the job's effective interval and timeout, defaults applied:
    timeout: float = 20.0  # a collector that paces itself (a deadline inside the run) reads them here


C = TypeVar("C", bound="TargetConfig")


class Collector(Generic[C]):
    """The base of every kind. Subclasses set Config, METRICS, CONDITIONS and, if they have several, SIGNALS."""

    Config: ClassVar[type]
    METRICS: ClassVar[tuple[MetricSpec, ...]] = ()
    CONDITIONS: ClassVar[tuple[Condition, ...]] = ()  # its shipped alert rules, for the status page
    SIGNALS: ClassVar[Mapping[str, Signal]] = DEFAULT_SIGNALS
    CONCURRENCY: ClassVar[int | None] = None  # at most this many jobs of the kind run at once
    POOL: ClassVar[str] = COLLECT  # the slots its runs take
    LABEL: ClassVar[str] = "target"  # the label naming a job's subject on its series
    BOARD: ClassVar[str] = ""  # a title for the status page's board of this kind's verdicts
    SHARED_PAGE: ClassVar[bool] = False  # its folder's page is made for several kinds: each block named for its kind

    def __init__(self, config: C, ctx: Context):
        self.config = config
        self.ctx = ctx

    def signals(self) -> Mapping[str, Signal]:
        """The signals of this target; override when the config sets a signal's `every` or turns one off."""
        return self.SIGNALS

    def open(self) -> None:
        """Make the session; may be async. The default has none."""

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """End the session; may be async. Must not raise for a session that never opened."""


@dataclass(frozen=True, eq=False)
class JobSpec:
    """What to run and how often; `config` decides whether a reload restarts the job."""

    name: str
    kind: str
    interval: float
    timeout: float
    factory: Callable[[Context], Collector]  # builds the collector; no I/O
    collector: type[Collector]  # its catalogue, signals, concurrency, pool, label
    config: object = None

    @property
    def key(self) -> str:
        return job_key(self.kind, self.name)

    def same_as(self, other: JobSpec | None) -> bool:
        return other is not None and (self.kind, self.interval, self.timeout, self.config) == (
            other.kind, other.interval, other.timeout, other.config)


_CURRENT_SIGNAL: contextvars.ContextVar[str] = contextvars.ContextVar("vigil_signal", default=MAIN)


class Emitter:
    """Collects one run's samples per signal, checked against the catalogue.

    The current signal is a context variable, so concurrent asyncio tasks (or threads) of
    one run may each be inside their own `out.signal(...)`.
    """

    def __init__(self, metrics: tuple[MetricSpec, ...], api: ApiCounters | None = None,
                 signals: Mapping[str, Signal] = DEFAULT_SIGNALS, strict: bool | None = None,
                 where: str = ""):
        self._specs = {spec.name: spec for spec in metrics}
        self._signals = signals
        self._api = api if api is not None else ApiCounters()
        self._strict = STRICT if strict is None else strict
        self._where = where  # "kind:target", for log lines
        self._lock = threading.Lock()
        self._samples: dict[str, dict[tuple, Sample]] = {MAIN: {}}
        self.errors: dict[str, str] = {}  # signal -> why it failed this run
        self.ran: set[str] = {MAIN}  # signals collected this run
        self.rejected = 0  # samples refused as not matching the catalogue
        self.verdict: Verdict | None = None
        self._logged: set[str] = set()

    def gauge(self, spec: MetricSpec, value: float | None, /, **labels: object) -> None:
        self._add(spec, "gauge", value, labels)

    def counter(self, spec: MetricSpec, value: float | None, /, **labels: object) -> None:
        self._add(spec, "counter", value, labels)

    def request(self, api: str, code: int | str) -> None:
        self._api.request(api, code)

    def waited(self, api: str, seconds: float) -> None:
        self._api.waited(api, seconds)

    def judge(self, verdict: Verdict) -> None:
        """Set the job's verdict for the status page (its texts redacted: they quote tools)."""
        self.verdict = replace(verdict, detail=redact(verdict.detail),
                               notes={label: redact(text) for label, text in verdict.notes.items()})

    @contextmanager
    def signal(self, name: str) -> Iterator[None]:
        """Isolate one signal: an exception inside fails it alone, with its samples."""
        if _CURRENT_SIGNAL.get() != MAIN:
            raise MetricError("signals do not nest")
        if name not in self._signals:
            self._refuse(f"signal `{name}` is not declared")
        token = _CURRENT_SIGNAL.set(name)
        with self._lock:
            self.ran.add(name)
            self._samples[name] = {}
            self.errors.pop(name, None)
        try:
            yield
        except MetricError:
            raise
        except Exception as exc:  # the signal fails; the run goes on
            with self._lock:
                self.errors[name] = describe(exc)
                self._samples[name] = {}
            log.debug("signal failed job=%s signal=%s", self._where, name, exc_info=True)
        finally:
            _CURRENT_SIGNAL.reset(token)

    def restart(self) -> None:
        """Forget this run's samples and signal outcomes (not the rejected count): the agent
        collects again on a new session after SessionLost."""
        with self._lock:
            self._samples = {MAIN: {}}
            self.errors.clear()
            self.ran = {MAIN}
            self.verdict = None

    def fail(self, name: str, reason: str) -> None:
        """Mark a signal failed without an exception (a 403 the collector handled itself)."""
        with self._lock:
            self.ran.add(name)
            self.errors[name] = redact(reason)
            self._samples[name] = {}

    def samples(self, name: str = MAIN) -> tuple[Sample, ...]:
        """The good samples a signal emitted this run (none when it failed)."""
        with self._lock:
            return tuple(self._samples.get(name, {}).values()) if name not in self.errors else ()

    def _add(self, spec: MetricSpec, kind: str, value: float | None, labels: Mapping[str, object]) -> None:
        if value is None:
            return
        declared = self._specs.get(spec.name)
        if declared is None:
            self._refuse(f"{spec.name} is not in the collector's METRICS")
            return
        if declared.type != kind:
            self._refuse(f"{spec.name} is a {declared.type}, emitted as a {kind}")
            return
        if set(labels) != set(declared.labels):
            self._refuse(f"{spec.name} has labels {sorted(labels)}, declared {sorted(declared.labels)}")
            return
        try:
            number = float(value)
        except OverflowError:
            return  # an integer beyond a float's range: as infinite, left out
        except (TypeError, ValueError):
            self._refuse(f"{spec.name}: the value {type(value).__name__} is not a number")
            return
        if not math.isfinite(number):
            return  # NaN and inf from a device mean "unknown": the sample is left out
        text = {name: "" if labels[name] is None else str(labels[name]) for name in declared.labels}
        key = (spec.name, *text.values())
        signal = _CURRENT_SIGNAL.get()
        with self._lock:
            bucket = self._samples.setdefault(signal, {})
            if key in bucket:
                duplicate = True
            else:
                duplicate = False
                bucket[key] = Sample(spec.name, number, text)
        if duplicate:
            self._refuse(f"{spec.name}{text} emitted twice")

    def _refuse(self, problem: str) -> None:
        if self._strict:
            raise MetricError(problem)
        with self._lock:
            self.rejected += 1
            first = problem not in self._logged
            self._logged.add(problem)
        if first:
            log.error("sample rejected job=%s problem=%s", self._where, problem)


def is_blocking(method: Any) -> bool:
    """A plain lifecycle method blocks, and the agent runs it in a thread."""
    return not inspect.iscoroutinefunction(method)


async def call(method: Any, *args: Any) -> Any:
    """Await an async lifecycle method, or run a plain (blocking) one in a thread."""
    if is_blocking(method):
        return await asyncio.to_thread(method, *args)
    return await method(*args)


async def run_once(collector: Collector, due: frozenset[str] | None = None,
                   strict: bool | None = None) -> Emitter:
    """Open, collect and close one instance, every signal due: what tests and `vigil once` do.

    A failure of the main signal raises, as it fails the run in the agent.
    """
    signals = collector.signals()
    out = Emitter(collector.METRICS, collector.ctx.api, signals, strict,
                  f"{collector.ctx.kind}:{collector.ctx.target}")
    try:
        await call(collector.open)
        await call(collector.collect, out, frozenset(signals) if due is None else due)
    finally:
        await call(collector.close)
    return out
