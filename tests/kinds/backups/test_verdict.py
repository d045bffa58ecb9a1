"""The rules that turn what the locations show into one status, case by case."""

from __future__ import annotations

import pytest

from checks.model import BackupSnapshot
from checks.schedule import Window
from checks.verdict import (
    Finding,
    drill_finding,
    offsite_finding,
    overdue,
    primary_finding,
    same_backup,
    size_finding,
    verify_finding,
    worst,
)

H = 3600.0
NOW = 1_800_000_000.0
WINDOW = Window(NOW - 10 * H, NOW - 6 * H)  # started 10 h ago, closed 6 h ago
GiB = 2**30


def backup(hours_ago: float, **fields) -> BackupSnapshot:
    fields.setdefault("id", f"b{hours_ago}")
    return BackupSnapshot(completed_at=NOW - hours_ago * H, **fields)


def test_a_backup_inside_the_last_window_is_fine():
    assert primary_finding([backup(8), backup(32)], WINDOW) is None


def test_no_backup_since_the_last_window_started_is_missed():
    finding = primary_finding([backup(32)], WINDOW)
    assert finding.status == "missed" and "no backup completed since the run due at" in finding.detail


def test_no_backup_at_all_is_missed_once_a_window_closed_but_not_before():
    assert primary_finding([], WINDOW).status == "missed"
    assert primary_finding([], None) is None


def test_a_failed_newest_backup_is_failed_even_when_an_older_one_is_in_the_window():
    finding = primary_finding([backup(7, ok=False, detail="Failed: disk full"), backup(9)], WINDOW)
    assert finding == Finding("failed", "b7 failed: Failed: disk full")


def test_a_successful_run_after_a_failed_one_is_fine():
    assert primary_finding([backup(7), backup(9, ok=False)], WINDOW) is None


@pytest.mark.parametrize("size, min_size, max_shrink, median, status", [
    (10 * GiB, 5 * GiB, 0.2, 10 * GiB, None),
    (4 * GiB, 5 * GiB, None, None, "too_small"),
    (7 * GiB, None, 0.2, 10 * GiB, "shrunk"),
    (8.5 * GiB, None, 0.2, 10 * GiB, None),
    (7 * GiB, None, 0.2, None, None),  # no history yet: nothing to compare with
    (4 * GiB, 5 * GiB, 0.2, 10 * GiB, "too_small"),  # both: the absolute floor wins
])
def test_size_rules(size, min_size, max_shrink, median, status):
    finding = size_finding(backup(8, size_bytes=int(size)), min_size, max_shrink, median)
    assert (finding.status if finding else None) == status


def test_shrunk_says_by_how_much():
    finding = size_finding(backup(8, name="db.sql.gz", size_bytes=6 * GiB), None, 0.2, 10 * GiB)
    assert finding.detail == "db.sql.gz is 6.0 GiB, 40% below the recent median 10.0 GiB (allowed 20%)"


def test_parity_by_restic_snapshot_id_or_copy_original():
    primary = backup(8, id="abc123", paths=("/srv",))
    assert same_backup(primary, backup(8, id="abc123"))
    assert same_backup(primary, backup(8, id="fff999", original="abc123"))
    assert same_backup(primary, backup(8, id="fff999", paths=("/srv",)))  # same time and paths
    assert same_backup(primary, backup(9, id="fff999", paths=("/srv",))) is None


def test_parity_by_name_size_and_checksum():
    primary = backup(8, id="db.gz", name="db.gz", size_bytes=100, checksum="sha256:aa")
    assert same_backup(primary, backup(7, id="db.gz", name="db.gz", size_bytes=100, checksum="sha256:aa"))
    assert same_backup(primary, backup(7, id="x", name="db.gz", size_bytes=99)) is False
    assert same_backup(primary, backup(7, id="x", name="db.gz", size_bytes=100, checksum="sha256:bb")) is False
    # an md5 from an object store cannot be compared with a sha256 sidecar: size decides
    assert same_backup(primary, backup(7, id="x", name="db.gz", size_bytes=100, checksum="md5:cc"))
    assert same_backup(primary, backup(7, id="other.gz", name="other.gz")) is None


def test_a_copy_in_step_has_no_lag():
    primaries = [backup(8, id="n"), backup(32, id="n-1")]
    result = offsite_finding(NOW, primaries, [backup(6, id="c", original="n")], 12 * H)
    assert result.finding is None and result.lag == 0


