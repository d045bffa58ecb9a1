"""/metrics latency with many series, plain and gzip, and the serving process's memory.

Starts the real exporter and web server in a child process, with synthetic results
for --jobs jobs of --series series each already in the store (as collections would
leave them), then times --scrapes sequential GETs of /metrics from this process, first
plain, then with `Accept-Encoding: gzip` as Prometheus sends it, and prints both sizes
on the wire. The child's CPU time per scrape shows what compression costs the agent.

    python bench/scrape.py [--jobs 20] [--series 1000] [--scrapes 300]
    python bench/scrape.py --jobs 20 --series 7000 --scrapes 100   # a ~1.4 MiB exposition
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procfs import rss_mib  # noqa: E402
from exporters.prometheus import GZIP_LEVEL  # noqa: E402

SERVER = """
import sys, tempfile, threading
from pathlib import Path
from agent.model import JobState, MetricSpec, Result, Sample
from agent.statedb import StateDB
from agent.store import Store
from exporters.web import Site, WebServer
from exporters.webconfig import WebConfig

jobs, per_job = int(sys.argv[1]), int(sys.argv[2])
families = [MetricSpec(f"vigil_bench_value_{i}_bytes", "gauge", "Synthetic.", ("device", "mode")) for i in range(10)]
store = Store(StateDB(Path(tempfile.mkdtemp())))
for j in range(jobs):
    samples = tuple(Sample(families[i % 10].name, i * 1.5, {"device": f"dev{i // 10}", "mode": "m"})
                    for i in range(per_job))
    store.publish(JobState(f"job-{j}", "bench", 60, tuple(families),
                           result=Result(f"job-{j}", "bench", True, 0.0, 0.01, samples), last_success=1.0))
server = WebServer("127.0.0.1:0", Site(store, {}), WebConfig())
server.start()
print(server.url, flush=True)
threading.Event().wait()
"""


last_body: tuple[bytes, bytes] = (b"", b"")


def cpu_ms(pid: int) -> float:
    """The process's user + system CPU time so far, in ms."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def scrapes(url: str, encoding: str, count: int, pid: int) -> tuple[list[float], float]:
    """Per-scrape wall times (ms) and the server's CPU ms per scrape after the first."""
    global last_body
    timings = []
    for i in range(count):
        if i == 1:
            cpu_start = cpu_ms(pid)
        start = time.perf_counter()
        request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
        with urllib.request.urlopen(request, timeout=10) as response:
            wire = response.read()
        timings.append((time.perf_counter() - start) * 1000)  # the client's own inflate is not the agent's
        body = gzip.decompress(wire) if response.headers.get("Content-Encoding") == "gzip" else wire
    last_body = (body, wire)
    return timings, (cpu_ms(pid) - cpu_start) / max(1, count - 1)


def after_a_publish(jobs: int, per_job: int, rounds: int = 20) -> None:
    """In this process: what a scrape costs right after one job published new results."""
    import tempfile

    from agent.model import JobState, MetricSpec, Result, Sample
    from agent.statedb import StateDB
    from agent.store import Store
    from exporters.prometheus import Exposition

    families = [MetricSpec(f"vigil_bench_value_{i}_bytes", "gauge", "Synthetic.", ("device", "mode"))
                for i in range(10)]
    store = Store(StateDB(Path(tempfile.mkdtemp())))

    def publish(job: int, offset: float) -> None:
        samples = tuple(Sample(families[i % 10].name, i * 1.5 + offset, {"device": f"dev{i // 10}", "mode": "m"})
                        for i in range(per_job))
        store.publish(JobState(f"job-{job}", "bench", 60, tuple(families), result=Result(
            f"job-{job}", "bench", True, offset, 0.01, samples), last_success=1.0))

    for job in range(jobs):
        publish(job, 0)
    exposition = Exposition()
    times: dict[bool, list[float]] = {False: [], True: []}
    for gzip_it in (False, True):
        exposition.render(store.snapshot(), True, gzip=gzip_it)
        for n in range(rounds):
            publish(n % jobs, n + 1.0)
            start = time.perf_counter()
            exposition.render(store.snapshot(), True, gzip=gzip_it)
            times[gzip_it].append((time.perf_counter() - start) * 1000)
    store.close()
    print(f"a scrape just after one of the {jobs} jobs published (render included): plain p50 "
          f"{statistics.median(times[False]):.1f} ms, gzip p50 {statistics.median(times[True]):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--series", type=int, default=1000, help="series per job")
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()

    child = subprocess.Popen([sys.executable, "-c", SERVER, str(args.jobs), str(args.series)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = child.stdout.readline().strip() + "metrics"
        series = 0
        for encoding in ("identity", "gzip"):
            timings, cpu = scrapes(url, encoding, args.scrapes, child.pid)
            first, rest = timings[0], sorted(timings[1:])
            body, wire = last_body
            if encoding == "identity":
                series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
                print(f"series: {series} ({args.jobs} jobs x {args.series})")
            print(f"{encoding:>8}: {len(wire) / 1024:.0f} KiB on the wire ({len(body) / 1024:.0f} KiB of text); "
                  f"first scrape {first:.1f} ms; later p50 {statistics.median(rest):.2f} ms, "
                  f"p99 {rest[int(len(rest) * 0.99) - 1]:.2f} ms over {len(rest)}; "
                  f"agent CPU {cpu:.2f} ms per scrape")
        start = time.perf_counter()
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        compressor.compress(body) + compressor.flush()
        print(f"compressing the whole text (level {GZIP_LEVEL}), once per change of a job's results: "
              f"{(time.perf_counter() - start) * 1000:.1f} ms")
        print(f"server RSS: {rss_mib(child.pid):.1f} MiB")
        after_a_publish(args.jobs, args.series)
    finally:
        child.kill()


if __name__ == "__main__":
    main()
