"""Time to evaluate N backup jobs' metadata in one cycle (no data reads).

Creates N real repositories (restic, borg) or dump directories (files), each with a
week of backdated backups, then runs one evaluation of every job the way the agent
does: through the scheduler's Job.run, with the backup pool's slots. Setup time is not counted.
The first cycle measures each new backup once (restic stats / borg info); the second
is the steady state.

    python bench/backups.py [--jobs 50] [--kind restic|borg|files] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.scheduler import Job, Runtime, Slots  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from checks.config import BackupJobConfig  # noqa: E402
from checks.job import backup_jobs  # noqa: E402
from checks.schedule import Schedule  # noqa: E402
from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo  # noqa: E402

NIGHTS = 7
SCHEDULE, DEADLINE = "0 1 * * *", 4 * 3600.0


def nights() -> list[datetime]:
    """01:10 UTC on each of the last nights, the newest inside the last closed window."""
    last = Schedule(SCHEDULE, "UTC", DEADLINE).last_closed(time.time()).start
    newest = datetime.fromtimestamp(last, UTC) + timedelta(minutes=10)
    return [newest - timedelta(days=n) for n in range(NIGHTS - 1, -1, -1)]


def make_location(kind: str, directory: Path) -> dict:
    directory.mkdir()
    if kind == "restic":
        repo = ResticRepo(directory)
        for night in nights():
            repo.backup(night.strftime("%Y-%m-%d %H:%M:%S"))
        return {"kind": "restic", "repository": repo.repository, "password": "${env:BENCH_PASSWORD}"}
    if kind == "borg":
        repo = BorgRepo(directory)
        for night in nights():
            repo.create(f"nightly-{night:%Y%m%d}", night.strftime("%Y-%m-%dT%H:%M:%S"))
        return {"kind": "borg", "repository": repo.repository, "passphrase": "${env:BENCH_PASSWORD}"}
    dumps = directory / "dumps"
    dumps.mkdir()
    for night in nights():
        dump = dumps / f"db-{night:%Y%m%d}.sql.gz"
        dump.write_bytes(os.urandom(4096))
        os.utime(dump, (night.timestamp(), night.timestamp()))
    return {"kind": "files", "path": str(dumps), "pattern": "db-*.sql.gz"}


async def cycle(jobs: list[Job], workers: int, clock: Clock) -> tuple[float, list[float]]:
    runtime = Runtime(clock, Slots({"backup": workers}))
    start = time.perf_counter()
    results = await asyncio.gather(*(job.run(runtime) for job in jobs))
    wall = time.perf_counter() - start
    failed = [result for result in results if not result.ok or result.verdict.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs not ok, e.g. {failed[0].error or failed[0].verdict}")
    return wall, sorted(result.duration for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--kind", choices=("restic", "borg", "files"), default="restic")
    parser.add_argument("--workers", type=int, default=4, help="threads: the agent gives backup checks workers/2 (4)")
    args = parser.parse_args()
    os.environ["BENCH_PASSWORD"] = PASSWORD

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"setting up {args.jobs} {args.kind} locations with {NIGHTS} nightly backups each ...", flush=True)
        configs = [BackupJobConfig.model_validate({
            "name": f"job-{n}", "schedule": SCHEDULE, "timezone": "UTC", "deadline": DEADLINE,
            "primary": make_location(args.kind, root / f"job-{n}")}) for n in range(args.jobs)]
        clock = Clock()
        db = StateDB(root / "state")
        context = Context(clock, RateLimits(clock), root / "state", db)
        jobs = [Job(spec, context) for spec in (backup_jobs(config)[0] for config in configs)]
        for label in ("first cycle (measures each newest backup once)", "steady cycle"):
            wall, durations = asyncio.run(cycle(jobs, args.workers, clock))
            print(f"{label}: {args.jobs} {args.kind} jobs in {wall:.2f} s with {args.workers} workers; "
                  f"per job p50 {statistics.median(durations):.2f} s, max {durations[-1]:.2f} s")
        db.close()


if __name__ == "__main__":
    main()
