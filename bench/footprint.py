"""The agent's start-up time and idle memory with only the host collector.

Starts `vigil run` on a host-only config, times spawn -> /-/ready answering 200, lets
it collect for a while, then reads its resident memory. Repeats and prints each run.

    python bench/footprint.py [--runs 3] [--idle 10]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procfs import rss_mib  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run(idle: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "vigil.yaml"
        config.write_text(f"listen: 127.0.0.1:{port}\nstate_dir: {tmp}/state\n"
                          "targets:\n  - {name: monitor, kind: host, interval: 2s}\n")
        start = time.perf_counter()
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(config)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.01)
            ready = time.perf_counter() - start
            time.sleep(idle)
            return ready, rss_mib(agent.pid)
        finally:
            agent.terminate()
            agent.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10, help="seconds to let it collect before measuring")
    args = parser.parse_args()
    results = [one_run(args.idle) for _ in range(args.runs)]
    for number, (ready, rss) in enumerate(results, 1):
        print(f"run {number}: start-up to ready {ready * 1000:.0f} ms, idle RSS {rss:.1f} MiB")
    print(f"median: start-up {sorted(r for r, _ in results)[len(results) // 2] * 1000:.0f} ms, "
          f"idle RSS {sorted(m for _, m in results)[len(results) // 2]:.1f} MiB (budget 40 MB)")


if __name__ == "__main__":
    main()
