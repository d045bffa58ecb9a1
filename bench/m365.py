"""One m365 collection of a large tenant against the Graph contract fake: calls, time, rate, memory.

The fake (tests/fakes/graph.py) runs in a child process with 5,000 app registrations
(a secret and a certificate each), 100 SKUs and 20,000 managed devices, at Graph's
default page size of 100; this process runs the collector exactly as the agent does
(registry, open, collect with every signal due, close). Printed per cycle: Graph calls
by endpoint, wall time, the peak request rate the fake saw (requests in any 1 s), and
this process's RSS. A second tenant twice as large shows that calls grow with pages
only. The first cycle includes the authority's discovery and the token.

    python bench/m365.py [--apps 5000] [--skus 100] [--devices 20000] [--rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procfs import rss_mib  # noqa: E402

TENANT = "7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11"
CLIENT_ID = "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SECRET = "bench~secret"


def serve(directory: str, apps: int, skus: int, devices: int, pipe) -> None:
    """The child: a populated fake until told to stop; then the times of the requests it saw."""
    from tests.fakes.graph import GraphFake
    from tests.kinds.m365.fixtures import busy_tenant
    from tests.lab.pki import make_pki

    pki = make_pki(Path(directory) / "pki")
    with GraphFake(pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET) as fake:
        busy_tenant(fake)
        fake.populate(apps, skus, devices)
        pipe.send((fake.url, str(pki.ca)))
        while pipe.recv() == "times":
            pipe.send(fake.request_times)
            fake.request_times = []


def peak_rate(times: list[float]) -> int:
    """The most requests inside any one-second window."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def cycles(target: dict, ctx, count: int, pipe) -> list[tuple[Counter, float, int]]:
    from agent.collector import Emitter
    from tests import collector_kit as kit

    collector = kit.build(target, ctx)
    results = []
    await collector.open()
    try:
        for _ in range(count):
            before = Counter(ctx.api.requests())
            started = time.perf_counter()
            out = Emitter(collector.METRICS, ctx.api, collector.signals(), strict=True)
            await collector.collect(out, frozenset(collector.signals()))
            elapsed = time.perf_counter() - started
            assert not out.errors, out.errors
            pipe.send("times")
            calls = Counter(ctx.api.requests())
            calls.subtract(before)
            results.append((+calls, elapsed, peak_rate(pipe.recv())))
    finally:
        await collector.close()
    return results


def run(apps: int, skus: int, devices: int, rate: float, tmp: str) -> None:
    from dataclasses import replace

    from agent.clock import Clock
    from agent.collector import Context
    from agent.ratelimit import RateLimits
    from agent.statedb import StateDB

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(tmp, apps, skus, devices, child), daemon=True)
    server.start()
    try:
        url, ca = parent.recv()
        Path(tmp, "secret").write_text(SECRET)
        target = {"name": "bench", "kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID,
                  "client_secret": f"${{file:{tmp}/secret}}", "authority": url, "graph_url": url, "ca_file": ca,
                  "requests_per_second": rate, "usage_reports": True, "timeout": 120}
        clock = Clock()
        db = StateDB(Path(tmp) / "state")
        ctx = replace(Context(clock, RateLimits(clock), Path(tmp) / "state", db), kind="m365", target="bench")
        print(f"tenant: {apps} apps, {skus} SKUs, {devices} devices; {rate:g} requests/s budget")
        for number, (calls, elapsed, peak) in enumerate(asyncio.run(cycles(target, ctx, 2, parent)), 1):
            graph = {api: n for (api, code), n in calls.items() if api not in ("token", "authority")}
            print(f"  cycle {number}: {sum(graph.values())} Graph calls, {elapsed:.2f} s, peak {peak} requests/s, "
                  f"RSS {rss_mib(os.getpid()):.0f} MiB")
            by_api: Counter[str] = Counter()
            for (api, _code), n in calls.items():
                by_api[api] += n
            print("    " + ", ".join(f"{api} {n}" for api, n in sorted(by_api.items())))
        db.close()
    finally:
        parent.send("stop")
        server.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--skus", type=int, default=100)
    parser.add_argument("--devices", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=5.0, help="requests_per_second of the target")
    args = parser.parse_args()
    print(f"RSS before importing the collector: {rss_mib(os.getpid()):.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        run(args.apps, args.skus, args.devices, args.rate, tmp)
    with tempfile.TemporaryDirectory() as tmp:
        run(args.apps * 2, args.skus * 2, args.devices * 2, args.rate, tmp)


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
