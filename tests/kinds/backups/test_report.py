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
from checks.history import BackupHistory, Drill, DrillFile
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


def report(config, capsys, fmt: str, days: int = 10) -> str:
    assert main(["report", "backups", "-c", str(config), "--days", str(days), "--format", fmt]) == 0
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


# -- restore evidence ---------------------------------------------------------------------------------------

DRILLED = CONFIG.replace('{kind: restic, repository: /srv/restic, password: "${env:VIGIL_TEST_SECRET}"}', """\
{kind: files, path: /srv/backups}
    offsite: {kind: files, path: /srv/offsite}
    drill: {every: 7d, files: 3, locations: both}""") + """\
  - name: mail-nightly
    schedule: "30 2 * * *"
    deadline: 2h
    primary: {kind: files, path: /srv/mail}
"""
SNAPSHOT = "4f2a9c0e" + "1" * 56


@pytest.fixture
def drilled(write_config, tmp_path):
    """In the last 30 days, three drills of fileserver-nightly's primary (failed, could not drill, passed) and
    one of its off-site copy; one drill before; mail-nightly has no drill: block."""
    config = write_config(DRILLED)
    now = time.time()
    db = StateDB(tmp_path / "state")
    history = BackupHistory(db, "fileserver-nightly")

    def drill(where: str, age: float, ok: bool | None, files: list[DrillFile], detail: str = "",
              coverage: float | None = None) -> None:
        started = now - age * DAY
        history.record_drill(Drill(where, started, started + 60, SNAPSHOT, ok, len(files),
                                   sum(f.size for f in files), f"fileserver-nightly/{where}", 0, 7, 0, coverage,
                                   detail), files)

    def file(path: str, result: str, reference: str, detail: str = "", why: str = "rotation") -> DrillFile:
        return DrillFile(path, why, 2048, 1.7e9, 1.7e9, "ab" * 32, reference, result, detail)

    drill("primary", 40, True, [file("/srv/old.txt", "match", "source")])  # before the period
    drill("primary", 20, False, [file("/srv/a.txt", "mismatch", "source", "sha256 ab… ≠ source cd…"),
                                 file("/srv/b.txt", "restored", "tool")], "/srv/a.txt: sha256 ab… ≠ source cd…",
          coverage=0.1)
    drill("primary", 10, None, [], "could not drill: restic: repository is already locked")
    drill("primary", 2, True, [file("/srv/new.db", "match", "source", why="newest"),
                               file("/srv/big.iso", "restored", "tool", why="largest"),
                               file("/srv/c.txt", "skipped", "", "source skipped: the source fs1:/srv/c.txt changed "
                                                                "since the backup (its size was 2048, is 4096)"),
                               file("/srv/we\nird|name.txt", "restored", "tool")], coverage=0.25)
    drill("offsite", 3, True, [file("db-2026-12-01.sql.gz", "match", "sidecar")], coverage=1.0)
    db.close()
    return config


def test_restore_evidence_per_job_and_location_in_text(drilled, capsys):
    text = report(drilled, capsys, "text", days=30)
    section = text[text.index("Restore evidence:"):text.index("Legend:")]
    lines = section.splitlines()
    header = lines[1].split()
    assert header[:4] == ["backup", "job", "location", "drills"]
    primary = next(line for line in lines if "fileserver-nightly  primary" in line)
    assert primary.split()[2:6] == ["3", "1", "1", "1"], "drills in the period: passed, failed, could not drill"
    assert "4f2a9c0e " in primary and SNAPSHOT not in primary and "8.0 KiB" in primary
    assert "tool 2, source 1" in primary and primary.endswith("25%")
    offsite = next(line for line in lines if "fileserver-nightly  offsite" in line)
    assert "sidecar 1" in offsite and offsite.endswith("100%")
    assert "mail-nightly" not in section, "a job without drill: has no restore evidence"
    assert "/srv/a.txt  mismatch: sha256 ab… ≠ source cd…" in section
    assert "/srv/c.txt  skipped: source skipped: the source fs1:/srv/c.txt changed since the backup" in section
    assert "could not drill: could not drill: restic: repository is already locked" in section
    assert "/srv/old.txt" not in section, "a drill before the period is not in it"
    assert "/srv/b.txt" not in section and "/srv/big.iso" not in section, "passed files are counted, not listed"
    assert "Legend:" in text and "  restored: restored whole by restic or borg" in text
    assert "  references: what a restored file was compared with" in text