def test_a_copy_still_running_is_in_step_until_max_lag():
    primaries = [backup(8, id="n"), backup(32, id="n-1")]
    copies = [backup(30, id="c", original="n-1")]
    result = offsite_finding(NOW, primaries, copies, 12 * H)
    assert result.finding is None and result.lag == pytest.approx(8 * H)


def test_a_copy_of_an_older_backup_is_stale():
    primaries = [backup(8, id="n"), backup(32, id="n-1"), backup(56, id="n-2")]
    result = offsite_finding(NOW, primaries, [backup(50, id="c", original="n-2")], 12 * H)
    assert result.finding.status == "offsite_stale"
    assert result.lag == pytest.approx(32 * H)  # n-1 is the oldest backup it lacks
    assert "1d8h behind the primary (allowed 12h)" in result.finding.detail


def test_a_same_named_copy_of_another_size_is_a_mismatch():
    primaries = [backup(8, id="db.gz", name="db.gz", size_bytes=100)]
    result = offsite_finding(NOW, primaries, [backup(7, id="db.gz", name="db.gz", size_bytes=60)], 12 * H)
    assert result.finding.status == "offsite_mismatch"
    assert "differs from the primary's (60 B against 100 B)" in result.finding.detail


def test_a_newer_copy_that_is_no_primary_backup_is_a_mismatch():
    primaries = [backup(8, id="a", name="a.gz")]
    result = offsite_finding(NOW, primaries, [backup(2, id="zz", name="zz.gz")], 12 * H)
    assert result.finding.status == "offsite_mismatch"


def test_no_copy_at_all_is_stale_once_max_lag_passed():
    assert offsite_finding(NOW, [backup(8, id="a")], [], 12 * H).finding is None
    assert offsite_finding(NOW, [backup(13, id="a")], [], 12 * H).finding.status == "offsite_stale"


def test_failed_primary_backups_are_not_expected_off_site():
    primaries = [backup(8, id="n", ok=False), backup(32, id="n-1")]
    result = offsite_finding(NOW, primaries, [backup(30, id="c", original="n-1")], 12 * H)
    assert result.finding is None and result.lag == 0


def test_verification_rules():
    week = 7 * 24 * H
    assert verify_finding(NOW, week, True, NOW - H, NOW - 30 * week) is None
    assert verify_finding(NOW, week, False, NOW - 8 * 24 * H, NOW - 30 * week).status == "failed"
    overdue = verify_finding(NOW, week, True, NOW - 15 * 24 * H, NOW - 30 * week)
    assert overdue.status == "unverified" and "15d since the last good integrity check" in overdue.detail
    assert verify_finding(NOW, week, None, None, NOW - 3 * 24 * H) is None  # newly watched
    assert verify_finding(NOW, week, None, None, NOW - 15 * 24 * H).status == "unverified"


def test_the_most_urgent_finding_wins():
    findings = [Finding("offsite_stale", ""), None, Finding("shrunk", ""), Finding("unverified", "")]
    assert worst(findings).status == "shrunk"
    assert worst([None, Finding("unreachable", "x"), Finding("failed", "")]).status == "unreachable"
    assert worst([None]) == Finding("ok", "")


def test_a_failed_drill_is_failed_and_names_the_file_and_the_mismatch():
    finding = drill_finding(NOW, 30 * 24 * H, False, "/srv/x: sha256 ab12… ≠ first-seen cd34…", NOW - 40 * 24 * H,
                            NOW - 90 * 24 * H)
    assert finding == Finding("failed", "drill: /srv/x: sha256 ab12… ≠ first-seen cd34…")


def test_no_good_drill_for_two_periods_is_unverified_and_a_recent_one_is_fine():
    assert drill_finding(NOW, 7 * 24 * H, True, "3 match", NOW - 10 * 24 * H, NOW - 90 * 24 * H) is None
    assert drill_finding(NOW, 7 * 24 * H, None, "", None, NOW - 10 * 24 * H) is None, "watching began 10 days ago"
    assert drill_finding(NOW, 7 * 24 * H, True, "3 match", NOW - 15 * 24 * H, NOW - 90 * 24 * H) == Finding(
        "unverified", "15d since the last good restore drill (due every 7d)")
    assert drill_finding(NOW, 7 * 24 * H, None, "", None, NOW - 15 * 24 * H) == Finding(
        "unverified", "15d since watching began, with no good drill (due every 7d)")
    assert overdue(NOW, 7 * 24 * H, NOW - 14 * 24 * H, None) is None and overdue(NOW, 7 * 24 * H, None, None) is None
