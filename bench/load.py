"""/metrics under load while every job collects each second: many scrapers, slowloris, idle connections.

A real agent runs --jobs mixed jobs (every kind, against the lab: bench/mixed_agent.py)
collecting every --interval seconds. Then, one after the other, for --seconds each:
one scraper alone (bench/scrape.py's sequential scrapes, a connection each, the baseline),
then on one kept-alive connection as Prometheus scrapes; --clients scrapers at once, each
scraping again as soon as it is answered; one good scraper while --bad connections are
held open, half slowloris (a request sent one byte a second, never finished), half idle
(nothing sent), each dropped one opened again at once; and the same with --flood idle
connections, more than the agent's 512-connection limit. A scrape is good only when it
is a 200 with a whole exposition (tests/lab/load.py). Prints a table.

    python bench/load.py [--jobs 40] [--interval 1] [--clients 50] [--seconds 30] [--bad 200] [--flood 600]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mixed_agent import mixed_agent  # noqa: E402
from bench.procfs import cpu_seconds, rss_mib  # noqa: E402
from bench.scrape import scrapes  # noqa: E402
from tests.lab.load import Storm, bad_clients, good_scrapes, percentile, scrape_storm, wait_for_cycle  # noqa: E402

COLUMNS = ("scenario", "good", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "agent CPU s")


def row(name: str, storm: Storm, cpu: float) -> tuple[str, ...]:
    ms = [s * 1000 for s in storm.latencies] or [float("nan")]
    return (name, str(len(storm.latencies)), str(len(storm.errors)), *(f"{percentile(ms, q):.0f}" for q in
            (0.5, 0.95, 0.99)), f"{max(ms):.0f}", f"{cpu:.1f}")


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))) for r in (COLUMNS, *rows)]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a job's collections")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="each scenario's length")
    parser.add_argument("--bad", type=int, default=200, help="slowloris + idle connections held")
    parser.add_argument("--flood", type=int, default=600, help="idle connections, beyond the 512 limit")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-load-") as tmp, \
            mixed_agent(Path(tmp), args.jobs, args.interval) as agent:
        took = wait_for_cycle(agent.url, agent.jobs, timeout=120).seconds
        print(f"{agent.jobs} mixed jobs every {args.interval:g} s; first full cycle {took:.1f} s; "
              f"agent RSS {rss_mib(agent.pid):.1f} MiB; {os.cpu_count()} cores (shared: figures are inflated "
              "by whatever else the machine runs)", flush=True)
        rows = []

        def measured(name: str, run) -> None:
            cpu = cpu_seconds(agent.pid)
            storm = run()
            rows.append(row(name, storm, cpu_seconds(agent.pid) - cpu))
            print(f"{name}: {storm.figures()}" + (f"; first errors: {storm.errors[:3]}" if storm.errors else ""),
                  flush=True)

        def alone() -> Storm:
            count, started = max(10, int(args.seconds * 5)), time.monotonic()
            timings, _ = scrapes(agent.url + "metrics", "gzip", count, agent.pid)
            return Storm(time.monotonic() - started, [t / 1000 for t in timings])

        measured("1 scraper alone, a connection each", alone)
        measured("1 scraper alone, kept alive", lambda: scrape_storm(agent.url, agent.jobs, 1, args.seconds))
        measured(f"{args.clients} scrapers at once",
                 lambda: scrape_storm(agent.url, agent.jobs, args.clients, args.seconds))
        for slowloris, idle in ((args.bad // 2, args.bad - args.bad // 2), (0, args.flood)):
            with bad_clients(agent.url, slowloris, idle) as held:
                measured(f"1 scraper, {slowloris} slowloris + {idle} idle held",
                         lambda: good_scrapes(agent.url, agent.jobs, args.seconds))
            print(f"  the agent ended {held.dropped} of the held connections (each opened again)", flush=True)
        print()
        print(table(rows))
        print(f"\nagent RSS at the end {rss_mib(agent.pid):.1f} MiB")


if __name__ == "__main__":
    main()
