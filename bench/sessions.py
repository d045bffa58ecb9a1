"""Kept sessions at the default interval: a real `vigil run` polling a real upsd (and sshd) for N minutes.

upsd drops a client silent for more than 60 s, and the default interval is 60 s with
jitter, so about half the polls find their session closed. Printed per target: polls,
failed polls (with their reasons), sessions the peer had closed and the agent reopened
within the poll (from the agent's log), and the longest gap between two good polls.
With --ssh, a server whose sshd closes unused connections after 60 s
(UnusedConnectionTimeout, OpenSSH 9.2) is polled too.

    python bench/sessions.py [--minutes 10] [--ssh]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab.harness import Peer, free_port, http_get, wait_until  # noqa: E402
from tests.lab.nut import ON_MAINS, PASSWORD, USER, nut  # noqa: E402
from tests.lab.sshd import sshd  # noqa: E402

REOPENED = "session closed by the peer, opening a new one"


def config(listen: str, state: Path, targets: list[dict]) -> str:
    """No interval, timeout or jitter of its own: the agent's defaults (60 s)."""
    return json.dumps({"listen": listen, "state_dir": str(state), "targets": targets})


def watch(url: str, seconds: float) -> dict[str, list[tuple[float, str]]]:
    """Every run each job made, as (started at, error) in order, read from /status.json each second."""
    runs: dict[str, dict[str, tuple[float, str]]] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, body = http_get(url + "/status.json")
        for job in json.loads(body)["jobs"] if status == 200 else ():
            if job["last_run"]:
                started = datetime.fromisoformat(job["last_run"]).timestamp()
                runs.setdefault(job["name"], {})[job["last_run"]] = (started, job["last_error"])
        time.sleep(1)
    return {name: sorted(found.values()) for name, found in runs.items()}


def report(name: str, runs: list[tuple[float, str]], reopened: int) -> list[str]:
    good = [started for started, error in runs if not error]
    gaps = [later - earlier for earlier, later in zip(good, good[1:], strict=False)]
    failed = Counter(error for _, error in runs if error)
    lines = [f"{name}: {len(runs)} polls, {sum(failed.values())} failed, {reopened} sessions reopened within "
             f"the poll, longest gap between good polls {max(gaps, default=0):.1f} s"]
    return lines + [f"  failed {count}x: {error}" for error, count in failed.most_common()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--ssh", action="store_true", help="also an ssh target whose sshd closes unused "
                                                           "connections after 60 s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-sessions-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        upsd = stack.enter_context(nut(directory / "nut", {"rack1": ON_MAINS}))
        os.environ["VIGIL_BENCH_NUT_PASSWORD"] = PASSWORD
        targets = [{"name": "ups-rack1", "kind": "nut", "host": "127.0.0.1", "port": upsd.port, "ups": "rack1",
                    "username": USER, "password": "${env:VIGIL_BENCH_NUT_PASSWORD}"}]
        if args.ssh:
            server = stack.enter_context(sshd(directory / "sshd", options="UnusedConnectionTimeout 60s\n"))
            targets.append({"name": "server-1", "kind": "ssh", "host": server.host, "port": server.port,
                            "user": server.user, "key_file": str(server.key_file),
                            "known_hosts": str(server.known_hosts)})
        listen = f"127.0.0.1:{free_port()}"
        path = directory / "vigil.yaml"
        path.write_text(config(listen, directory / "state", targets))
        log = directory / "agent.log"
        agent = Peer([sys.executable, "-m", "agent.cli", "--log-level", "debug", "run", "-c", str(path)], log,
                     cwd=ROOT)  # debug: the reopened sessions are logged at that level
        stack.callback(agent.stop)
        wait_until(lambda: http_get(f"http://{listen}/-/ready")[0] == 200, 30, "the agent to be ready")
        runs = watch(f"http://{listen}", args.minutes * 60)
        text = log.read_text()
        print(f"`vigil run`, default interval and jitter, {args.minutes:g} min against a real upsd"
              + (" and sshd" if args.ssh else ""))
        for target in targets:
            reopened = sum(1 for line in text.splitlines() if REOPENED in line and f":{target['name']}" in line)
            print("\n".join(report(target["name"], runs.get(target["name"], []), reopened)))
        failed = sum(1 for found in runs.values() for _, error in found if error)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
