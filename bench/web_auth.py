"""What a wrong-password storm costs the agent, and whether timing tells users apart.

Serves /metrics with basic auth (a bcrypt cost-10 hash, as `htpasswd -nBC 10` makes),
then for SECONDS each: CLIENTS threads repeating one wrong password; the same with a
new wrong password every request; and a good scraper alone. Prints requests per
second and the CPU the server used (all its threads), then the median time of a first
(uncached) try for a known user with a wrong password and for an unknown user.

    python bench/web_auth.py [--clients 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bcrypt  # noqa: E402

from agent.statedb import StateDB  # noqa: E402
from agent.store import Store  # noqa: E402
from exporters.web import Site, WebServer  # noqa: E402
from exporters.webconfig import WebConfig  # noqa: E402
from tests.lab.harness import free_port  # noqa: E402

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def request(port: int, user: str, password: str) -> tuple[int, float]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
    status = connection.getresponse().status
    connection.close()
    return status, time.perf_counter() - started


def storm(port: int, clients: int, seconds: float, password) -> tuple[float, float]:
    """(requests per second, server CPU seconds per wall second) while clients hammer."""
    done, count, stop = [0], threading.Lock(), time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            request(port, "prometheus", password())
            with count:
                done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu, wall = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - wall
    return done[0] / wall, (time.process_time() - cpu) / wall  # clients are in this process too: an upper bound


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    with tempfile.TemporaryDirectory() as state:
        store = Store(StateDB(Path(state)))
        port = free_port()
        server = WebServer(f"127.0.0.1:{port}", Site(store, {}), WebConfig(basic_auth_users={"prometheus": hashed}))
        server.start()
        try:
            for name, password in (("one wrong password, repeated", lambda: "wrong"),
                                   ("a new wrong password each time", lambda: f"wrong {next(_counter)}"),
                                   ("the right password (cached)", lambda: PASSWORD)):
                rate, cpu = storm(port, args.clients, args.seconds, password)
                print(f"{args.clients} clients, {name}: {rate:7.0f} req/s, CPU {cpu:.2f} cores")
            known = [request(port, "prometheus", f"first {next(_counter)}")[1] for _ in range(15)]
            unknown = [request(port, f"nobody{next(_counter)}", "x")[1] for _ in range(15)]
            print(f"first try, known user wrong password: median {statistics.median(known) * 1000:.1f} ms; "
                  f"unknown user: median {statistics.median(unknown) * 1000:.1f} ms")
        finally:
            server.stop()
            store.close()


if __name__ == "__main__":
    main()
