"""Runs every job on its own interval, so that no target can hold up another.

Each job is one asyncio task: a first run at a random offset (spreading the load),
then every interval with a little jitter, a timeout shorter than the interval,
exponential backoff after consecutive failures (capped at 8 intervals), and a
catch-all so any exception becomes `vigil_up 0` with a reason. Blocking jobs run in
bounded thread pools, one per kind of work (collectors, backup evaluations, integrity
checks), so fifty restic listings or an hours-long `restic check` never keep a
collector waiting for a thread. A thread cannot be killed, so a run that outlives its
timeout keeps its job skipping (and counting the skips) until it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from agent.clock import Clock
from agent.model import Collected, JobState, MetricSpec, Result, Sample, job_key
from agent.store import Store
from agent.units import format_duration

log = logging.getLogger(__name__)

MAX_BACKOFF_FACTOR = 8
JITTER = 0.05  # each delay varies by up to ±5%


@dataclass(frozen=True, eq=False)
class JobSpec:
    """What to run and how often; `config` decides whether a reload restarts the job."""

    name: str
    kind: str
    interval: float
    timeout: float
    collect: Callable[[], Any]  # sync (run in the pool) or async, returning Samples or Collected
    metrics: tuple[MetricSpec, ...] = ()
    config: object = None
    label: str = "target"  # the label naming the job's subject on its series
    pool: str = "collect"  # the thread pool its blocking runs use

    @property
    def key(self) -> str:
        return job_key(self.kind, self.name)

    def same_as(self, other: JobSpec | None) -> bool:
        return other is not None and (self.kind, self.interval, self.timeout, self.config) == (
            other.kind, other.interval, other.timeout, other.config)


def backoff_delay(interval: float, consecutive_failures: int) -> float:
    """The interval, doubled for each failure after the first, at most 8 intervals."""
    return interval * min(2 ** max(consecutive_failures - 1, 0), MAX_BACKOFF_FACTOR)


def describe(exc: BaseException) -> str:
    """One line for the status page and the log: the exception type and its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


class Scheduler:
    def __init__(self, store: Store, *, workers: int = 8, clock: Clock | None = None,
                 rng: random.Random | None = None, max_start_delay: float = 5.0):
        self._store = store
        self._clock = clock or Clock()
        self._rng = rng or random.Random()
        self._max_start_delay = max_start_delay
        sizes = {"collect": workers, "backup": max(2, workers // 2), "verify": 1}
        self._pools = {name: ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"vigil-collect-{name}")
                       for name, size in sizes.items()}
        self._jobs: dict[str, tuple[JobSpec, asyncio.Task]] = {}

    def apply(self, specs: Iterable[JobSpec]) -> None:
        """Start new jobs, restart changed ones, stop removed ones; unchanged ones go on."""
        wanted = {spec.key: spec for spec in specs}
        for key, (spec, task) in list(self._jobs.items()):
            if not spec.same_as(wanted.get(key)):
                task.cancel()
                del self._jobs[key]
        for key, spec in wanted.items():
            if key not in self._jobs:
                self._jobs[key] = (spec, asyncio.create_task(self._loop(spec), name=f"job {key}"))
        self._store.retain(wanted)

    async def stop(self) -> None:
        tasks = [task for _, task in self._jobs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self, spec: JobSpec) -> None:
        previous = self._store.snapshot().get(spec.key)
        state = JobState(
            job=spec.name, kind=spec.kind, interval=spec.interval, metrics=spec.metrics, label=spec.label,
            last_success=previous.last_success if previous else self._store.restored_last_success(spec.key),
            errors_total=previous.errors_total if previous else 0,
            skipped_total=previous.skipped_total if previous else 0,
        )
        delay = self._rng.uniform(0, min(spec.interval, self._max_start_delay))
        still_running: Future | None = None
        while True:
            state = replace(state, next_run=self._clock.time() + delay, running=False)
            self._store.publish(state)
            await self._clock.sleep(delay)
            if still_running is not None and not still_running.done():
                state = replace(state, skipped_total=state.skipped_total + 1)
                log.warning("run skipped, the previous one is still running job=%s kind=%s", spec.name, spec.kind)
                delay = spec.interval * self._jitter()
                continue
            self._store.publish(replace(state, running=True, next_run=None))
            result, still_running = await run_job(spec, self._pools[spec.pool], self._clock)
            state = self._settle(state, result)
            delay = backoff_delay(spec.interval, state.consecutive_failures) * self._jitter()

    def _jitter(self) -> float:
        return self._rng.uniform(1 - JITTER, 1 + JITTER)

    def _settle(self, state: JobState, result: Result) -> JobState:
        before = state.result
        if result.ok:
            if before is not None and not before.ok:
                log.info("recovered job=%s kind=%s", state.job, state.kind)
            return replace(state, result=result, consecutive_failures=0,
                           last_success=result.started_at + result.duration)
        level = logging.DEBUG if before is not None and before.error == result.error else logging.WARNING
        log.log(level, "collection failed job=%s kind=%s error=%r", state.job, state.kind, result.error)
        return replace(state, result=result, consecutive_failures=state.consecutive_failures + 1,
                       errors_total=state.errors_total + 1)


async def run_job(spec: JobSpec, executor: ThreadPoolExecutor, clock: Clock) -> tuple[Result, Future | None]:
    """One run, never raising: the Result, and the thread if it outlived its timeout."""
    started, start = clock.time(), clock.monotonic()
    pending: Future | None = None
    deadline = asyncio.timeout(spec.timeout)  # unlike wait_for on 3.11, never swallows a cancel
    try:
        async with deadline:
            if inspect.iscoroutinefunction(spec.collect):
                samples = await spec.collect()
            else:
                pending = executor.submit(spec.collect)
                waiting = asyncio.wrap_future(pending)
                waiting.add_done_callback(_consume)
                samples = await asyncio.shield(waiting)
        info = samples.info if isinstance(samples, Collected) else {}
        samples = _checked(samples.samples if isinstance(samples, Collected) else samples)
    except Exception as exc:  # any collector bug or device reply must not stop the job
        if deadline.expired():
            error = f"timed out after {format_duration(spec.timeout)}"
        else:
            log.debug("collection raised job=%s", spec.name, exc_info=True)
            error = describe(exc)
    else:
        return Result(spec.name, spec.kind, True, started, clock.monotonic() - start, samples, info=info), None
    result = Result(spec.name, spec.kind, False, started, clock.monotonic() - start, error=error)
    return result, pending if pending is not None and not pending.done() else None


def _checked(samples: Iterable[Sample]) -> tuple[Sample, ...]:
    samples = tuple(samples)
    for sample in samples:
        if not isinstance(sample, Sample):
            raise TypeError(f"collector returned {type(sample).__name__}, not Sample")
    return samples


def _consume(future: asyncio.Future) -> None:
    """Retrieve a late thread's outcome so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
