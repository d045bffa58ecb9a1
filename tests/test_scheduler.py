"""The scheduler: no target can hold up another, sessions live as long as their job, failures back off."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import pytest

from agent.clock import Clock
from agent.collector import LONG, TOOLS, Context, JobSpec
from agent.ratelimit import RateLimits
from agent.scheduler import Job, Runtime, Scheduler, Slots, backoff_delay, pool_sizes
from agent.statedb import StateDB
from agent.store import Store
from tests import fake_collectors as fakes
from tests.clocks import FakeClock


@pytest.fixture
def store(tmp_path):
    store = Store(StateDB(tmp_path))
    yield store
    store.close()


def scheduler(store, clock=None, **options) -> Scheduler:
    clock = clock or Clock()
    context = Context(clock, RateLimits(clock), Path("/nonexistent"), store.db)
    return Scheduler(store, context, clock=clock, max_start_delay=0, **options)


def spec(name, collector=fakes.Counting, interval=0.2, timeout=0.1, kind="test", **config):
    kind_name = collector.Config.model_fields["kind"].annotation.__args__[0]
    target = collector.Config.model_validate({"name": name, "kind": kind_name, **config})
    return JobSpec(name, kind, interval, timeout, lambda ctx: collector(target, ctx), collector, config=target)


def in_pool(collector: type, pool: str) -> type:
    """The test kind, taking its slots from another pool (as backup jobs declare theirs)."""
    return type(collector.__name__, (collector,), {"POOL": pool})


def instances(name: str) -> list:
    return [instance for instance in fakes.INSTANCES if instance.config.name == name]


@pytest.fixture(autouse=True)
def fresh_instances():
    fakes.INSTANCES.clear()
    fakes.RELEASE.clear()
    yield
    fakes.RELEASE.set()  # let stuck threads end


def test_more_hung_jobs_than_workers_never_delay_a_healthy_target(store):
    """Four blocking jobs hang for good with only two workers; the healthy one keeps its schedule."""
    runs: list[float] = []

    class Timed(fakes.Counting):
        def collect(self, out, due):
            runs.append(time.monotonic())
            super().collect(out, due)

    async def scenario():
        agent = scheduler(store, workers=2)
        agent.apply([spec("healthy", Timed)] + [spec(f"stuck-{n}", fakes.Hanging) for n in range(4)])
        await asyncio.sleep(2.0)
        await agent.stop(timeout=0)

    asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in zip(runs, runs[1:], strict=False)]
    drift = max(abs(gap - 0.2) for gap in gaps)
    print(f"healthy target: {len(runs)} runs in 2 s, gaps median {statistics.median(gaps):.3f} s, "
          f"worst drift {drift * 1000:.0f} ms")
    assert len(runs) >= 8, runs
    assert drift < 0.2, "a healthy target's run came more than one interval late"
    snapshot = store.snapshot()
    for n in range(4):
        stuck = snapshot[f"test:stuck-{n}"]
        assert not stuck.result.ok and stuck.result.error == "timed out after 100ms"
        assert stuck.skipped_total >= 1, "the still-running thread must make later runs skip"
        assert stuck.last_success is None


def test_a_hanging_async_collector_is_cancelled_at_its_timeout(store):
    fakes.Silent.cancelled = 0

    async def scenario():
        agent = scheduler(store)
        agent.apply([spec("healthy"), spec("silent", fakes.Silent)])
        await asyncio.sleep(1.0)
        await agent.stop()

    asyncio.run(scenario())
    assert instances("healthy")[0].runs >= 3
    assert fakes.Silent.cancelled >= 2, "the timeout must cancel the coroutine"
    assert store.snapshot()["test:silent"].skipped_total == 0  # a cancelled coroutine is not still running


def test_failures_become_reasons_and_back_off_up_to_8_intervals(store):
    clock = FakeClock()
    runs: list[float] = []

    class Refused(fakes.Failing):
        def collect(self, out, due):
            runs.append(clock.time())
            super().collect(out, due)

    async def scenario():
        agent = scheduler(store, clock, rng=random.Random(1))
        agent.apply([spec("ups", Refused, interval=60, timeout=10)])
        while len(runs) < 7:
            await asyncio.sleep(0.01)
        await agent.stop()

    asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in zip(runs, runs[1:], strict=False)]
    expected = [60, 120, 240, 480, 480, 480]
    assert all(abs(gap - want) <= want * 0.05 for gap, want in zip(gaps, expected, strict=False)), gaps
    state = store.snapshot()["test:ups"]
    assert state.result.error == "Connection refused"
    assert state.consecutive_failures >= 6 and state.errors_total == state.consecutive_failures


def test_backoff_delay():
    assert [backoff_delay(10, n) for n in range(7)] == [10, 10, 20, 40, 80, 80, 80]


def test_a_session_is_reused_across_runs_and_made_anew_after_a_failure(store, tmp_path):
    broken = tmp_path / "broken"

    async def scenario():
        agent = scheduler(store)
        agent.apply([spec("nas", fakes.Flaky, fail_when=broken)])
        await asyncio.sleep(0.5)
        broken.touch()
        await asyncio.sleep(0.3)
        broken.unlink()
        await asyncio.sleep(1.2)
        await agent.stop()

    asyncio.run(scenario())
    first, *later = instances("nas")
    assert first.opens == 1 and first.runs >= 2, "one session for many runs"
    assert first.closes == 1, "a failed run closes its session"
    assert later and all(i.opens == 1 and i.closes == 1 for i in later), "and the next run opens a new one"
    assert store.snapshot()["test:nas"].result.ok


def test_a_failing_job_keeps_its_last_good_series_and_when_they_left_metrics(store, tmp_path):
    """Prometheus keeps a failed poll's lost series and a rule's range (last_over_time) still reads
    them: the status page judges them too, from when the first failed run took them off /metrics."""
    broken = tmp_path / "broken"
    seen = {}

    async def until(check):
        while (state := store.snapshot().get("test:nas")) is None or state.result is None or not check(state):
            await asyncio.sleep(0.01)
        return state

    async def scenario():
        agent = scheduler(store)
        agent.apply([spec("nas", fakes.Flaky, fail_when=broken)])
        seen["good"] = await until(lambda state: state.result.ok)
        broken.touch()
        seen["first"] = await until(lambda state: state.consecutive_failures == 1)
        seen["second"] = await until(lambda state: state.consecutive_failures == 2)
        broken.unlink()
        seen["again"] = await until(lambda state: state.result.ok)
        await agent.stop()

    asyncio.run(scenario())
    assert seen["good"].last_good is None
    first, second = seen["first"], seen["second"]
    assert [sample.value for sample in first.last_good.samples] == [instances("nas")[0].runs]  # the last good run's
    assert first.last_good.gone_at == first.result.started_at + first.result.duration
    assert second.last_good == first.last_good, "gone since the first failed run, not the latest"
    assert seen["again"].last_good is None, "a good run exports its own series again"


def runs(job_spec: JobSpec, store, count: int, between=lambda run: None) -> list:
    """`count` runs of one job through the agent's run path, `between(n)` after run n."""
    clock = Clock()
    context = Context(clock, RateLimits(clock), Path("/nonexistent"), store.db)

    async def scenario():
        runtime = Runtime(clock, Slots(pool_sizes(2)))
        job = Job(job_spec, context)
        results = []
        for run in range(count):
            results.append(await job.run(runtime))
            between(run)
        await job.discard(runtime)
        return results

    return asyncio.run(scenario())


