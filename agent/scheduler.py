"""Runs every job on its own interval, so that no target can hold up another.

Each job is one asyncio task that owns one collector instance: it builds it from the
job's factory, opens it, collects on a schedule (a first run at a random offset, then
every interval with a little jitter), and closes it when the job is removed or changed,
on stop, and after a failed run (the next run opens a new instance: a session is
re-made after a failure). A session the peer closed while idle (`SessionLost`) is no
failure: the run closes the instance, opens a new one and collects once more, within the
same timeout, so only the device's own failure fails a run. Exponential backoff follows
consecutive failures (capped at 8 intervals), and a catch-all turns any exception into
`vigil_up 0` with a reason.

Isolation: plain (blocking) lifecycle methods run in a thread of their own. A run first
waits for a slot of its kind (`Collector.CONCURRENCY`), then of its pool (collectors,
backup evaluations, integrity checks), so a run queued behind its kind's limit holds no
worker; its timeout starts only when the work starts. A run that outlives its timeout
gives its slots back at once and its thread is left to end on its own: a hung job holds
at most its own thread, and its later runs are skipped (and counted) until that thread
ends, while every other job keeps its schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.clock import Clock
from agent.collector import COLLECT, LONG, MAIN, TOOLS, Collector, Context, Emitter, JobSpec, SessionLost, is_blocking
from agent.model import ApiCounters, JobState, LastGood, Result, Sample, SignalState
from agent.reasons import describe
from agent.store import Store
from agent.units import format_duration

log = logging.getLogger(__name__)

MAX_BACKOFF_FACTOR = 8
JITTER = 0.05  # each delay varies by up to ±5%
CLOSE_TIMEOUT = 10.0  # seconds a close() may take before its session is abandoned


def backoff_delay(interval: float, consecutive_failures: int) -> float:
    """The interval, doubled for each failure after the first, at most 8 intervals."""
    return interval * min(2 ** max(consecutive_failures - 1, 0), MAX_BACKOFF_FACTOR)


class Slots:
    """Bounded concurrency per pool and per kind, for the runs of every job."""

    def __init__(self, sizes: dict[str, int]):
        self._pools = {name: asyncio.Semaphore(size) for name, size in sizes.items()}
        self._kinds: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def take(self, spec: JobSpec):
        """The kind's slot first, then the pool's: a run queued behind its kind's limit holds no
        worker that another kind's run could use."""
        limit = spec.collector.CONCURRENCY
        kind = self._kinds.setdefault(spec.kind, asyncio.Semaphore(limit)) if limit else None
        async with kind or contextlib.nullcontext(), self._pools[spec.collector.POOL]:
            yield


