"""500 mixed targets for 10 minutes: the first full cycle, then whether the agent's memory stays flat.

A real agent runs --jobs mixed jobs (every kind, against the lab: bench/mixed_agent.py)
every --interval seconds. Printed: how long the first full cycle took (every job with a
result) and which jobs were not ok; then the agent's RSS once a minute from the end of that
cycle, at start and end, and the least-squares slope. `make soak` runs it.

    python bench/soak.py [--minutes 10] [--jobs 500] [--interval 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mixed_agent import mixed_agent  # noqa: E402
from bench.procfs import rss_mib  # noqa: E402
from tests.lab.load import soak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between a job's collections")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-soak-") as tmp, \
            mixed_agent(Path(tmp), args.jobs, args.interval) as agent:
        ready_rss = rss_mib(agent.pid)
        run = soak(agent.url, agent.pid, agent.jobs, args.minutes * 60, every=60.0)
        print(f"{agent.jobs} mixed jobs every {args.interval:g} s for {args.minutes:g} min, {os.cpu_count()} cores "
              "(shared: times are inflated by whatever else the machine runs)")
        print(f"RSS when ready: {ready_rss:.1f} MiB")
        print(run.figures())
        print("\n".join(run.cycle.by_kind()))
        for label, jobs in (("not ok after the first cycle", run.failed_first), ("not ok at the end", run.failed_last)):
            for line in jobs[:10]:
                print(f"  {label}: {line}")
        print("minute  RSS MiB")
        for seconds, mib in run.rss:
            print(f"{seconds / 60:6.1f}  {mib:7.1f}")


if __name__ == "__main__":
    main()