def test_a_kept_session_the_peer_closed_is_reopened_and_the_run_collects_once_more(store, tmp_path):
    dropped = tmp_path / "dropped"
    results = runs(spec("ups", fakes.Dropping, drop_when=dropped), store, 3,
                   lambda run: dropped.touch() if run == 0 else dropped.unlink(missing_ok=True))
    assert [result.ok for result in results] == [True, True, True], [result.error for result in results]
    first, second = instances("ups")
    assert (first.opens, first.runs, first.closes) == (1, 1, 1), "the closed session is closed on our side too"
    assert (second.opens, second.runs) == (1, 2), "the run collects once on a new one, which stays"
    assert [sample.value for sample in results[1].samples] == [1]  # the new session's samples alone


def test_a_peer_that_is_really_down_fails_the_run_once_with_its_own_reason(store, tmp_path):
    dropped, down = tmp_path / "dropped", tmp_path / "down"
    results = runs(spec("ups", fakes.Dropping, drop_when=dropped, down_when=down), store, 2,
                   lambda run: (dropped.touch(), down.touch()))
    assert results[0].ok and not results[1].ok
    assert results[1].error == "Connection refused"
    assert [instance.opens for instance in instances("ups")] == [1, 1], "one new session tried, not more"


def test_a_session_lost_again_on_the_new_session_fails_the_run_without_a_second_retry(store, tmp_path):
    dropped = tmp_path / "dropped"
    results = runs(spec("ups", fakes.Dropping, drop_when=dropped, fresh_too=True), store, 2,
                   lambda run: dropped.touch())
    assert results[0].ok and not results[1].ok
    assert results[1].error == "the peer closed the session"
    assert len(instances("ups")) == 2


