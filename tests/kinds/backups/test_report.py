"""`vigil report backups`: the monthly summary from the history, nights reconstructed where unwatched."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time

import pytest

from agent.cli import main
from agent.statedb import FILENAME, StateDB
from checks.history import BackupHistory
from checks.model import BackupSnapshot, VerifyOutcome
from checks.schedule import Schedule

DAY = 86400.0
CONFIG = """
state_dir: {state}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: Europe/Brussels
    deadline: 4h
    primary: {kind: restic, repository: /srv/restic, password: "${env:VIGIL_TEST_SECRET}"}
"""


@pytest.fixture
def ten_nights(write_config, tmp_path, monkeypatch):
    """Ten nights: three before vigil watched (two in the restic listing, one gap), then seven watched."""
    monkeypatch.setenv("VIGIL_TEST_SECRET", "s3cret")
    config = write_config(CONFIG)
    now = time.time()
    windows = Schedule("0 1 * * *", "Europe/Brussels", 4 * 3600).windows(now - 10 * DAY, now)
    db = StateDB(tmp_path / "state")
    history = BackupHistory(db, "fileserver-nightly")
    # the restic listing when vigil first saw the job: backups of nights 0 and 2, not of night 1
    listed = [BackupSnapshot(f"snap{n}", windows[n].start + 1800) for n in (0, 2)]
    history.record("primary", listed, {}, windows[3].start)
    watched = ["ok", "ok", "ok", "missed", "failed", "offsite_stale", "ok"]
    details = {"missed": "no backup completed since the run due at 01:00", "failed": "restic: repository locked",
               "offsite_stale": "off-site copy is 14h behind"}
    for window, status in zip(windows[3:], watched, strict=False):
        history.record_window(window.start, status, 3600.0 if status == "ok" else 50400.0, window.deadline,
                              details.get(status, ""))
    history.record_verification("primary", now - DAY, VerifyOutcome(True, "restic check: no errors"))
    db.close()
    return config, windows


def report(config, capsys, fmt: str) -> str:
    assert main(["report", "backups", "-c", str(config), "--days", "10", "--format", fmt]) == 0
    return capsys.readouterr().out


def test_every_status_has_its_column_with_the_success_rate(ten_nights, capsys):
    config, windows = ten_nights
    header, row = list(csv.reader(io.StringIO(report(config, capsys, "csv"))))
    cells = dict(zip(header, row, strict=True))
    assert cells["runs"] == str(len(windows))
    assert (cells["ok"], cells["missed"], cells["failed"], cells["offsite_stale"]) == ("6", "2", "1", "1")
    assert cells["reconstructed"] == "3" and cells["not seen"] == str(len(windows) - 10)
    assert cells["success"] == f"{6 / 10:.0%}"
    assert cells["worst off-site lag"] == "14h" and cells["last integrity check"].endswith(" ok")


def test_bad_nights_are_listed_with_their_reason_and_the_legend(ten_nights, capsys):
    config, windows = ten_nights
    text = report(config, capsys, "text")
    assert "restic: repository locked" in text and "off-site copy is 14h behind" in text
    assert "missed (reconstructed): no backup of that night in the location's history" in text
    assert "Legend:" in text and "offsite_mismatch: the off-site copy is not the same backup" in text
    assert " CET " in text or " CEST " in text, "nights are dated in the job's own time zone"
    markdown = report(config, capsys, "markdown")
    assert markdown.startswith("## Backups, last 10 days") and "### Bad nights" in markdown


def test_json_and_html_carry_the_same_facts(ten_nights, capsys):
    config, windows = ten_nights
    (job,) = json.loads(report(config, capsys, "json"))["jobs"]
    assert job["counts"]["ok"] == 6 and job["success_ratio"] == pytest.approx(0.6)
    reconstructed = [night for night in job["nights"] if night["reconstructed"]]
    assert [night["status"] for night in reconstructed] == ["ok", "missed", "ok"]
    page = report(config, capsys, "html")
    assert page.startswith("<!doctype html>") and "<h2>Bad nights</h2>" in page and "<link" not in page
    assert "restic: repository locked" in page


def test_an_older_database_gains_the_detail_column(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    old = sqlite3.connect(state / FILENAME)
    old.execute("CREATE TABLE backup_windows (job TEXT NOT NULL, window_start REAL NOT NULL, status TEXT NOT NULL,"
                " offsite_lag REAL, updated_at REAL NOT NULL, PRIMARY KEY (job, window_start))")
    old.execute("INSERT INTO backup_windows VALUES ('old', 1.0, 'ok', NULL, 2.0)")
    old.commit()
    old.close()
    db = StateDB(state)
    BackupHistory(db, "new").record_window(5.0, "missed", None, 6.0, "no backup")
    assert db.query("SELECT job, status, detail FROM backup_windows ORDER BY job") == [
        ("new", "missed", "no backup"), ("old", "ok", "")]
    db.close()
