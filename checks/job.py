"""A backup job's two scheduled jobs: the evaluation (every few minutes, metadata only)
and the verification (integrity, on its own slow schedule).

The evaluation lists the primary and off-site locations, measures a new backup once,
records everything in the history, and turns it into one status with its metrics.
A location that cannot be read is `unreachable`, not an evaluation failure: vigil_up
stays 1 and the last success still comes from the history. That holds for a dead host
too: the locations are read at once, each in a thread the evaluation stops waiting for
before its own timeout (checks.bounded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from agent.collector import LONG, TOOLS, Collector, Context, Emitter, JobSpec
from agent.model import Condition, MetricSpec, Verdict
from agent.reasons import describe
from agent.units import format_duration, readable_time
from checks.bounded import BoundedCalls
from checks.config import BackupJobConfig
from checks.drill import RESULTS, Driller, Outcome
from checks.history import BackupHistory, DrillFile
from checks.model import (
    BackupSnapshot,
    DrillConfig,
    Location,
    LocationConfig,
    Measured,
    Verified,
    VerifyConfig,
    VerifyOutcome,
    declares,
)
from checks.schedule import Schedule
from checks.sources import location_class
from checks.verdict import (
    STATUSES,
    Finding,
    drill_finding,
    offsite_finding,
    overdue,
    primary_finding,
    size_finding,
    verify_finding,
    worst,
)

log = logging.getLogger(__name__)

VERIFY_POLL = 300.0  # how often the verification job looks whether a check is due and its window open
VERIFY_WINDOW = 2 * 3600.0  # a due check starts only within this long after its window opens
VERIFY_AFTER_DEADLINE = 3600.0  # the default window opens an hour after each backup's deadline
SPARE = 0.1  # the share of an evaluation's timeout kept for judging and recording after the locations' calls

STATUS = MetricSpec("vigil_backup_status", "gauge",
                    "1 for the backup job's current status, 0 for every other status.", ("status",))
LAST_SUCCESS = MetricSpec("vigil_backup_last_success_timestamp_seconds", "gauge",
                          "When the newest good backup at the location completed (kept across restarts).",
                          ("location",), "seconds")
SIZE = MetricSpec("vigil_backup_size_bytes", "gauge", "Size of the newest backup at the location.",
                  ("location",), "bytes")
FILES = MetricSpec("vigil_backup_files", "gauge", "Files in the newest backup at the location.", ("location",))
DURATION = MetricSpec("vigil_backup_duration_seconds", "gauge",
                      "How long the newest backup at the location took, where the tool says.",
                      ("location",), "seconds")
OFFSITE_LAG = MetricSpec("vigil_backup_offsite_lag_seconds", "gauge",
                         "How far the off-site copy trails the primary: the age of the oldest primary "
                         "backup it does not hold yet (0 when in step).", unit="seconds")
NEXT_DEADLINE = MetricSpec("vigil_backup_next_deadline_timestamp_seconds", "gauge",
                           "When the next scheduled backup must be complete.", unit="seconds")
VERIFY_OK = MetricSpec("vigil_backup_verify_ok", "gauge",
                       "1 when the last integrity check of every verified location found no errors.")
VERIFY_TIME = MetricSpec("vigil_backup_verify_timestamp_seconds", "gauge",
                         "When the oldest of the verified locations' last integrity checks ran.", unit="seconds")
METRICS = (STATUS, LAST_SUCCESS, SIZE, FILES, DURATION, OFFSITE_LAG, NEXT_DEADLINE, VERIFY_OK, VERIFY_TIME)

# restore drills (checks.drill), from the history: never a label per file
DRILL_OK = MetricSpec("vigil_backup_drill_ok", "gauge",
                      "1 when the location's last conclusive restore drill passed, 0 when it found damage or a "
                      "mismatch.", ("location",))
DRILL_TIME = MetricSpec("vigil_backup_drill_timestamp_seconds", "gauge",
                        "When the location's last conclusive restore drill started.", ("location",), "seconds")
DRILL_OVERDUE = MetricSpec("vigil_backup_drill_overdue", "gauge",
                           "1 when the location had no good restore drill for two drill periods.", ("location",))
DRILL_FILES = MetricSpec("vigil_backup_drill_files", "gauge",
                         "Files the location's last conclusive restore drill restored, by result.",
                         ("location", "result"))
DRILL_BYTES = MetricSpec("vigil_backup_drill_bytes", "gauge",
                         "Content bytes the location's last conclusive restore drill read (repository metadata "
                         "comes on top).", ("location",), "bytes")
DRILL_DURATION = MetricSpec("vigil_backup_drill_duration_seconds", "gauge",
                            "How long the location's last conclusive restore drill took.", ("location",), "seconds")
DRILL_COVERAGE = MetricSpec("vigil_backup_drill_coverage_ratio", "gauge",
                            "The share of the backup's files the drills' rotation passed in its current lap.",
                            ("location",), "ratio")
METRICS += (DRILL_OK, DRILL_TIME, DRILL_OVERDUE, DRILL_FILES, DRILL_BYTES, DRILL_DURATION, DRILL_COVERAGE)


def _status_is(statuses: str) -> str:
    matcher = f'status=~"{statuses}"' if "|" in statuses else f'status="{statuses}"'
    return f"vigil_backup_status{{{matcher}}} == 1"


# deploy/prometheus/rules/backups.yml
CONDITIONS = (
    Condition("BackupMissed", "critical", _status_is("missed"), "missed its deadline"),
    Condition("BackupFailed", "critical", _status_is("failed"), "failed"),
    Condition("BackupTooSmall", "critical", _status_is("too_small|shrunk"), "smaller than expected"),
    Condition("BackupOffsiteStale", "warning", _status_is("offsite_stale"), "off-site copy behind"),
    Condition("BackupOffsiteMismatch", "critical", _status_is("offsite_mismatch"), "off-site copy differs"),
    Condition("BackupUnverified", "warning", _status_is("unverified"), "integrity not verified"),
    Condition("BackupUnreachable", "critical", _status_is("unreachable"), "a location cannot be read"),
    Condition("BackupStateUnknown", "critical",
              '(vigil_up{kind="backup"} == 0) and on (job, instance, backup) '
              "(time() > max_over_time(vigil_backup_next_deadline_timestamp_seconds[3d]))",
              "state unknown past its deadline",
              not_judged="needs the deadline from the last 3 days of samples (the board shows the job unknown)"),
)
CONDITIONS += (
    Condition("BackupDrillFailed", "critical", "vigil_backup_drill_ok == 0", "restore drill failed at {location}"),
    Condition("BackupDrillOverdue", "warning", "vigil_backup_drill_overdue == 1",
              "no good restore drill at {location} for two periods"),
)


def backup_jobs(config: BackupJobConfig) -> list[JobSpec]:
    """The evaluation (every few minutes) and, where verify: and drill: are set, the verification and drill jobs."""
    jobs = [JobSpec(config.name, "backup", config.interval, config.timeout, partial(BackupEvaluation, config),
                    BackupEvaluation, config=config)]
    if config.verify is not None:
        timeout = config.verify.timeout * 2 + 60  # at most both locations, one after the other
        jobs.append(JobSpec(config.name, "backup_verify", min(config.verify.every, VERIFY_POLL), timeout,
                            partial(BackupVerification, config), BackupVerification, config=config))
    if config.drill is not None:
        drilled = sum(config.drill.drilled(where) for where in ("primary", "offsite"))
        jobs.append(JobSpec(config.name, "backup_drill", min(config.drill.every, VERIFY_POLL),
                            config.drill.timeout * drilled + 60, partial(BackupDrill, config), BackupDrill,
                            config=config))
    return jobs


class _BackupJob(Collector[BackupJobConfig]):
    """What both jobs of a backup job share: its locations and its history (all blocking)."""

    Config = BackupJobConfig
    LABEL = "backup"  # not `job`: Prometheus gives every scraped series its own job label

    def __init__(self, config: BackupJobConfig, ctx: Context):
        super().__init__(config, ctx)
        self.clock = ctx.clock
        self.history = BackupHistory(ctx.db, config.name)
        self.locations: dict[str, Location] = {where: location_class(location.kind)(location, ctx)
                          for where, location in (("primary", config.primary), ("offsite", config.offsite))
                          if location is not None}
        self.verifiable = {where: location for where, location in self.locations.items()
                           if config.verify is not None and declares(location, Verified)}
        self.drilled = {where: location for where, location in self.locations.items()
                        if config.drill is not None and config.drill.drilled(where)}  # config says it is Drilled

    def close(self) -> None:
        """A location may keep a connection between polls (its fingerprint's SFTP session)."""
        for location in self.locations.values():
            location.close()


class BackupEvaluation(_BackupJob):
    """Lists the locations, judges the newest backups against the schedule, records it all."""

    METRICS = METRICS
    CONDITIONS = CONDITIONS
    BOARD = "Backups"
    POOL = TOOLS  # a changed repository is listed by restic or borg, mostly CPU-bound

    def __init__(self, config: BackupJobConfig, ctx: Context):
        super().__init__(config, ctx)
        self.schedule = Schedule(config.schedule, config.timezone, config.deadline)
        self._logged_status: str | None = None  # the status last logged: each change is logged once
        self._calls = BoundedCalls()

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        now = self.clock.trusted_time()  # a window the wall clock just jumped over is not judged yet
        deadline = time.monotonic() + self.config.timeout * (1 - SPARE)  # a real wait on real threads
        window = self.schedule.last_closed(now)
        findings: list[Finding | None] = []
        for where, location in self.locations.items():  # both locations are read at once
            self._calls.start(f"{where} listing", location.backups)
        seen = {where: self._observe(where, location, now, deadline, findings)
                for where, location in self.locations.items()}
        primary, offsite = seen["primary"], seen.get("offsite")
        lag = None
        if primary is not None:
            findings.append(primary_finding(primary, window))
            if "offsite" in self.locations and offsite is not None:
                step = offsite_finding(now, primary, offsite, self.config.max_lag)
                findings.append(step.finding)
                lag = step.lag
        findings.append(self._verify_finding(now))
        findings.append(self._drills(out, now))
        verdict = worst(findings)
        self._log_change(verdict)
        if window is not None:
            self.history.record_window(window.start, verdict.status, lag, now, verdict.detail)
        next_deadline = self.schedule.next_deadline(now)
        for status in STATUSES:
            out.gauge(STATUS, int(status == verdict.status), status=status)
        out.gauge(NEXT_DEADLINE, next_deadline)
        out.gauge(OFFSITE_LAG, lag)
        for where, backups in seen.items():
            self._location_samples(out, where, backups)
        verified_at = self._verify_samples(out)
        newest = primary[0] if primary else None
        times = {"newest backup": newest.completed_at if newest else None, "next deadline": next_deadline,
                 "last integrity check": verified_at}
        out.judge(Verdict(verdict.status, verdict.detail, {k: v for k, v in times.items() if v is not None},
                          {"off-site lag": _lag_note(lag)} if "offsite" in seen else {},
                          self.config.timezone))

    def _log_change(self, verdict: Finding) -> None:
        """ok -> missed is a warning, back to ok is news; the same status again is not logged."""
        before, self._logged_status = self._logged_status, verdict.status
        if verdict.status == before or (before is None and verdict.status == "ok"):
            return
        if verdict.status == "ok":
            log.info("backup ok again job=%s was=%s", self.config.name, before)
        else:
            log.warning("backup %s job=%s detail=%r", verdict.status, self.config.name, verdict.detail)

    def _observe(self, where: str, location: Location, now: float, deadline: float,
                 findings: list) -> list[BackupSnapshot] | None:
        """The location's backups, newest measured and everything recorded; None if unreachable."""
        try:
            backups = self._calls.result(f"{where} listing", deadline, f"listing {location.where}")
        except Exception as exc:  # a location's failure is a status, never a crash
            findings.append(Finding("unreachable", f"{where}: {describe(exc)}"))
            return None
        if not backups:
            return backups
        newest = self._measured(where, location, backups[0], deadline)
        backups = [newest, *backups[1:]]
        verdict = "failed" if newest.ok is False else "ok"
        if where == "primary" and verdict == "ok":
            median = self.history.median_size_before(where, newest.completed_at)
            finding = size_finding(newest, self.config.min_size, self.config.max_shrink, median)
            findings.append(finding)
            verdict = finding.status if finding else verdict
        self.history.record(where, backups, {newest.id: verdict}, now)
        return backups

    def _measured(self, where: str, location: Location, newest: BackupSnapshot, deadline: float) -> BackupSnapshot:
        if newest.size_bytes is not None or not declares(location, Measured):
            return newest
        if (known := self.history.measured(where, newest)) is not None:
            return known
        try:
            return self._calls.call(f"{where} measure {newest.id}", partial(location.measure, newest), deadline,
                                    f"measuring {newest.name or newest.id} at {location.where}")
        except Exception as exc:  # the size stays unknown this time; the next poll retries
            log.warning("backup size unknown job=%s location=%s error=%s", self.config.name, where, describe(exc))
            return newest

    def _location_samples(self, out: Emitter, where: str, backups: list[BackupSnapshot] | None) -> None:
        out.gauge(LAST_SUCCESS, self.history.last_success(where), location=where)
        newest = backups[0] if backups else None
        if newest is not None:
            out.gauge(SIZE, newest.size_bytes, location=where)
            out.gauge(FILES, newest.file_count, location=where)
            out.gauge(DURATION, newest.duration, location=where)

    def _verify_finding(self, now: float) -> Finding | None:
        findings = []
        for where in self.verifiable:
            last = self.history.last_verification(where, conclusive=True)
            finding = verify_finding(now, self.config.verify.every, last.ok if last else None,
                                     self.history.last_verified_ok(where), self.history.first_seen())
            if finding is not None:
                findings.append(Finding(finding.status, f"{where}: {finding.detail}"))
        return worst(findings) if findings else None

    def _verify_samples(self, out: Emitter) -> float | None:
        """vigil_backup_verify_*; the time of the oldest of the locations' last checks, if all have one."""
        results = [self.history.last_verification(where, conclusive=True) for where in self.verifiable]
        if not results or None in results:
            return None
        out.gauge(VERIFY_OK, int(all(r.ok for r in results)))
        out.gauge(VERIFY_TIME, min(r.at for r in results))
        return min(r.at for r in results)

    def _drills(self, out: Emitter, now: float) -> Finding | None:
        """vigil_backup_drill_* and the drills' finding, from each drilled location's last conclusive drill (read
        once per evaluation)."""
        findings = []
        watched_since = self.history.first_seen() if self.drilled else None
        for where in self.drilled:
            last, last_ok_at = self.history.last_drill(where, conclusive=True), self.history.last_drilled_ok(where)
            out.gauge(DRILL_OVERDUE, int(overdue(now, self.config.drill.every, last_ok_at, watched_since) is not None),
                      location=where)
            finding = drill_finding(now, self.config.drill.every, last.ok if last else None,
                                    last.detail if last else "", last_ok_at, watched_since)
            if finding is not None:
                findings.append(Finding(finding.status, f"{where}: {finding.detail}"))
            if last is None:
                continue
            out.gauge(DRILL_OK, int(last.ok), location=where)
            out.gauge(DRILL_TIME, last.started_at, location=where)
            out.gauge(DRILL_BYTES, last.bytes_read, location=where)
            out.gauge(DRILL_DURATION, last.finished_at - last.started_at, location=where)
            out.gauge(DRILL_COVERAGE, last.coverage, location=where)
            results = [f.result for f in self.history.drill_files(where, last.started_at)]
            for result in RESULTS:
                out.gauge(DRILL_FILES, results.count(result), location=where, result=result)
        return worst(findings) if findings else None


class CheckNotRun(Exception):
    """An integrity check or a restore drill that could not run or finish (a lock, an unreachable repository, the
    backup about to start): retried at the next poll."""


class BackupVerification(_BackupJob):
    """Runs the integrity checks that are due, one repository at a time whatever the number of jobs."""

    BOARD = "Integrity checks"
    POOL = LONG

    def __init__(self, config: BackupJobConfig, ctx: Context):
        super().__init__(config, ctx)
        self.windows = SlowWindows(config, config.verify, partial(_last_at, self.history.last_verification))

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        """A check that could not run fails this job, so it is retried at the next poll."""
        outcomes = self.check(only_due=True)
        problems = [f"{where}: {outcome.detail}" for where, outcome in outcomes.items() if outcome.ok is None]
        if problems:
            raise CheckNotRun("; ".join(problems))
        out.judge(self.verdict(self.clock.time()))

    def verdict(self, now: float) -> Verdict:
        """Each location's last check and when the next is due: `failed` when one found damage,
        `not_checked` while one was never checked (never `ok` for a check that never ran)."""
        lasts = {where: self.history.last_verification(where, conclusive=True) for where in self.verifiable}
        return self.windows.verdict(now, lasts, "checked", "last check")

    def check(self, only_due: bool) -> dict[str, VerifyOutcome]:
        """Run the integrity checks (those due in an open window, or all of them now) and record each outcome."""
        outcomes = {}
        opened = self.windows.opened(self.clock.trusted_time())
        for where, location in self.verifiable.items():
            if only_due and not self.windows.due(where, opened):
                continue
            with _exclusive(location.config):
                outcome = location.verify(self.config.verify)
            self.history.record_verification(where, self.clock.trusted_time(), outcome)
            outcomes[where] = outcome
        return outcomes


class SlowWindows:
    """When a slow check (an integrity check, a restore drill) of a backup job may start, and when it is due.

    restic and borg checks lock the repository, and a drill reads for long, so by default a
    window opens an hour after each backup's deadline, clear of the backup itself; `at`/`schedule`
    choose another time. A check is due at the first window that opens once `every` has passed
    since the last one that came to a result (one that could not run is retried).
    """

    def __init__(self, config: BackupJobConfig, slow: VerifyConfig | DrillConfig | None,
                 last: Callable[[str], float | None]):
        """`slow`'s `every` and `window` (its `at`/`schedule`) say how often and when; `last`, when the last
        conclusive one at a location ran."""
        every, window = (slow.every, slow.window) if slow is not None else (0.0, None)
        self.every, self.timezone, self._last = every, config.timezone, last
        self._openings = (Schedule(window, config.timezone, 0) if window is not None else
                          Schedule(config.schedule, config.timezone, config.deadline + VERIFY_AFTER_DEADLINE))

    def opened(self, now: float) -> float | None:
        """When the current window opened, or None outside a window."""
        window = self._openings.last_closed(now)
        opened = window.deadline if window else None
        return opened if opened is not None and now - opened < VERIFY_WINDOW else None

    def due(self, where: str, opened: float | None) -> bool:
        if opened is None:
            return False
        last = self._last(where)
        return last is None or last < opened - self.every + VERIFY_WINDOW

    def next_due(self, where: str, now: float) -> float:
        """The window open now if the location is due in it, else the first window that opens once its period passed."""
        opened = self.opened(now)
        if opened is not None and self.due(where, opened):
            return opened
        last = self._last(where)
        after = now if last is None else max(now, last + self.every - VERIFY_WINDOW)
        return self._openings.next_deadline(after)

    def verdict(self, now: float, lasts: dict, done: str, label: str) -> Verdict:
        """Each location's last result (`.at`, `.ok`, `.detail`) and when the next is due: `failed` when one found
        damage, `not_checked` while one never ran (never `ok` for what never ran)."""
        zone = self.timezone
        dues = {where: self.next_due(where, now) for where in lasts}
        details = [f"{where}: never {done}, first due {readable_time(dues[where], zone)}" if last is None
                   else f"{where}: {last.detail}; next due {readable_time(dues[where], zone)}"
                   for where, last in lasts.items()]
        ran = [last for last in lasts.values() if last is not None]
        status = ("failed" if any(not last.ok for last in ran) else
                  "not_checked" if len(ran) < len(lasts) else "ok")
        times = {"next due": min(dues.values())} | ({label: min(last.at for last in ran)} if ran else {})
        return Verdict(status, "; ".join(details), times, timezone=zone)


def _last_at(last: Callable[..., object], where: str) -> float | None:
    """When the last conclusive check or drill at the location ran."""
    found = last(where, conclusive=True)
    return found.at if found is not None else None


_REPOSITORY_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _exclusive(location: LocationConfig) -> Iterator[None]:
    """One integrity check per repository at a time: restic and borg checks lock it exclusively."""
    key = location.model_dump_json(include={"kind", "repository", "path", "host", "url", "bucket"})
    with _LOCKS_GUARD:
        lock = _REPOSITORY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield





def _lag_note(lag: float | None) -> str:
    if lag is None:
        return "unknown"
    return format_duration(lag) if lag >= 1 else "in step"


# Restore drills (checks.drill)

BACKUP_CLEARANCE = 15 * 60.0  # a drill stops between files when the next backup starts sooner than this


class BackupDrill(_BackupJob):
    """Runs the restore drills that are due, one location at a time, in their window and clear of the backups."""

    BOARD = "Restore drills"
    POOL = LONG

    def __init__(self, config: BackupJobConfig, ctx: Context):
        super().__init__(config, ctx)
        self.context = ctx
        self.cancel = threading.Event()  # set by close(), from another thread: stop, reload, timeout
        self.windows = SlowWindows(config, config.drill, partial(_last_at, self.history.last_drill))
        self._starts = Schedule(config.schedule, config.timezone, 0)
        self._running: Driller | None = None

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        """A drill that could not run or finish fails this job, so it is retried at the next poll."""
        outcomes = self.drill(only_due=True)
        problems = [f"{where}: {outcome.why}" for where, outcome in outcomes.items() if outcome.drill.ok is None]
        if problems:
            raise CheckNotRun("; ".join(problems))
        out.judge(self.verdict(self.clock.time()))

    def verdict(self, now: float) -> Verdict:
        lasts = {where: self.history.last_drill(where, conclusive=True) for where in self.drilled}
        return self.windows.verdict(now, lasts, "drilled", "last drill")

    def drill(self, only_due: bool, where: str | None = None,
              progress: Callable[[str, DrillFile], None] = lambda where, file: None) -> dict[str, Outcome]:
        """Drill the locations (those due in an open window, or `where`/all of them now); each drill is recorded.
        One location at a time, never beside an integrity check of the same repository."""
        outcomes = {}
        opened = self.windows.opened(self.clock.trusted_time())
        for name, location in self.drilled.items():
            if where not in (None, name) or (only_due and not self.windows.due(name, opened)):
                continue
            if self.cancel.is_set():
                break
            with _exclusive(location.config):
                self._running = self.driller(name)
                outcomes[name] = self._running.run(progress)
        return outcomes

    def driller(self, where: str) -> Driller:
        other = next((name for name in self.drilled if name != where), None)
        return Driller(self.drilled[where], where, other, self.config.drill, self.history, self.context, self.cancel,
                       self._backup_soon)

    def _backup_soon(self) -> str | None:
        """Why the drill must stop now: the next scheduled backup starts within BACKUP_CLEARANCE."""
        now = self.clock.time()
        start = self._starts.next_deadline(now)
        if start - now < BACKUP_CLEARANCE:
            return f"could not finish: the backup starts at {readable_time(start, self.config.timezone)}"
        return None

    def close(self) -> None:
        """Cancel a drill in progress (its restore stops, the drill is recorded as cancelled); idempotent."""
        self.cancel.set()
        if (running := self._running) is not None:
            running.interrupt()
        super().close()