def test_reload_keeps_unchanged_instances_closes_changed_and_removed_ones(store):
    async def scenario():
        agent = scheduler(store)
        agent.apply([spec("keep", interval=10), spec("change", interval=10), spec("drop", interval=10)])
        await asyncio.sleep(0.2)
        agent.apply([spec("keep", interval=10), spec("change", interval=5)])
        await asyncio.sleep(0.2)
        assert len(fakes.INSTANCES) == 4, "a reload with an unchanged job builds nothing new"
        agent.apply([spec("keep", interval=10), spec("change", interval=5)])
        await asyncio.sleep(0.2)
        counts = {name: [(i.opens, i.closes, i.runs) for i in instances(name)] for name in ("keep", "change", "drop")}
        await agent.stop()
        return counts

    counts = asyncio.run(scenario())
    assert counts["keep"] == [(1, 0, 1)], "unchanged: the same instance, its session open"
    assert counts["change"] == [(1, 1, 1), (1, 0, 1)], "changed: the old one closed, a new one runs at once"
    assert counts["drop"] == [(1, 1, 1)], "removed: closed"
    assert "test:drop" not in store.snapshot()
    assert [(i.opens, i.closes) for i in fakes.INSTANCES if i.config.name != "drop"][-2:] == [(1, 1), (1, 1)], \
        "stop closes every instance"


def test_a_slow_signal_runs_on_its_own_interval_and_is_re_emitted_between(store, tmp_path):
    forbidden = tmp_path / "forbidden"
    clock = FakeClock()

    async def run_for(seconds: float, agent) -> None:
        end = clock.time() + seconds
        while clock.time() < end:
            await asyncio.sleep(0.001)

    async def scenario():
        agent = scheduler(store, clock, rng=random.Random(1))
        agent.apply([spec("srv", fakes.Slow, interval=60, timeout=10, fail_when=forbidden)])
        await run_for(600, agent)  # ten runs inside the slow signal's hour
        state = store.snapshot()["test:srv"]
        between = (instances("srv")[0].runs, instances("srv")[0].slow_runs, state.result)
        await run_for(3000, agent)  # past the hour: due again
        after_hour = instances("srv")[0].slow_runs
        forbidden.touch()
        await run_for(4000, agent)
        failed = store.snapshot()["test:srv"].result
        await agent.stop()
        return between, after_hour, failed

    (runs, slow_runs, result), after_hour, failed = asyncio.run(scenario())
    assert runs >= 9 and slow_runs == 1, "the slow signal ran once in ten runs"
    values = {s.name: s.value for s in result.samples}
    assert values["vigil_test_ticks"] >= 9 and values["vigil_test_slow_ticks"] == 1, "re-emitted between its runs"
    updates = {s.name: s for s in result.signals}["updates"]
    assert updates.ok and not updates.fresh and updates.last_success < result.started_at - 500
    assert after_hour == 2
    assert failed.ok, "a failing slow signal does not fail the job"
    assert [s.name for s in failed.samples] == ["vigil_test_ticks"], "its stale data is dropped"
    assert {s.name: (s.ok, s.error) for s in failed.signals}["updates"] == (False, "PermissionError: 403 Forbidden")


