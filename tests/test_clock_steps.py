"""Steps of the wall clock (`date -s`, an NTP step, a wrong time server) while vigil runs.

vigil tells a step from time passing with the monotonic clock: a slow signal stays due on
monotonic time, and a backup window that only a clock stepped forward says has closed is
not judged (and not recorded) until that time has really passed. What vigil cannot tell
is unknown, never a failure.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.collector import Emitter
from checks.config import BackupJobConfig
from checks.job import BackupEvaluation
from checks.report import backup_report
from tests.clocks import FakeClock
from tests.kinds.ssh.fixtures import ssh_target
from tests.lab.harness import wait_until

DAY = 86400.0


def at(when: str) -> float:
    return datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


def nightly(dumps: Path) -> BackupJobConfig:
    return BackupJobConfig.model_validate({"name": "db-nightly", "schedule": "0 1 * * *", "timezone": "UTC",
                                           "deadline": "4h", "primary": {"kind": "files", "path": str(dumps)}})


def dump(dumps: Path, when: str) -> None:
    path = dumps / f"db-{when[:10]}.sql.gz"
    path.write_bytes(b"dump")
    os.utime(path, (at(when), at(when)))


def status(evaluation: BackupEvaluation) -> str:
    out = Emitter(evaluation.METRICS, strict=True)
    evaluation.collect(out, frozenset({"main"}))
    return out.verdict.status


def windows(context) -> list[tuple[str, str]]:
    rows = context.db.query("SELECT window_start, status FROM backup_windows ORDER BY window_start")
    return [(datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M"), verdict) for start, verdict in rows]


@pytest.fixture
def dumps(tmp_path) -> Path:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    dump(dumps, "2026-11-20 01:10")
    return dumps


def test_a_clock_stepped_forward_a_day_judges_no_window_that_has_not_passed(dumps, context, caplog, fault_report):
    """The issue's repro: +1 day for a few seconds, then corrected back."""
    caplog.set_level(logging.INFO, logger="agent.clock")
    clock = FakeClock()
    context = replace(context, clock=clock)
    evaluation = BackupEvaluation(nightly(dumps), context)
    clock.set("2026-11-20 06:00")
    assert status(evaluation) == "ok"

    clock.advance(60)
    clock.step(DAY)  # the night of the 21st has "passed", with no backup in it
    seen = [status(evaluation)]
    clock.advance(7)
    seen.append(status(evaluation))
    clock.advance(7)
    clock.step(-DAY)  # corrected
    seen.append(status(evaluation))

    dump(dumps, "2026-11-21 01:10")  # the night of the 21st comes, is seen, and the agent stops
    clock.set("2026-11-21 02:00")
    seen.append(status(evaluation))
    report = backup_report(context.db, (nightly(dumps),), at("2026-11-22 00:00"), 3)[0]
    fault_report(fault="wall clock +1 day for 14 s", expected="no missed: live, in history or report",
                 observed=f"{'/'.join(seen)}; windows {windows(context)}")
    assert seen == ["ok", "ok", "ok", "ok"], "a window the agent has not lived through is not judged"
    assert windows(context) == [("2026-11-20 01:00", "ok")], "nothing recorded for the night of the 21st"
    night = next(night for night in report.nights if night.start == at("2026-11-21 01:00"))
    assert (night.status, night.reconstructed) == ("ok", True), "the report judges that night by its backup"
    steps = [r.getMessage() for r in caplog.records if "wall clock" in r.getMessage()]
    assert len(steps) == 2 and "stepped forward by=1d measured=1m" in steps[0] and "back in step" in steps[1], steps


def test_a_step_forward_that_holds_an_hour_is_believed(dumps, context):
    """A clock that was wrong before and is right now (NTP would have corrected a wrong step by then):
    a backup really missed is reported an hour late at most, never hidden."""
    clock = FakeClock()
    context = replace(context, clock=clock)
    evaluation = BackupEvaluation(nightly(dumps), context)
    clock.set("2026-11-20 06:00")
    assert status(evaluation) == "ok"

    clock.step(DAY)
    assert status(evaluation) == "ok"
    clock.advance(3600)
    assert status(evaluation) == "missed"
    assert windows(context) == [("2026-11-20 01:00", "ok"), ("2026-11-21 01:00", "missed")]


