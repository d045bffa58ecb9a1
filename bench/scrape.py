"""/metrics latency with many series, and the serving process's memory.

Starts the real exporter and web server in a child process, with synthetic results
for --jobs jobs of --series series each already in the store (as collections would
leave them), then times --scrapes sequential GETs of /metrics from this process.

    python bench/scrape.py [--jobs 20] [--series 1000] [--scrapes 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procfs import rss_mib  # noqa: E402

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
        timings = []
        for _ in range(args.scrapes):
            start = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
            timings.append((time.perf_counter() - start) * 1000)
        first, rest = timings[0], sorted(timings[1:])
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(f"series: {series} ({args.jobs} jobs x {args.series}) body: {len(body) / 1024:.0f} KiB")
        print(f"first scrape (renders every job): {first:.1f} ms")
        print(f"later scrapes: p50 {statistics.median(rest):.2f} ms, "
              f"p99 {rest[int(len(rest) * 0.99) - 1]:.2f} ms over {len(rest)} scrapes")
        print(f"server RSS: {rss_mib(child.pid):.1f} MiB")
    finally:
        child.kill()


if __name__ == "__main__":
    main()
