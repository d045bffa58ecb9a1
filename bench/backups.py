"""Wall time and CPU seconds to evaluate N backup jobs' metadata in one cycle (no data reads).

Creates one real repository (restic, borg) or dump directory (files) with a week of
backdated backups and copies it N times (a copy is a whole repository, so setup stays
short), then runs one evaluation of every job the way the agent does: through the
scheduler's Job.run, with the backup pool's slots. restic-sftp serves the copies
through the lab's sshd, restic-s3 uploads them to moto. Setup time is not counted.
The first cycle lists every repository and measures each newest backup once (restic
stats / borg info); the next ones are the steady state, where an unchanged
repository costs one look at its fingerprint. CPU is the agent process's own plus
its children's (the tools), from getrusage.

    python bench/backups.py [--jobs 50] [--kind restic|borg|files|restic-sftp|restic-s3] [--workers N]

`--drill` instead prints what a restore drill costs on a local restic and borg repository:
a sample of `--sample-mib` (1 GiB) in 64 MiB files restored through the engine, cache cold
(wall, CPU of the agent and its tools, bytes restored: the content; metadata comes on top),
and the cost of one tool process per file (restic dump loads the whole index each time,
borg extract the archive's metadata): small files restored one by one, in files per second.

    python bench/backups.py --drill [--sample-mib 1024] [--small-files 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.scheduler import TOOLS, Job, Runtime, Slots, pool_sizes  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from checks.config import BackupJobConfig  # noqa: E402
from checks.drill import Digest  # noqa: E402
from checks.job import BackupDrill, backup_jobs  # noqa: E402
from checks.schedule import Schedule  # noqa: E402
from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo  # noqa: E402
from tests.lab.moto import moto  # noqa: E402
from tests.lab.sshd import sshd  # noqa: E402

NIGHTS = 7
SCHEDULE, DEADLINE = "0 1 * * *", 4 * 3600.0


def nights() -> list[datetime]:
    """01:10 UTC on each of the last nights, the newest inside the last closed window."""
    last = Schedule(SCHEDULE, "UTC", DEADLINE).last_closed(time.time()).start
    newest = datetime.fromtimestamp(last, UTC) + timedelta(minutes=10)
    return [newest - timedelta(days=n) for n in range(NIGHTS - 1, -1, -1)]


def make_template(kind: str, directory: Path) -> Path:
    """One repository (or dump folder) with a backup each night; what every job's copy starts from."""
    directory.mkdir()
    if kind.startswith("restic"):
        repo = ResticRepo(directory)
        for night in nights():
            repo.backup(night.strftime("%Y-%m-%d %H:%M:%S"))
        return Path(repo.repository)
    if kind == "borg":
        repo = BorgRepo(directory)
        for night in nights():
            repo.create(f"nightly-{night:%Y%m%d}", night.strftime("%Y-%m-%dT%H:%M:%S"))
        return Path(repo.repository)
    dumps = directory / "dumps"
    dumps.mkdir()
    for night in nights():
        dump = dumps / f"db-{night:%Y%m%d}.sql.gz"
        dump.write_bytes(os.urandom(4096))
        os.utime(dump, (night.timestamp(), night.timestamp()))
    return dumps


def make_location(kind: str, template: Path, copy: Path, peer) -> dict:
    shutil.copytree(template, copy)
    secret = "${env:BENCH_PASSWORD}"
    if kind == "restic":
        return {"kind": "restic", "repository": str(copy), "password": secret}
    if kind == "restic-sftp":
        return {"kind": "restic", "repository": f"sftp://{peer.user}@{peer.host}:{peer.port}/{copy}",
                "password": secret, "key_file": str(peer.key_file), "known_hosts": str(peer.known_hosts)}
    if kind == "restic-s3":
        client = peer.client()
        for path in copy.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), "bench", f"{copy.name}/{path.relative_to(copy)}")
        return {"kind": "restic", "repository": f"s3:{peer.endpoint_url}/bench/{copy.name}", "password": secret,
                "env": {"AWS_ACCESS_KEY_ID": peer.access_key_id, "AWS_SECRET_ACCESS_KEY": peer.secret_access_key}}
    if kind == "borg":
        return {"kind": "borg", "repository": str(copy), "passphrase": secret}
    return {"kind": "files", "path": str(copy), "pattern": "db-*.sql.gz"}


