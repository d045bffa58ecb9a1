"""`vigil verify JOB` and `vigil drill JOB`: a backup job's integrity checks or restore drill, run now and recorded
where the agent reads them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from agent import children
from agent.clock import Clock
from agent.collector import Context
from agent.ratelimit import RateLimits
from agent.reasons import describe
from agent.redact import redact
from agent.section import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from agent.statedb import StateDB
from agent.units import format_duration, format_size
from checks.config import BackupJobConfig
from checks.drill import PASSED
from checks.history import DrillFile
from checks.job import BackupDrill, BackupVerification

if TYPE_CHECKING:
    from agent.config import LoadedConfig


def verify(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """One line per location checked: ok, DAMAGED or COULD NOT CHECK; exit 1 unless all are ok."""
    job = _job(args.job, loaded, "verify", "integrity checks")
    if job is None:
        return EXIT_CONFIG
    with _context(loaded) as context:
        outcomes = BackupVerification(job, context).check(only_due=False)
    for where, outcome in outcomes.items():
        word = {True: "ok", False: "DAMAGED", None: "COULD NOT CHECK"}[outcome.ok]
        print(f"{word:<16} {args.job} {where}: {redact(outcome.detail)}")
    return EXIT_OK if all(outcome.ok for outcome in outcomes.values()) else EXIT_FAILED


WORDS = {"match": "MATCH", "restored": "RESTORED", "skipped": "SKIPPED", "mismatch": "MISMATCH",
         "damaged": "DAMAGED", "unreadable": "COULD NOT DRILL"}


def drill(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """One line per file (its result and the reference it was compared with), then each location's files, bytes
    and time; exit 1 unless every file passed. `--dry-run` prints the plan and reads no data."""
    job = _job(args.job, loaded, "drill", "restore drills")
    if job is None:
        return EXIT_CONFIG
    if args.location is not None and not job.drill.drilled(args.location):
        print(f"vigil: `{args.job}` drills `{job.drill.locations}`, not {args.location}", file=sys.stderr)
        return EXIT_CONFIG
    with _context(loaded) as context:
        drills = BackupDrill(job, context)
        if args.dry_run:
            return _dry_run(drills, args.location)
        outcomes = drills.drill(only_due=False, where=args.location, progress=_print_file)
    for where, outcome in outcomes.items():
        done = outcome.drill
        word = {True: "ok", False: "FAILED", None: "COULD NOT DRILL"}[done.ok]
        print(f"{word:<16} {args.job} {where}: {done.files} files, {format_size(done.bytes_read)} read in "
              f"{format_duration(done.finished_at - done.started_at)}" + (f": {done.detail}" if done.detail else ""))
    passed = all(outcome.drill.ok and all(f.result in (*PASSED, "skipped") for f in outcome.files)
                 for outcome in outcomes.values())
    return EXIT_OK if outcomes and passed else EXIT_FAILED


def _print_file(where: str, file: DrillFile) -> None:
    reference = f" against {file.reference}" if file.reference else ""
    print(f"{WORDS[file.result]:<16} {where} {file.path}{reference}" + (f": {file.detail}" if file.detail else ""))


def _dry_run(drills: BackupDrill, only: str | None) -> int:
    """The plan of each location, as the drill would make it now: no data read, nothing recorded."""
    code = EXIT_OK
    for where in drills.drilled:
        if only not in (None, where):
            continue
        try:
            backup_id, planned = drills.driller(where).prepare()
        except Exception as exc:  # the listing fails: so would the drill
            print(f"{'COULD NOT DRILL':<16} {where}: {describe(exc)}")
            code = EXIT_FAILED
            continue
        for pick in planned.picks:
            print(f"{pick.why.upper():<16} {where} {pick.candidate.path} ({format_size(pick.candidate.size)})")
        if (oversized := planned.oversized_row(drills.config.drill.max_bytes)) is not None:
            print(f"{'OVERSIZED':<16} {where} {oversized.path} ({format_size(oversized.size)}): {oversized.detail}")
        coverage = f", {planned.coverage:.0%} of the ring passed after it" if planned.coverage is not None else ""
        note = planned.oversized_note(drills.config.drill.max_bytes)
        print(f"{'PLAN':<16} {where}: {len(planned.picks)} files, {format_size(planned.bytes)} from {backup_id}"
              f"{coverage}" + (f"; {note}" if note else ""))
    return code


def _job(name: str, loaded: LoadedConfig, key: str, what: str) -> BackupJobConfig | None:
    """The backup job named on the command line, if it has `key:` set; else None, with why on stderr."""
    jobs = {job.name: job for job in loaded.config.backups}
    job = jobs.get(name)
    if job is None or getattr(job, key) is None:
        having = ", ".join(n for n, j in jobs.items() if getattr(j, key) is not None) or "none"
        why = f"has no `{key}:`" if job is not None else f"is not a backup job in {loaded.source}"
        print(f"vigil: `{name}` {why} (jobs with {what}: {having})", file=sys.stderr)
        return None
    return job


@contextmanager
def _context(loaded: LoadedConfig) -> Iterator[Context]:
    """What a job needs when run by hand; the outcome is recorded where the agent reads it."""
    clock = Clock()
    db = StateDB(loaded.config.state_dir)
    try:
        yield Context(clock, RateLimits(clock), loaded.config.state_dir, db)
    finally:
        db.close()
        children.stop_all()
