"""200 simulated UPS units polled concurrently over SNMP: wall time, PDUs, CPU and memory.

One snmpsim serves N recordings (alternately APC PowerNet and RFC 1628 three-phase), each
its own community; the agent's side runs the jobs as the agent does (the scheduler's
Job.run, kind slots, one SnmpEngine for all) for several cycles. snmpsim's own CPU is not
counted: it runs in its own process. The first cycle includes MIB detection (sysObjectID).

    python bench/ups.py [--devices 200] [--cycles 5] [--v3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context  # noqa: E402
from agent.config import AgentConfig  # noqa: E402
from agent.jobs import target_jobs  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.scheduler import Job, Runtime, Slots  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from bench.procfs import cpu_seconds as process_cpu  # noqa: E402
from bench.procfs import rss_mib  # noqa: E402
from tests.lab.snmpsim import DATA, USERS, snmpsim  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def targets(devices: int, port: int, v3: bool) -> list[dict]:
    found = []
    for n in range(devices):
        if v3:
            auth, _, priv, _ = USERS["vigil"]
            snmp = {"version": 3, "user": "vigil", "auth_protocol": auth.lower(), "priv_protocol": priv.lower(),
                    "auth_key": "${env:BENCH_AUTH}", "priv_key": "${env:BENCH_PRIV}", "context": f"unit-{n:03d}"}
        else:
            os.environ[f"BENCH_COMMUNITY_{n}"] = f"unit-{n:03d}"
            snmp = {"version": "2c", "community": f"${{env:BENCH_COMMUNITY_{n}}}"}
        found.append({"name": f"unit-{n:03d}", "kind": "ups", "host": "127.0.0.1", "port": port, "snmp": snmp,
                      "interval": "60s", "timeout": "20s"})
    return found


async def cycle(jobs: list[Job], runtime: Runtime) -> tuple[float, list]:
    start = time.perf_counter()
    results = await asyncio.gather(*(job.run(runtime) for job in jobs))
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--v3", action="store_true", help="SNMPv3 authPriv (SHA + AES) instead of v2c")
    args = parser.parse_args()
    _, os.environ["BENCH_AUTH"], _, os.environ["BENCH_PRIV"] = USERS["vigil"]

    with tempfile.TemporaryDirectory(prefix="vigil-bench-ups-") as tmp:
        root = Path(tmp)
        data = root / "recordings"
        data.mkdir()
        for n in range(args.devices):
            source = "apc" if n % 2 == 0 else "rfc1628-3phase"
            shutil.copy(DATA / f"{source}.snmprec", data / f"unit-{n:03d}.snmprec")
        print(f"starting snmpsim with {args.devices} recordings ...", flush=True)
        with snmpsim(root / "sim", data) as lab:
            config = AgentConfig.model_validate({"targets": targets(args.devices, lab.port, args.v3)})
            clock = Clock()
            db = StateDB(root / "state")
            context = Context(clock, RateLimits(clock), root / "state", db)
            jobs = [Job(spec, context) for spec in target_jobs(config)]
            runtime = Runtime(clock, Slots({"collect": 8}))

            async def run_all():
                rss_before = rss_mib(os.getpid())
                figures = []
                for number in range(args.cycles):
                    cpu, simulator = cpu_seconds(), process_cpu(lab.pid)
                    wall, results = await cycle(jobs, runtime)
                    failed = [result for result in results if not result.ok]
                    if failed:
                        raise SystemExit(f"{len(failed)} polls failed, e.g. {failed[0].error}")
                    figures.append((wall, cpu_seconds() - cpu))
                    print(f"cycle {number + 1}: {args.devices} devices in {wall:.2f} s, agent CPU "
                          f"{figures[-1][1]:.2f} s, snmpsim CPU {process_cpu(lab.pid) - simulator:.2f} s "
                          "(one process: the cycle cannot be shorter)", flush=True)
                return rss_before, figures

            rss_before, figures = asyncio.run(run_all())
            pdus = sum(count for (api, _), count in context.api.requests().items() if api == "snmp")
            steady = figures[1:] or figures
            polls = args.devices * args.cycles
            print(f"SNMP {'v3 authPriv' if args.v3 else 'v2c'}, {args.devices} devices, {args.cycles} cycles")
            print(f"wall per cycle: first {figures[0][0]:.2f} s (with MIB detection), steady median "
                  f"{statistics.median(w for w, _ in steady):.2f} s")
            print(f"PDUs per device per poll: {pdus / polls:.2f} overall "
                  f"(steady: APC 1, RFC 1628 2; detection adds 1 on the first poll)")
            print(f"CPU per 100 device-polls (steady): "
                  f"{100 * statistics.median(c for _, c in steady) / args.devices:.2f} s")
            print(f"agent process RSS: {rss_before:.0f} MiB before the first cycle, "
                  f"{rss_mib(os.getpid()):.0f} MiB after")
            db.close()


if __name__ == "__main__":
    main()