def cpu_seconds() -> float:
    """User and system CPU of this process and of its children that ended (the tools)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peer(kind: str, root: Path):
    if kind == "restic-sftp":
        return sshd(root / "sshd")
    if kind == "restic-s3":
        return moto(root / "moto")
    return contextlib.nullcontext()


async def cycle(jobs: list[Job], workers: int, clock: Clock) -> tuple[float, list[float]]:
    runtime = Runtime(clock, Slots({TOOLS: workers}))
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
    parser.add_argument("--kind", choices=("restic", "borg", "files", "restic-sftp", "restic-s3"), default="restic")
    parser.add_argument("--workers", type=int, default=pool_sizes(8)[TOOLS],
                        help="the backup pool's slots (default: the agent's, one per core)")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--drill", action="store_true", help="the cost of a restore drill instead (restic, borg)")
    parser.add_argument("--sample-mib", type=int, default=1024, help="--drill: the sample restored, in MiB")
    parser.add_argument("--small-files", type=int, default=100, help="--drill: small files restored one by one")
    args = parser.parse_args()
    os.environ["BENCH_PASSWORD"] = PASSWORD
    if args.drill:
        drill_cost(args.sample_mib, args.small_files)
        return

    with tempfile.TemporaryDirectory() as tmp, peer(args.kind, Path(tmp)) as server:
        root = Path(tmp)
        print(f"setting up {args.jobs} {args.kind} locations with {NIGHTS} nightly backups each ...", flush=True)
        if args.kind == "restic-s3":
            server.client().create_bucket(Bucket="bench")
        template = make_template(args.kind, root / "template")
        configs = [BackupJobConfig.model_validate({
            "name": f"job-{n}", "schedule": SCHEDULE, "timezone": "UTC", "deadline": DEADLINE,
            "primary": make_location(args.kind, template, root / f"job-{n}", server)}) for n in range(args.jobs)]
        clock = Clock()
        db = StateDB(root / "state")
        context = Context(clock, RateLimits(clock), root / "state", db)
        jobs = [Job(spec, context) for spec in (backup_jobs(config)[0] for config in configs)]
        for n in range(args.cycles):
            label = "first cycle (lists and measures each newest backup once)" if n == 0 else "steady cycle"
            cpu = cpu_seconds()
            wall, durations = asyncio.run(cycle(jobs, args.workers, clock))
            print(f"{label}: {args.jobs} {args.kind} jobs in {wall:.2f} s wall, {cpu_seconds() - cpu:.2f} CPU-s, "
                  f"{args.workers} workers; per job p50 {statistics.median(durations):.3f} s, "
                  f"max {durations[-1]:.3f} s", flush=True)
        db.close()


# Restore drills: a sample's cost, and the cost of a tool process per file

LARGE = 64 << 20  # the sample's files


def drill_cost(sample_mib: int, small_files: int) -> None:
    """Per tool: the small files' backup and their one-by-one restores (the index already holds the sample),
    then the sample's drill through the engine (the sample's backup the newest), with a cold cache."""
    for kind in ("restic", "borg"):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            repo = ResticRepo(root) if kind == "restic" else BorgRepo(root)
            large = max(1, (sample_mib << 20) // LARGE)
            print(f"{kind}: backing up {large} x {LARGE >> 20} MiB, then {small_files} files of 4 KiB ...",
                  flush=True)
            for n in range(large):
                (repo.data / "large").mkdir(exist_ok=True)
                (repo.data / "large" / f"{n:03}").write_bytes(os.urandom(LARGE))
            for n in range(small_files):
                (repo.data / "small").mkdir(exist_ok=True)
                (repo.data / "small" / f"{n:04}").write_bytes(os.urandom(4096))
            back_up(repo, "large")
            back_up(repo, "small")
            location = {"kind": kind, "repository": repo.repository,
                        "password" if kind == "restic" else "passphrase": "${env:BENCH_PASSWORD}"}
            clock = Clock()
            db = StateDB(root / "state")
            context = Context(clock, RateLimits(clock), root / "state", db)
            drills = BackupDrill(BackupJobConfig.model_validate({
                "name": "bench", "schedule": SCHEDULE, "timezone": "UTC", "deadline": DEADLINE, "primary": location,
                "drill": {"files": large + 2, "max_bytes": f"{large * LARGE}B"}}), context)
            source = drills.drilled["primary"]
            smalls = list(source.candidates(source.backups()))
            with measured() as cost:
                for candidate in smalls:
                    source.restore(candidate, Digest(candidate, threading.Event()), threading.Event())
            print(f"{kind}: {len(smalls)} small files restored one by one: {len(smalls) / cost['wall']:.1f} files/s, "
                  f"{cost['wall'] / len(smalls) * 1000:.0f} ms and {cost['cpu'] / len(smalls) * 1000:.0f} CPU-ms "
                  f"a file", flush=True)
            back_up(repo, "large")  # the sample's files in the newest backup again (deduplicated)
            with measured() as cost:
                outcome = drills.drill(only_due=False)["primary"]
            drill = outcome.drill
            print(f"{kind} drill of {drill.files} files, {drill.bytes_read / 2**20:.0f} MiB restored: "
                  f"{cost['wall']:.1f} s wall, {cost['cpu']:.1f} CPU-s (agent and tools), "
                  f"{drill.bytes_read / 2**20 / cost['wall']:.0f} MiB/s; {drill.detail}", flush=True)
            drills.close()
            db.close()


def back_up(repo: ResticRepo | BorgRepo, folder: str) -> None:
    if isinstance(repo, ResticRepo):
        repo.run("backup", str(repo.data / folder))
    else:
        repo.run("create", f"{repo.repository}::{folder}-{time.time_ns()}", str(repo.data / folder))


@contextlib.contextmanager
def measured():
    """Wall seconds and CPU seconds (this process and its ended children) of the block."""
    cost: dict[str, float] = {}
    cpu, start = cpu_seconds(), time.perf_counter()
    yield cost
    cost["wall"] = time.perf_counter() - start
    cost["cpu"] = cpu_seconds() - cpu


if __name__ == "__main__":
    main()
