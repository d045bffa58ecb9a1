"""How long Store.publish holds the event loop, with the state database free and locked.

Publishes a new last success for 50 jobs in turn and times each call on the calling
thread (the event loop's, in the agent), then how long close() takes to write what
is still pending. "locked" holds a write lock on the file from another connection for a while,
as an admin's open `sqlite3` shell or a backup tool would.

    python bench/store.py [--publishes 500] [--lock 2]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.model import JobState  # noqa: E402
from agent.statedb import FILENAME, StateDB  # noqa: E402
from agent.store import Store  # noqa: E402


def run(publishes: int, lock_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(StateDB(Path(tmp)))
        holder = None
        if lock_seconds:
            blocker = sqlite3.connect(Path(tmp) / FILENAME, check_same_thread=False)
            blocker.execute("BEGIN IMMEDIATE")
            holder = threading.Timer(lock_seconds, blocker.rollback)
            holder.start()
        times = []
        for n in range(publishes):
            state = JobState(f"job{n % 50}", "host", 60, last_success=1_700_000_000.0 + n)
            start = time.perf_counter()
            store.publish(state)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.close()
        drained = time.perf_counter() - start
        if holder is not None:
            holder.join()
        times.sort()
        label = f"locked {lock_seconds:g}s" if lock_seconds else "free"
        print(f"{label:>10}: publish p50 {statistics.median(times) * 1e6:7.1f} us, "
              f"p99 {times[int(len(times) * 0.99)] * 1e6:7.1f} us, max {times[-1] * 1e3:7.2f} ms; "
              f"close() wrote what was pending in {drained:.2f}s; db ok={store.db.ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=500)
    parser.add_argument("--lock", type=float, default=2.0, help="seconds the file stays locked")
    args = parser.parse_args()
    run(args.publishes, 0)
    run(args.publishes, args.lock)


if __name__ == "__main__":
    main()