def test_a_hostile_file_name_stays_on_its_line(drilled, capsys):
    """A drilled file that did not pass, named with a newline, is shown escaped, one line per file."""
    history_db = StateDB(drilled.parent / "state")
    now = time.time()
    BackupHistory(history_db, "fileserver-nightly").record_drill(
        Drill("primary", now - DAY, now - DAY + 5, SNAPSHOT, None, 1, 1, "", 0, 1, 0, None, "cancelled"),
        [DrillFile("/srv/we\nird|name.txt", "rotation", 1, None, None, "", "", "unreadable",
                   "cannot read /srv/we\nird|name.txt")])
    history_db.close()
    text = report(drilled, capsys, "text", days=30)
    assert "  /srv/we\\nird|name.txt  unreadable: cannot read /srv/we\\nird|name.txt\n" in text
    markdown = report(drilled, capsys, "markdown", days=30)
    assert "`/srv/we\\nird|name.txt` **unreadable** — cannot read /srv/we\\nird|name.txt\n" in markdown


def test_restore_evidence_in_markdown_csv_and_html(drilled, capsys):
    markdown = report(drilled, capsys, "markdown", days=30)
    assert "### Restore evidence" in markdown and "| fileserver-nightly | primary | 3 | 1 | 1 | 1 |" in markdown
    assert "primary: `/srv/a.txt` **mismatch** — sha256 ab… ≠ source cd…" in markdown
    assert "primary: **could not drill** — could not drill: restic: repository is already locked" in markdown
    rows = list(csv.reader(io.StringIO(report(drilled, capsys, "csv", days=30))))
    blank = [index for index, row in enumerate(rows) if not row]
    assert len(blank) == 2
    evidence = [dict(zip(rows[blank[0] + 1], row, strict=True)) for row in rows[blank[0] + 2:blank[1]]]
    assert [(row["backup job"], row["location"], row["drills"], row["coverage"]) for row in evidence] == [
        ("fileserver-nightly", "primary", "3", "25%"), ("fileserver-nightly", "offsite", "1", "100%")]
    problems = [dict(zip(rows[blank[1] + 1], row, strict=True)) for row in rows[blank[1] + 2:]]
    assert {(row["file"], row["result"]) for row in problems} == {
        ("/srv/a.txt", "mismatch"), ("/srv/c.txt", "skipped"), ("", "could not drill")}
    page = report(drilled, capsys, "html", days=30)
    assert "<h2>Restore evidence</h2>" in page and "<h3>Failed and skipped files</h3>" in page
    assert "<td>/srv/a.txt</td><td>mismatch</td><td>sha256 ab… ≠ source cd…</td>" in page


def test_json_carries_every_drilled_file_for_auditors(drilled, capsys):
    jobs = {job["job"]: job for job in json.loads(report(drilled, capsys, "json", days=30))["jobs"]}
    assert jobs["mail-nightly"]["restore_evidence"] == []
    primary, offsite = jobs["fileserver-nightly"]["restore_evidence"]
    assert (primary["location"], primary["passed"], primary["failed"], primary["could_not_drill"]) == \
        ("primary", 1, 1, 1)
    newest = primary["drills"][0]
    assert newest["backup_id"] == SNAPSHOT and newest["ok"] is True and newest["coverage"] == 0.25
    assert [(row["path"], row["why"], row["reference"], row["result"]) for row in newest["file_results"]] == [
        ("/srv/new.db", "newest", "source", "match"), ("/srv/big.iso", "largest", "tool", "restored"),
        ("/srv/c.txt", "rotation", "", "skipped"), ("/srv/we\nird|name.txt", "rotation", "tool", "restored")]
    assert newest["file_results"][0]["sha256"] == "ab" * 32 and newest["file_results"][0]["size"] == 2048
    assert offsite["coverage_ratio"] == 1.0 and offsite["drills"][0]["file_results"][0]["reference"] == "sidecar"


def test_a_drilled_location_without_drills_in_the_period_says_so(write_config, capsys):
    text = report(write_config(DRILLED), capsys, "text", days=30)
    section = text[text.index("Restore evidence:"):text.index("Legend:")]
    assert "fileserver-nightly  primary   0       0       0       0                none in the period" in section
    assert "Failed and skipped files:\n  none" in section
