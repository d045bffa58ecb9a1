"""The scheduler: no target can hold up another, failures back off, skips are counted."""

from __future__ import annotations

import asyncio
import random

import pytest

from agent.model import Sample
from agent.ratelimit import RateLimits
from agent.scheduler import JobSpec, Scheduler, backoff_delay
from agent.statedb import StateDB
from agent.store import Store
from tests import fake_collectors
from tests.clocks import FakeClock


@pytest.fixture
def store(tmp_path):
    store = Store(StateDB(tmp_path))
    yield store
    store.close()


def spec(name, collect, interval=0.2, timeout=0.1):
    return JobSpec(name, "test", interval, timeout, collect, (fake_collectors.TICKS,))


def test_a_hanging_collector_does_not_delay_another_target(store):
    healthy = fake_collectors.Counting(None)
    hanging = fake_collectors.Hanging(None)

    async def scenario():
        scheduler = Scheduler(store, workers=4, max_start_delay=0)
        scheduler.apply([spec("healthy", healthy.collect), spec("stuck", hanging.collect)])
        await asyncio.sleep(2.0)
        await scheduler.stop()

    fake_collectors.RELEASE.clear()
    try:
        asyncio.run(scenario())
    finally:
        fake_collectors.RELEASE.set()  # let the stuck thread end
    snapshot = store.snapshot()
    # every 0.2 s for 2 s is about 10 runs; the stuck neighbour must not eat into them
    assert healthy.runs >= 7, healthy.runs
    assert snapshot["test:healthy"].result.ok and snapshot["test:healthy"].consecutive_failures == 0
    stuck = snapshot["test:stuck"]
    assert not stuck.result.ok and stuck.result.error == "timed out after 100ms"
    assert stuck.skipped_total >= 1, "the still-running thread must make later runs skip"
    assert stuck.last_success is None


def test_a_hanging_async_collector_is_cancelled_at_its_timeout(store):
    healthy = fake_collectors.Counting(None)
    cancelled = []

    async def never_answers():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario():
        scheduler = Scheduler(store, max_start_delay=0)
        scheduler.apply([spec("healthy", healthy.collect), spec("silent", never_answers)])
        await asyncio.sleep(1.0)
        await scheduler.stop()

    asyncio.run(scenario())
    assert healthy.runs >= 3
    assert cancelled, "the timeout must cancel the coroutine"
    assert store.snapshot()["test:silent"].skipped_total == 0  # a cancelled coroutine is not still running


def test_failures_become_reasons_and_back_off_up_to_8_intervals(store):
    clock = FakeClock()
    runs: list[float] = []

    async def refused():
        runs.append(clock.time())
        raise ConnectionRefusedError(111, "Connection refused")

    async def scenario():
        scheduler = Scheduler(store, clock=clock, rng=random.Random(1), max_start_delay=0)
        scheduler.apply([spec("ups", refused, interval=60, timeout=10)])
        while len(runs) < 7:
            await asyncio.sleep(0)
        await scheduler.stop()

    asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in zip(runs, runs[1:], strict=False)]
    expected = [60, 120, 240, 480, 480, 480]
    assert all(abs(gap - want) <= want * 0.05 for gap, want in zip(gaps, expected, strict=False)), gaps
    state = store.snapshot()["test:ups"]
    assert state.result.error == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert state.consecutive_failures >= 6 and state.errors_total == state.consecutive_failures


def test_backoff_delay():
    assert [backoff_delay(10, n) for n in range(7)] == [10, 10, 20, 40, 80, 80, 80]


def test_a_collector_returning_garbage_fails_cleanly(store):
    async def garbage():
        return [Sample("vigil_test_ticks", 1), {"not": "a sample"}]

    async def scenario():
        scheduler = Scheduler(store, max_start_delay=0)
        scheduler.apply([spec("odd", garbage)])
        await asyncio.sleep(0.1)
        await scheduler.stop()

    asyncio.run(scenario())
    assert store.snapshot()["test:odd"].result.error == "TypeError: collector returned dict, not Sample"


def test_reload_keeps_unchanged_jobs_restarts_changed_and_drops_removed(store):
    async def scenario():
        scheduler = Scheduler(store, max_start_delay=0)
        keep, change, drop = (fake_collectors.Counting(None) for _ in range(3))
        scheduler.apply([spec("keep", keep.collect, interval=10), spec("change", change.collect, interval=10),
                         spec("drop", drop.collect, interval=10)])
        await asyncio.sleep(0.2)
        tasks = {name: task for name, (_, task) in scheduler._jobs.items()}
        scheduler.apply([spec("keep", keep.collect, interval=10), spec("change", change.collect, interval=5)])
        await asyncio.sleep(0.2)
        after = {name: task for name, (_, task) in scheduler._jobs.items()}
        await scheduler.stop()
        return tasks, after, keep, change

    tasks, after, keep, change = asyncio.run(scenario())
    assert set(after) == {"test:keep", "test:change"} and "test:drop" not in store.snapshot()
    assert after["test:keep"] is tasks["test:keep"] and keep.runs == 1
    assert after["test:change"] is not tasks["test:change"] and tasks["test:change"].cancelled()
    assert change.runs == 2, "a changed job runs again at once with its new settings"


def test_a_shared_budget_paces_every_job_that_spends_it():
    clock = FakeClock()
    limits = RateLimits(clock)

    async def caller():
        bucket = limits.bucket("meraki:org-1", rate=5)
        for _ in range(10):
            await bucket.acquire()

    async def scenario():
        await asyncio.gather(caller(), caller())

    asyncio.run(scenario())
    # 20 calls at 5/s with a burst of 5: the 15 beyond the burst need 3 s
    assert clock.elapsed == pytest.approx(3.0)
    assert limits.bucket("meraki:org-1", rate=5) is limits.bucket("meraki:org-1", rate=99)


def test_busy_backup_checks_never_keep_a_collector_waiting_for_a_thread(store):
    healthy = fake_collectors.Counting(None)
    backups = [fake_collectors.Hanging(None) for _ in range(12)]  # far more than the backup pool's threads

    async def scenario():
        scheduler = Scheduler(store, workers=4, max_start_delay=0)
        scheduler.apply([spec("healthy", healthy.collect)] + [
            JobSpec(f"backup-{n}", "backup", 0.2, 0.1, job.collect, pool="backup") for n, job in enumerate(backups)])
        await asyncio.sleep(1.5)
        await scheduler.stop()

    fake_collectors.RELEASE.clear()
    try:
        asyncio.run(scenario())
    finally:
        fake_collectors.RELEASE.set()
    assert healthy.runs >= 5, healthy.runs
    assert all(not store.snapshot()[f"backup:backup-{n}"].result.ok for n in range(12))
