"""Polls per second, round trips per poll, CPU per poll and RSS of kind: ssh.

Twenty targets (the lab sshd under twenty names, tests/lab/sshd.py) are opened once and
polled cycle after cycle on their persistent connections, at most CONCURRENCY at once in
threads, as the agent does. The fast signal must cost one round trip (one exec) per poll.
CPU is shown for this process (the agent side: paramiko and the parsing) and for the
server side (sshd's connection processes and the shells and tools they ran), which on
a real server is the monitored machine's cost.

    python bench/ssh.py [--targets 20] [--cycles 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context, Emitter  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from bench.procfs import rss_mib  # noqa: E402
from collectors.ssh.collector import INVENTORY, SshCollector  # noqa: E402
from tests.collector_kit import build  # noqa: E402
from tests.kinds.ssh.fixtures import ssh_target  # noqa: E402
from tests.lab.sshd import sshd  # noqa: E402

MAIN = frozenset({"main"})


async def cycle(collectors: list[SshCollector], due: frozenset[str]) -> None:
    slots = asyncio.Semaphore(SshCollector.CONCURRENCY)

    async def one(collector: SshCollector) -> None:
        async with slots:
            out = Emitter(SshCollector.METRICS, collector.ctx.api, collector.signals(), strict=True)
            await asyncio.to_thread(collector.collect, out, due)
            assert not out.errors, out.errors

    await asyncio.gather(*(one(collector) for collector in collectors))


def server_cpu(sshd_pid: int) -> float:
    """CPU seconds of sshd's connection processes and their reaped children (the poll scripts)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == sshd_pid:
            total += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def execs(collectors: list[SshCollector]) -> int:
    return sum(sum(collector.ctx.api.requests().values()) for collector in collectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-ssh-"))
    clock = Clock()
    db = StateDB(work / "state")
    base = Context(clock, RateLimits(clock), work / "state", db)
    with sshd(work / "sshd") as server:
        collectors = [build(ssh_target(server, name=f"server-{index:02d}"), replace(base, api=type(base.api)()))
                      for index in range(args.targets)]
        started = time.perf_counter()
        asyncio.run(_open(collectors))
        opened = time.perf_counter() - started
        try:
            asyncio.run(cycle(collectors, MAIN))  # warm: imports, first parse
            before_execs, before_cpu, before_wall = execs(collectors), time.process_time(), time.perf_counter()
            before_server = server_cpu(server.peer.pid)
            for _ in range(args.cycles):
                asyncio.run(cycle(collectors, MAIN))
            polls = args.targets * args.cycles
            wall = time.perf_counter() - before_wall
            cpu = time.process_time() - before_cpu
            served = server_cpu(server.peer.pid) - before_server
            round_trips = (execs(collectors) - before_execs) / polls
            inventory_started, inventory_execs = time.perf_counter(), execs(collectors)
            asyncio.run(cycle(collectors[:1], frozenset({"main", INVENTORY})))
            inventory = time.perf_counter() - inventory_started
            print(f"targets={args.targets} cycles={args.cycles} concurrency={SshCollector.CONCURRENCY} "
                  f"cpus={os.cpu_count()}")
            print(f"connect (open) all targets: {opened:.2f} s, {opened / args.targets * 1000:.0f} ms each")
            print(f"fast polls: {polls / wall:.1f} polls/s, {wall / args.cycles * 1000:.0f} ms per cycle of "
                  f"{args.targets}")
            print(f"round trips (execs) per fast poll: {round_trips:g}")
            print(f"agent CPU per poll: {cpu / polls * 1000:.1f} ms; server side (sshd, shell, tools): "
                  f"{served / polls * 1000:.1f} ms")
            print(f"one poll with the inventory: {inventory:.2f} s, {execs(collectors) - inventory_execs} execs")
            print(f"agent RSS: {rss_mib(os.getpid()):.1f} MiB")
        finally:
            for collector in collectors:
                collector.close()
    db.close()


async def _open(collectors: list[SshCollector]) -> None:
    slots = asyncio.Semaphore(SshCollector.CONCURRENCY)

    async def one(collector: SshCollector) -> None:
        async with slots:
            await asyncio.to_thread(collector.open)

    await asyncio.gather(*(one(collector) for collector in collectors))


if __name__ == "__main__":
    main()