def pool_sizes(workers: int, backup_workers: int | None = None) -> dict[str, int]:
    """Polls get `workers` slots, runs that wait on a tool (backup evaluations) two per core, long runs
    (integrity checks) a few.

    What a backup evaluation waits for, when its repository changed, is a tool starting,
    deriving a key and decrypting (restic, borg): mostly CPU, partly I/O. Two per core
    keep the cores busy through the I/O; many more only queue in the kernel and make
    every run slower (an unchanged repository costs no tool run at all).
    """
    tools = backup_workers or max(2, min(workers, 2 * len(os.sched_getaffinity(0))))
    return {COLLECT: workers, TOOLS: tools, LONG: max(2, workers // 4)}


class Runtime:
    """The machinery one run needs, shared by the scheduler and `vigil once`."""

    def __init__(self, clock: Clock, slots: Slots):
        self.clock = clock
        self.slots = slots
        self.threads: set[threading.Thread] = set()  # blocking calls still going

    async def call(self, method: Callable[..., Any], *args: Any, name: str, owner: Job | None = None) -> Any:
        """Await an async method, or run a plain one in a thread of its own (left to finish if abandoned)."""
        if not is_blocking(method):
            return await method(*args)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def work() -> None:
            outcome, error = None, None
            try:
                outcome = method(*args)
            except BaseException as exc:  # handed to the awaiting task, which decides
                error = exc
            finally:
                self.threads.discard(thread)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for a late call
                loop.call_soon_threadsafe(_settle, done, outcome, error)

        thread = threading.Thread(target=work, name=f"vigil-collect {name}", daemon=True)
        self.threads.add(thread)
        if owner is not None:
            owner.pending = done
            done.add_done_callback(_consume)
        thread.start()
        return await asyncio.shield(done)

    async def close(self, instance: Collector, name: str) -> None:
        """close() within CLOSE_TIMEOUT; a failing close is logged, never raised."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.call(instance.close, name=name)
        except Exception as exc:  # a session that cannot be closed cleanly is abandoned
            log.warning("close failed job=%s error=%s", name, describe(exc))


def _settle(future: asyncio.Future, outcome: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(outcome)


@dataclass
class Job:
    """One configured job's life: its collector instance, its signals' last good data."""

    spec: JobSpec
    ctx: Context
    instance: Collector | None = None
    opened: bool = False
    pending: asyncio.Future | None = None  # its latest blocking call, which may outlive a timeout
    # signal -> its last good samples, when (wall time, shown) and when (monotonic time, for "due")
    cache: dict[str, tuple[tuple[Sample, ...], float, float]] = field(default_factory=dict)
    failed_signals: dict[str, str] = field(default_factory=dict)

    def due(self, now: float) -> frozenset[str]:
        """The signals to collect: every fast one, and each slow one whose `every` has passed.

        `now` is monotonic: a step of the wall clock (back a day) must not stop a slow signal.
        """
        assert self.instance is not None  # noqa: S101 — narrows a type; an internal invariant, not input checking
        due = set()
        for name, signal in self.instance.signals().items():
            cached = self.cache.get(name)
            if signal.every is None or cached is None or now - cached[2] >= signal.every - self.spec.interval / 2:
                due.add(name)
        return frozenset(due)

    async def run(self, runtime: Runtime) -> Result:
        """One run, never raising: open if needed, collect, merge in the slow signals' last data."""
        spec, clock = self.spec, runtime.clock
        async with runtime.slots.take(spec):
            started, start = clock.time(), clock.monotonic()
            deadline = asyncio.timeout(spec.timeout)  # unlike wait_for on 3.11, never swallows a cancel
            if self.instance is None:
                self.instance, self.opened = spec.factory(self.ctx), False
            signals = self.instance.signals()
            out = Emitter(spec.collector.METRICS, self.ctx.api, signals, where=spec.key)
            try:
                async with deadline:  # cancels async work; a blocking call's thread is left to end
                    await self._work(runtime, out, self.due(start))
                if MAIN in out.errors:
                    raise _SignalFailed(out.errors[MAIN])
            except Exception as exc:  # any collector bug or device reply must not stop the job
                if deadline.expired():
                    error = f"timed out after {format_duration(spec.timeout)}"
                else:
                    log.debug("collection raised job=%s", spec.key, exc_info=True)
                    error = describe(exc)
                await self.discard(runtime)
                return Result(spec.name, spec.kind, False, started, clock.monotonic() - start, error=error,
                              rejected=out.rejected)
            samples, states = self._merge(out, signals, started, start)
            return Result(spec.name, spec.kind, True, started, clock.monotonic() - start, samples,
                          signals=states, verdict=out.verdict, rejected=out.rejected)

    async def _work(self, runtime: Runtime, out: Emitter, due: frozenset[str]) -> None:
        """Open if needed and collect; once more on a new instance if a kept session was found closed."""
        try:
            await self._open_and_collect(runtime, out, due)
        except SessionLost as lost:
            # routine (upsd drops idle clients every minute): not worth a line in the journal
            log.debug("session closed by the peer, opening a new one job=%s reason=%r", self.spec.key, describe(lost))
            await self.discard(runtime)
            out.restart()
            self.instance = self.spec.factory(self.ctx)
            await self._open_and_collect(runtime, out, due)

    async def _open_and_collect(self, runtime: Runtime, out: Emitter, due: frozenset[str]) -> None:
        assert self.instance is not None  # noqa: S101 — narrows a type; an internal invariant, not input checking
        if not self.opened:
            await runtime.call(self.instance.open, name=self.spec.key, owner=self)
            self.opened = True
        await runtime.call(self.instance.collect, out, due, name=self.spec.key, owner=self)

    @property
    def busy(self) -> bool:
        """A blocking call of an earlier run is still going (it outlived its timeout)."""
        return self.pending is not None and not self.pending.done()

    def _merge(self, out: Emitter, signals, now: float,
               monotonic: float) -> tuple[tuple[Sample, ...], tuple[SignalState, ...]]:
        samples: list[Sample] = []
        states = []
        for name in signals:
            if name in out.ran:
                if name in out.errors:
                    self.cache.pop(name, None)
                    states.append(SignalState(name, False, out.errors[name]))
                    self._log_signal(name, out.errors[name])
                    continue
                self.cache[name] = (out.samples(name), now, monotonic)
                self._log_signal(name, "")
                fresh = True
            elif name not in self.cache:
                continue
            else:
                fresh = False
            cached, at, _ = self.cache[name]
            samples += cached
            states.append(SignalState(name, True, last_success=at, fresh=fresh))
        return tuple(samples), tuple(states)

    def _log_signal(self, name: str, error: str) -> None:
        """A signal's failure and recovery are logged once, not on every run."""
        if name == MAIN:
            return
        before = self.failed_signals.get(name)
        if error and before != error:
            log.warning("signal failed job=%s signal=%s error=%r", self.spec.key, name, error)
            self.failed_signals[name] = error
        elif not error and before is not None:
            log.info("signal recovered job=%s signal=%s", self.spec.key, name)
            del self.failed_signals[name]

    async def discard(self, runtime: Runtime) -> None:
        """Close the instance (unblocking a hung session where the library allows) and forget it."""
        instance, self.instance, self.opened = self.instance, None, False
        if instance is not None:
            await runtime.close(instance, self.spec.key)


class _SignalFailed(Exception):
    """The main signal was failed with out.fail(): the run fails with that reason."""


class Scheduler:
    def __init__(self, store: Store, context: Context, *, workers: int = 8, backup_workers: int | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None, max_start_delay: float = 5.0):
        self._store = store
        self._context = context
        self._clock = clock or context.clock
        self._rng = rng or random.Random()  # noqa: S311 — start spread, not a secret
        self._max_start_delay = max_start_delay
        self._runtime = Runtime(self._clock, Slots(pool_sizes(workers, backup_workers)))
        self._jobs: dict[str, tuple[Job, asyncio.Task]] = {}

    @property
    def threads(self) -> set[threading.Thread]:
        return self._runtime.threads

    def apply(self, specs: Iterable[JobSpec]) -> None:
        """Start new jobs, restart changed ones, stop removed ones; unchanged ones keep their instance.

        Every job's state is published before this returns, so the first scrape after a
        start or a reload already lists every job with its restored last success.
        """
        wanted = {spec.key: spec for spec in specs}
        for key, (job, task) in list(self._jobs.items()):
            if not job.spec.same_as(wanted.get(key)):
                task.cancel()
                del self._jobs[key]
        for key, spec in wanted.items():
            if key not in self._jobs:
                job = Job(spec, replace(self._context, api=self._api_of(key), kind=spec.kind, target=spec.name,
                                        interval=spec.interval, timeout=spec.timeout))
                state = self._initial_state(job)
                self._store.publish(state)
                self._jobs[key] = (job, asyncio.create_task(self._loop(job, state), name=f"job {key}"))
        self._store.retain(wanted)

    def _api_of(self, key: str) -> ApiCounters:
        """A job's request counters outlive its restarts, as Prometheus counters should."""
        previous = self._store.snapshot().get(key)
        return previous.api if previous is not None and previous.api is not None else ApiCounters()

    def _initial_state(self, job: Job) -> JobState:
        spec = job.spec
        previous = self._store.snapshot().get(spec.key)
        return JobState(
            job=spec.name, kind=spec.kind, interval=spec.interval, metrics=spec.collector.METRICS,
            conditions=spec.collector.CONDITIONS,
            label=spec.collector.LABEL, board=spec.collector.BOARD, api=job.ctx.api,
            last_success=previous.last_success if previous else self._store.restored_last_success(spec.key),
            errors_total=previous.errors_total if previous else 0,
            skipped_total=previous.skipped_total if previous else 0,
            rejected_total=previous.rejected_total if previous else 0,
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every job (each closes its instance), then wait for blocking calls, `timeout` in all."""
        end = self._clock.monotonic() + timeout
        if self._runtime.threads:
            log.info("stopping: waiting up to %s for %d running call(s)", format_duration(timeout),
                     len(self._runtime.threads))
        tasks = [task for _, task in self._jobs.values()]
        self._jobs.clear()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks, return_exceptions=True)
        remaining = max(0.0, end - self._clock.monotonic())
        await asyncio.to_thread(_join, list(self._runtime.threads), remaining)

    async def _loop(self, job: Job, state: JobState) -> None:
        spec = job.spec
        delay = self._rng.uniform(0, min(spec.interval, self._max_start_delay))
        try:
            while True:
                state = replace(state, next_run=self._clock.time() + delay, running=False)
                self._store.publish(state)
                await self._clock.sleep(delay)
                if job.busy:
                    state = replace(state, skipped_total=state.skipped_total + 1)
                    log.warning("run skipped, the previous one is still running job=%s", spec.key)
                    delay = spec.interval * self._jitter()
                    continue
                self._store.publish(replace(state, running=True, next_run=None))
                result = await job.run(self._runtime)
                state = self._settle(state, result)
                delay = backoff_delay(spec.interval, state.consecutive_failures) * self._jitter()
        finally:  # removed or changed by a reload, or stopping: its session ends now
            await job.discard(self._runtime)

    def _jitter(self) -> float:
        return self._rng.uniform(1 - JITTER, 1 + JITTER)

    def _settle(self, state: JobState, result: Result) -> JobState:
        before = state.result
        state = replace(state, rejected_total=state.rejected_total + result.rejected)
        if result.ok:
            if before is not None and not before.ok:
                log.info("recovered job=%s kind=%s", state.job, state.kind)
            return replace(state, result=result, consecutive_failures=0, last_good=None,
                           last_success=result.started_at + result.duration)
        level = logging.DEBUG if before is not None and before.error == result.error else logging.WARNING
        log.log(level, "collection failed job=%s kind=%s error=%r", state.job, state.kind, result.error)
        if before is not None and before.ok:  # its series leave /metrics now; a range still reads them
            state = replace(state, last_good=LastGood(before.samples, result.started_at + result.duration))
        return replace(state, result=result, consecutive_failures=state.consecutive_failures + 1,
                       errors_total=state.errors_total + 1)


def _join(threads: list[threading.Thread], timeout: float) -> None:
    """Wait for blocking calls to end, all of them within `timeout` seconds in total."""
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))


def _consume(future: asyncio.Future) -> None:
    """Retrieve a late call's outcome so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
