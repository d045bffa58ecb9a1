"""The agent's history survives being stopped at any moment, and `vigil once` beside it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

from agent.statedb import FILENAME
from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import wait_until

FAKE_RESTIC = Path(__file__).parent / "data" / "fake-restic"
KEYS = {"job_success": "job", "backup_observations": "job, location, backup_id",
        "backup_windows": "job, window_start"}
STOPS = int(os.environ.get("VIGIL_STOPS", "50"))


def backup_job(name: str, delay: str = "0.3") -> str:
    return f"""
  - name: {name}
    schedule: "0 1 * * *"
    timezone: UTC
    deadline: 4h
    interval: 1s
    timeout: 800ms
    primary: {{kind: restic, repository: /srv/{name}, password: "${{file:{FAKE_RESTIC}}}", binary: {FAKE_RESTIC},
              env: {{FAKE_RESTIC_DELAY: "{delay}"}}}}
"""


def rows(state: Path) -> set[tuple]:
    """Every row of the history tables, read without writing."""
    db = sqlite3.connect(f"file:{state / FILENAME}?mode=ro", uri=True)
    try:
        return {(table, *row) for table, key in KEYS.items()
                for row in db.execute(f"SELECT {key} FROM {table}")}  # noqa: S608
    finally:
        db.close()


def test_stopping_in_the_middle_of_evaluations_never_loses_a_row(start_agent, write_config):
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\nbackups:\n"
                          + "".join(backup_job(f"job{n}", delay) for n, delay in
                                    enumerate(("0.05", "0.1", "0.2", "0.3"))))
    state = config.parent / "state"
    rng = random.Random(7)
    kept: set[tuple] = set()
    mid_run = 0  # stops that found a restic call running (the evaluation in flight)
    for attempt in range(STOPS):
        agent = start_agent(config)
        try:
            agent.peer.process.wait(rng.uniform(0.2, 2.0))
        except subprocess.TimeoutExpired:
            pass
        agent.peer.signal(signal.SIGTERM)
        assert agent.peer.process.wait(15) == 0, agent.peer.output()[-2000:]
        log = agent.peer.output()
        mid_run += "running call(s)" in log or "child process group(s)" in log
        assert "moved aside" not in log and "damaged" not in log, f"stop {attempt}:\n{log[-3000:]}"
        assert not list(state.glob(f"{FILENAME}.corrupt-*")), f"stop {attempt} moved the database aside"
        now = rows(state)
        assert kept <= now, f"stop {attempt} lost {sorted(kept - now)[:5]}"
        kept = now
    print(f"{mid_run} of {STOPS} stops came in the middle of an evaluation")
    assert mid_run >= STOPS // 5
    assert len({row[1] for row in kept if row[0] == "job_success"}) == 4
    assert sum(row[0] == "backup_observations" for row in kept) > 4 * 3


def test_once_beside_a_running_agent_leaves_its_history_alone(start_agent, write_config, tmp_path):
    pids = tmp_path / "pids"
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\nbackups:\n" + backup_job("nightly", "0.05"))
    state = config.parent / "state"
    agent = start_agent(config)
    wait_until(lambda: sum(row[0] == "backup_observations" for row in rows(state)) >= 3, 20, "some history")
    before = rows(state)
    # 0.6 s per restic call: the answer comes within the run's 800ms or the location is judged unreachable just
    # before; 5 s: restic outlives the run (unreachable) and `once`, which must end it
    for delay in ("0.6", "5"):
        slow = write_config(config.read_text().replace(
            'FAKE_RESTIC_DELAY: "0.05"', f'FAKE_RESTIC_DELAY: "{delay}", FAKE_RESTIC_PIDS: {pids}'), name="slow.yaml")
        done = subprocess.run(vigil_argv("once", "-c", str(slow)), capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
        assert "no answer after" in done.stdout or delay == "0.6", done.stdout + done.stderr
        assert "timed out" not in done.stdout, done.stdout + done.stderr
        assert "moved aside" not in done.stderr, done.stderr
        assert not alive(pids), "`vigil once` left restic running"
    assert agent.peer.alive()
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(15) == 0
    assert "moved aside" not in agent.peer.output()
    assert before <= rows(state)
    assert not list(state.glob(f"{FILENAME}.corrupt-*"))


def alive(pids: Path) -> list[str]:
    """The fake restic calls (`PID command`) whose process still exists."""
    survivors = []
    for line in pids.read_text().splitlines() if pids.exists() else ():
        pid, _, command = line.partition(" ")
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        survivors.append(line)
    return survivors


def test_a_stop_during_a_hung_check_leaves_no_child(start_agent, write_config, tmp_path):
    pids, hang = tmp_path / "pids", tmp_path / "hang"
    hang.touch()
    job = backup_job("nightly", "0.05").replace(
        'FAKE_RESTIC_DELAY: "0.05"', f'FAKE_RESTIC_DELAY: "0.05", FAKE_RESTIC_PIDS: {pids}, FAKE_RESTIC_HANG: {hang}')
    agent = start_agent(write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\nbackups:\n" + job
                                     + "    verify: {every: 1s, timeout: 1h, schedule: \"* * * * *\"}\n"))
    try:
        wait_until(lambda: any(line.endswith(" check") for line in alive(pids)), 20, "a hung restic check")
        agent.peer.signal(signal.SIGTERM)
        assert agent.peer.process.wait(15) == 0
        wait_until(lambda: not alive(pids), 5, "no fake restic left")
    finally:
        hang.unlink()  # a survivor would end by itself
    assert "stopped 1 child process group" in agent.peer.output()


def test_stopping_real_restic_jobs_keeps_their_history_and_repositories(start_agent, write_config, tmp_path,
                                                                      monkeypatch):
    """The issue's own case: a few restic jobs, SIGTERM a few seconds after start, again and again."""
    from tests.lab.backup_tools import PASSWORD, ResticRepo

    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    repos = [ResticRepo(tmp_path, f"repo{n}") for n in range(3)]
    for repo in repos:
        repo.backup()
    jobs = "".join(f"""
  - name: job{n}
    schedule: "0 1 * * *"
    timezone: UTC
    deadline: 4h
    interval: 3s
    timeout: 2500ms
    primary: {{kind: restic, repository: {repo.repository}, password: "${{env:VIGIL_TEST_RESTIC}}"}}
""" for n, repo in enumerate(repos))
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\nbackups:\n" + jobs)
    state = config.parent / "state"
    rng = random.Random(3)
    kept: set[tuple] = set()
    for attempt in range(5):
        agent = start_agent(config)
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.peer.process.wait(rng.uniform(1.0, 3.0))
        agent.peer.signal(signal.SIGTERM)
        assert agent.peer.process.wait(15) == 0
        assert "moved aside" not in agent.peer.output(), f"stop {attempt}"
        now = rows(state)
        assert kept <= now, f"stop {attempt} lost {sorted(kept - now)[:5]}"
        kept = now
    assert not list(state.glob(f"{FILENAME}.corrupt-*"))
    assert {row[1] for row in kept if row[0] == "backup_observations"} == {"job0", "job1", "job2"}
    for repo in repos:
        repo.run("check")  # a restic killed in the middle left no lock and no damage
