"""SIGKILL and SIGTERM at random moments, with a job of every kind running: the database
is never moved aside and no row visible before a stop is missing after it.

One set of peers for every stop (tests/every_kind.py); VIGIL_STOPS (default 50) sets how
many stops of each signal. The stops land anywhere: while the agent opens its sessions,
in the middle of collections and backup checks, while the store writes.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time

import pytest

from agent.statedb import FILENAME, StateDB
from tests.every_kind import lab  # noqa: F401 (a fixture)
from tests.lab.harness import free_port, wait_until
from tests.test_durability import STOPS, rows


def last_successes(state) -> dict[str, float]:
    """Each job's last success in the file, read without writing."""
    db = StateDB.private_copy(state)
    try:
        return db.last_successes()
    finally:
        db.close()


def succeeded(state) -> set[str]:
    """The jobs with a last success in the file."""
    return {key.partition(":")[2] for key in last_successes(state)}


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 0)],
                         ids=["SIGKILL", "SIGTERM"])
def test_stops_at_random_moments_lose_no_row(
        lab, start_agent, write_config, tmp_path, fault_report, signum, exit_code):  # noqa: F811 (a fixture)
    state = tmp_path / "state"
    config = write_config(lab.config(state, free_port()))
    rng = random.Random(signum)
    kept: set[tuple] = set()
    newest: dict[str, float] = {}
    took: list[float] = []
    for attempt in range(STOPS):
        started = time.monotonic()
        agent = start_agent(config, env=lab.env)
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.peer.process.wait(rng.uniform(0.0, 3.0))
        agent.peer.signal(signum)
        assert agent.peer.process.wait(15) == exit_code, agent.peer.output()[-3000:]
        log = agent.peer.output()
        assert "moved aside" not in log and "damaged" not in log, f"stop {attempt}:\n{log[-3000:]}"
        assert not list(state.glob(f"{FILENAME}.corrupt-*")), f"stop {attempt} moved the database aside"
        now, times = rows(state), last_successes(state)
        assert kept <= now, f"stop {attempt} lost {sorted(kept - now)[:5]}"
        went_back = {job for job, when in newest.items() if times[job] < when}
        assert not went_back, f"stop {attempt} lost the newest last success of {sorted(went_back)}"
        kept, newest = now, times
        took.append(time.monotonic() - started)
    agent = start_agent(config, env=lab.env)  # the stops were of working jobs: each succeeds, and is kept
    wait_until(lambda: set(lab.jobs) <= succeeded(state), 60, "a success of every job")
    agent.peer.signal(signum)
    assert agent.peer.process.wait(15) == exit_code
    assert kept <= rows(state) and set(lab.jobs) <= succeeded(state)
    name = signal.Signals(signum).name
    fault_report(fault=f"{name} at random moments, every kind, x{STOPS}",
                 expected="database never moved aside, no row lost",
                 observed=f"{len(kept)} rows kept, none lost, {sum(took) / len(took):.1f}s per cycle",
                 recovered_in=None, lost=0)
