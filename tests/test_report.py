"""`vigil report backups`: the monthly summary from the history."""

from __future__ import annotations

import csv
import io

from agent.cli import main
from agent.statedb import StateDB
from checks.history import BackupHistory
from checks.model import VerifyOutcome
from checks.schedule import Schedule

DAY = 86400.0


def test_report_counts_each_night_from_the_history(write_config, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_SECRET", "s3cret")
    config = write_config("""
state_dir: {state}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: UTC
    deadline: 4h
    primary: {kind: restic, repository: /srv/restic, password: "${env:VIGIL_TEST_SECRET}"}
""")
    import time

    now = time.time()
    db = StateDB(tmp_path / "state")
    history = BackupHistory(db, "fileserver-nightly")
    windows = Schedule("0 1 * * *", "UTC", 4 * 3600).windows(now - 10 * DAY, now)
    statuses = ["ok"] * 6 + ["missed", "failed", "offsite_stale"]  # and one night unseen
    for window, status in zip(windows, statuses, strict=False):
        history.record_window(window.start, status, 3600.0 if status == "ok" else 50400.0, window.deadline)
    history.record_verification("primary", now - DAY, VerifyOutcome(True, "restic check: no errors"))
    db.close()

    assert main(["report", "backups", "-c", str(config), "--days", "10", "--format", "csv"]) == 0
    header, row = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header[:7] == ["backup job", "runs", "ok", "missed", "failed", "other problem", "not seen"]
    assert row[:7] == ["fileserver-nightly", str(len(windows)), "6", "1", "1", "1", str(len(windows) - 9)]
    assert row[7] == "14h" and row[8].endswith(" ok")

    assert main(["report", "backups", "-c", str(config), "--days", "10", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("## Backups, last 10 days") and "| fileserver-nightly | " in markdown

    assert main(["report", "backups", "-c", str(config), "--days", "10"]) == 0
    assert "fileserver-nightly" in capsys.readouterr().out