def test_a_slow_signal_keeps_its_interval_when_the_wall_clock_steps_back(store, fault_report):
    """"Due" is measured on the monotonic clock: a wall clock set back a day delays nothing."""
    clock = FakeClock()

    async def run_for(seconds: float) -> None:
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            await asyncio.sleep(0.001)

    async def scenario():
        agent = scheduler(store, clock, rng=random.Random(1))
        agent.apply([spec("srv", fakes.Slow, interval=60, timeout=10)])
        await run_for(600)
        stepped_at = clock.time()
        clock.step(-86400)
        await run_for(7200)  # two more hours: two more runs of the hourly signal
        result = store.snapshot()["test:srv"].result
        await agent.stop()
        return instances("srv")[0].slow_runs, result, stepped_at

    slow_runs, result, stepped_at = asyncio.run(scenario())
    fault_report(fault="wall clock stepped back 1 day", expected="an hourly signal runs twice in 2 h",
                 observed=f"{slow_runs - 1} runs in 2 h after the step")
    assert slow_runs == 3, f"the hourly signal ran {slow_runs - 1} times in the two hours after the step"
    updates = {s.name: s for s in result.signals}["updates"]
    assert updates.last_success < stepped_at - 86400 + 7200, "its timestamp is still wall time"


def test_busy_backup_checks_never_keep_a_collector_waiting(store):
    async def scenario():
        agent = scheduler(store, workers=4)
        agent.apply([spec("healthy")] + [spec(f"backup-{n}", in_pool(fakes.Hanging, TOOLS), kind="backup")
                                         for n in range(12)])
        await asyncio.sleep(1.5)
        await agent.stop(timeout=0)

    asyncio.run(scenario())
    assert instances("healthy")[0].runs >= 5
    assert all(not store.snapshot()[f"backup:backup-{n}"].result.ok for n in range(12))


def test_a_kind_s_concurrency_limit_bounds_its_runs(store):
    running, peak = 0, 0

    class Limited(fakes.Counting):
        CONCURRENCY = 2

        async def collect(self, out, due):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            out.gauge(fakes.TICKS, 1)

    async def scenario():
        agent = scheduler(store)
        agent.apply([spec(f"ups-{n}", Limited, interval=0.3, timeout=0.25) for n in range(6)])
        await asyncio.sleep(0.6)
        await agent.stop()

    asyncio.run(scenario())
    assert peak == 2
    assert all(store.snapshot()[f"test:ups-{n}"].result.ok for n in range(6)), "waiting for a slot is not a timeout"


def test_jobs_waiting_for_their_kind_s_limit_hold_no_worker(store):
    """Four jobs of a kind limited to one, two workers: a job of another kind still gets a worker.

    A job that held a worker while it queued for its kind's slot would leave none: with 50
    vCenters (4 at a time) and 16 workers, hosts and UPS units waited a whole cycle.
    """
    release = asyncio.Event()  # binds to the loop that first waits on it

    class Narrow(fakes.Counting):
        CONCURRENCY = 1

        async def collect(self, out, due):
            await release.wait()
            out.gauge(fakes.TICKS, 1)

    async def scenario():
        agent = scheduler(store, workers=2)
        agent.apply([*(spec(f"vc-{n}", Narrow, kind="narrow", interval=60, timeout=30) for n in range(4)),
                     spec("host", interval=60, timeout=30)])
        try:
            async with asyncio.timeout(5):
                while store.snapshot()["test:host"].result is None:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pytest.fail("the host job got no worker while the narrow kind's jobs queued for their slot")
        finally:
            release.set()
            await agent.stop()

    asyncio.run(scenario())
    assert store.snapshot()["test:host"].result.ok


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


def test_a_hung_integrity_check_leaves_the_others_running(store):
    """Checks of different repositories run side by side, bounded; one stuck for hours delays none."""
    async def scenario():
        agent = scheduler(store, workers=8)
        agent.apply([spec("stuck-check", in_pool(fakes.Hanging, LONG), kind="backup_verify", timeout=30),
                     spec("other-check", in_pool(fakes.Counting, LONG), kind="backup_verify")])
        await asyncio.sleep(1.0)
        await agent.stop(timeout=0)

    asyncio.run(scenario())
    assert instances("other-check")[0].runs >= 3
    assert store.snapshot()["backup_verify:stuck-check"].running