def test_a_clock_stepped_back_rewrites_no_night_already_judged(dumps, context, fault_report):
    """Stepped back a day, the night before is the last closed one again, and the backup made since
    would make it look ok: its verdict was final once the next night had one."""
    clock = FakeClock()
    evaluation = BackupEvaluation(nightly(dumps), replace(context, clock=clock))
    clock.set("2026-11-21 06:00")
    assert status(evaluation) == "missed"
    dump(dumps, "2026-11-22 01:10")
    clock.set("2026-11-22 06:00")
    assert status(evaluation) == "ok"

    clock.step(-DAY)
    status(evaluation)
    fault_report(fault="wall clock -1 day after a missed night", expected="the missed night stays missed",
                 observed=f"windows {windows(context)}")
    assert windows(context) == [("2026-11-21 01:00", "missed"), ("2026-11-22 01:00", "ok")]


def scraped(agent, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(agent.metrics()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


def test_the_agent_process_survives_steps_of_its_wall_clock(ssh_server, tmp_path, write_config, start_agent,
                                                            fault_report):
    """`vigil run` with its wall clock stepped (tests/run_agent.py): +1 day and back, then -1 day."""
    step = tmp_path / "wall-step"
    step.write_text("0")
    next_start = math.ceil((time.time() + 2 * 3600) / 60) * 60  # the next run of the backup is 2 h away
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "db.sql.gz").write_bytes(b"dump")
    os.utime(dumps / "db.sql.gz", (next_start - DAY + 600, next_start - DAY + 600))  # the last run's
    hour, minute = time.gmtime(next_start)[3:5]
    config = {"listen": "127.0.0.1:{port}", "state_dir": "{state}",
              "targets": [ssh_target(ssh_server, name="win1", os="windows", interval="1s", updates_every="3s")],
              "backups": [{"name": "db", "schedule": f"{minute} {hour} * * *", "timezone": "UTC", "deadline": "1h",
                           "interval": "1s", "primary": {"kind": "files", "path": str(dumps)}}]}
    agent = start_agent(write_config(yaml.safe_dump(config)), env={"VIGIL_TEST_WALL_STEP": str(step)},
                        test_kinds=True)

    def evaluated(after: float, before: float = math.inf) -> str | None:
        """The backup job's status, once it was last evaluated at a wall time between `after` and `before`."""
        if after < (scraped(agent, "vigil_last_success_timestamp_seconds", backup="db") or 0) < before:
            return next(status for status in ("ok", "missed", "unreachable")
                        if scraped(agent, "vigil_backup_status", backup="db", status=status) == 1)
        return None

    assert wait_until(lambda: evaluated(0), 20, "a first evaluation") == "ok"
    step.write_text(str(DAY))
    stepped = wait_until(lambda: evaluated(time.time() + DAY / 2), 20, "an evaluation at the stepped time")
    step.write_text("0")
    corrected = wait_until(lambda: evaluated(time.time() - 60, time.time() + 60), 20,
                           "an evaluation after the correction")
    with sqlite3.connect(f"file:{tmp_path / 'state' / 'vigil.db'}?mode=ro", uri=True) as db:
        recorded = [start for (start,) in db.execute("SELECT window_start FROM backup_windows")]
    fault_report(fault="vigil run, wall clock +1 day and back", expected="ok throughout; no future window recorded",
                 observed=f"{stepped} then {corrected}; windows recorded {len(recorded)}, future "
                          f"{sum(start >= next_start for start in recorded)}")
    assert (stepped, corrected) == ("ok", "ok")
    assert recorded == [next_start - DAY], "only the window that really closed"

    def inventory_at() -> float | None:
        return scraped(agent, "vigil_collect_signal_timestamp_seconds", target="win1", signal="inventory")

    ran_before = inventory_at()
    step.write_text(str(-DAY))
    try:
        wait_until(lambda: (inventory_at() or 0) < time.time() - DAY / 2, 30, "the inventory after the step")
        observed = "ran again"
    finally:
        fault_report(fault="vigil run, wall clock -1 day: ssh inventory every 3s",
                     expected="the inventory runs on", observed=locals().get("observed", "never ran again"))
    assert ran_before and ran_before > time.time() - 60
    wait_until(lambda: "wall clock stepped back by=1d" in agent.peer.output(), 10, "the step back logged")
