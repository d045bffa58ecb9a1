"""One status per backup job per evaluation, from what the locations show.

Pure functions over plain data, so that every rule is tested case by case. When several
things are wrong, the status is the one on-call must act on first (URGENCY); otherwise ok.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.units import format_duration, format_size, readable_time
from checks.model import BackupSnapshot
from checks.schedule import Window

URGENCY = ("unreachable", "failed", "missed", "too_small", "shrunk", "offsite_mismatch", "offsite_stale",
           "unverified")  # what on-call must act on first comes first
STATUSES = ("ok", *URGENCY)


@dataclass(frozen=True)
class Finding:
    status: str
    detail: str


@dataclass(frozen=True)
class Offsite:
    finding: Finding | None  # None: the copy is in step
    lag: float | None  # seconds the copy trails the primary (0 when in step)


def size_finding(newest: BackupSnapshot, min_size: int | None, max_shrink: float | None,
                 median: float | None) -> Finding | None:
    size = newest.size_bytes
    if size is None:
        return None
    if min_size is not None and size < min_size:
        return Finding("too_small",
                       f"{_name(newest)} is {format_size(size)}, below the minimum {format_size(min_size)}")
    if max_shrink is not None and median and size < (1 - max_shrink) * median:
        return Finding("shrunk", f"{_name(newest)} is {format_size(size)}, {1 - size / median:.0%} below the "
                                 f"recent median {format_size(median)} (allowed {max_shrink:.0%})")
    return None


def primary_finding(backups: list[BackupSnapshot], window: Window | None) -> Finding | None:
    """Failed or missed, judged on the newest backup and the last closed window."""
    if not backups:
        return Finding("missed", "no backup found") if window else None
    newest = backups[0]
    if newest.ok is False:
        return Finding("failed", f"{_name(newest)} failed" + (f": {newest.detail}" if newest.detail else ""))
    good = next((b for b in backups if b.ok is not False), None)
    if window is not None and (good is None or not window.holds(good.completed_at)):
        return Finding("missed", f"no backup completed since the run due at {readable_time(window.start)} "
                                 f"(deadline {readable_time(window.deadline)})")
    return None


def same_backup(primary: BackupSnapshot, copy: BackupSnapshot) -> bool | None:
    """True: the same backup; False: claims to be it but differs; None: unrelated."""
    by_id = copy.id == primary.id or (bool(copy.original) and copy.original == primary.id)
    by_name = bool(primary.name) and copy.name == primary.name
    by_time_and_paths = bool(primary.paths) and copy.paths == primary.paths and \
        abs(copy.completed_at - primary.completed_at) < 1
    if not (by_id or by_name or by_time_and_paths):
        return None
    if None not in (copy.size_bytes, primary.size_bytes) and copy.size_bytes != primary.size_bytes:
        return False
    algorithm = primary.checksum.partition(":")[0]
    if algorithm and copy.checksum.partition(":")[0] == algorithm and copy.checksum != primary.checksum:
        return False
    return True


def offsite_finding(now: float, primaries: list[BackupSnapshot], copies: list[BackupSnapshot],
                    max_lag: float) -> Offsite:
    """Is the newest off-site backup the same as a recent primary one, and recent enough?

    The lag is the age of the oldest primary backup that the off-site copy does not hold
    yet, so a copy that runs a few hours after the backup is in step until max_lag.
    """
    good = [p for p in primaries if p.ok is not False]
    if not good:
        return Offsite(None, None)
    if not copies:
        lag = now - good[-1].completed_at
        return Offsite(Finding("offsite_stale", "no off-site backup found") if lag > max_lag else None, lag)
    copy = copies[0]
    matched = None
    for index, primary in enumerate(good):
        same = same_backup(primary, copy)
        if same is False:
            return Offsite(Finding("offsite_mismatch", f"off-site {_name(copy)} differs from the primary's "
                                                       f"({_difference(primary, copy)})"), None)
        if same:
            matched = index
            break
    missing = good[:matched] if matched is not None else [p for p in good if p.completed_at > copy.completed_at]
    if matched is None and not missing:
        return Offsite(Finding("offsite_mismatch", f"off-site {_name(copy)} is none of the primary's recent "
                                                   "backups"), None)
    lag = now - missing[-1].completed_at if missing else 0.0
    if lag > max_lag:
        return Offsite(Finding("offsite_stale", f"off-site copy is {format_duration(lag)} behind the primary "
                                                f"(allowed {format_duration(max_lag)}); newest copy {_name(copy)}"),
                       lag)
    return Offsite(None, lag)


def verify_finding(now: float, every: float, last_result: bool | None, last_ok_at: float | None,
                   watched_since: float | None) -> Finding | None:
    """Damage found is `failed`; no sound check for two verify periods is `unverified`."""
    if last_result is False:
        return Finding("failed", "the last integrity check found errors")
    return _unverified(now, every, last_ok_at, watched_since, "integrity check", "check")


def drill_finding(now: float, every: float, last_result: bool | None, last_detail: str, last_ok_at: float | None,
                  watched_since: float | None) -> Finding | None:
    """A drill that found damage or a mismatch is `failed`, naming the file; no good drill for two periods is
    `unverified`, as for integrity checks."""
    if last_result is False:
        return Finding("failed", f"drill: {last_detail}")
    return _unverified(now, every, last_ok_at, watched_since, "restore drill", "drill")


def overdue(now: float, every: float, last_ok_at: float | None, watched_since: float | None) -> float | None:
    """How long since the last good one (or since watching began, with none) when that is over two periods."""
    since = last_ok_at if last_ok_at is not None else watched_since
    return now - since if since is not None and now - since > 2 * every else None


def _unverified(now: float, every: float, last_ok_at: float | None, watched_since: float | None, what: str,
                short: str) -> Finding | None:
    late = overdue(now, every, last_ok_at, watched_since)
    if late is None:
        return None
    since = f"the last good {what}" if last_ok_at is not None else f"watching began, with no good {short}"
    return Finding("unverified", f"{format_duration(late)} since {since} (due every {format_duration(every)})")


def worst(findings: list[Finding | None]) -> Finding:
    present = [f for f in findings if f is not None]
    if not present:
        return Finding("ok", "")
    return min(present, key=lambda finding: URGENCY.index(finding.status))


def _name(backup: BackupSnapshot) -> str:
    return backup.name or backup.id[:12]


def _difference(primary: BackupSnapshot, copy: BackupSnapshot) -> str:
    if primary.size_bytes != copy.size_bytes:
        return f"{format_size(copy.size_bytes or 0)} against {format_size(primary.size_bytes or 0)}"
    return "checksums differ"

