"""`vigil verify JOB`: a backup job's integrity checks, run now and recorded where the agent reads them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from agent import children
from agent.clock import Clock
from agent.collector import Context
from agent.ratelimit import RateLimits
from agent.redact import redact
from agent.section import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from agent.statedb import StateDB
from checks.job import BackupVerification

if TYPE_CHECKING:
    from agent.config import LoadedConfig


def verify(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """One line per location checked: ok, DAMAGED or COULD NOT CHECK; exit 1 unless all are ok."""
    config = loaded.config
    jobs = {job.name: job for job in config.backups}
    job = jobs.get(args.job)
    if job is None or job.verify is None:
        verifiable = ", ".join(name for name, j in jobs.items() if j.verify is not None) or "none"
        why = "has no `verify:`" if job is not None else f"is not a backup job in {loaded.source}"
        print(f"vigil: `{args.job}` {why} (jobs with integrity checks: {verifiable})", file=sys.stderr)
        return EXIT_CONFIG
    clock = Clock()
    db = StateDB(config.state_dir)  # the outcome is recorded where the agent reads it
    try:
        checks = BackupVerification(job, Context(clock, RateLimits(clock), config.state_dir, db))
        outcomes = checks.check(only_due=False)
    finally:
        db.close()
        children.stop_all()
    for where, outcome in outcomes.items():
        word = {True: "ok", False: "DAMAGED", None: "COULD NOT CHECK"}[outcome.ok]
        print(f"{word:<16} {args.job} {where}: {redact(outcome.detail)}")
    return EXIT_OK if all(outcome.ok for outcome in outcomes.values()) else EXIT_FAILED
