"""What a wrong-password storm or flood costs the agent, and whether a good scraper is served meanwhile.

Basic auth with a bcrypt cost-10 hash (what `vigil web hash-password` and `htpasswd -nBC 10`
make). First, on an endpoint in this process, a fresh one each: for SECONDS each, CLIENTS
threads repeating one wrong password, then a new wrong password every request, then the
good password; requests per second and the CPU used (clients included: an upper bound);
then the median time of a first try for a known user with a wrong password and for an
unknown user (from addresses of their own, under the lockout). Then floods on a real
`vigil run`, a fresh agent each (tests/lab/flood.py), while a scraper with good credentials
scrapes every 0.1 s on new connections: 160 distinct wrong passwords at once; 1,200 in
about a second; 40 a second for FLOOD_SECONDS; 1,200 from 200 addresses each with another
user name. Prints what the flood got, what the scraper got, and the agent's CPU seconds.

    python bench/web_auth.py [--clients 4] [--seconds 3] [--flood-seconds 10]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.statedb import StateDB  # noqa: E402
from agent.store import Store  # noqa: E402
from bench.procfs import cpu_seconds  # noqa: E402
from exporters.web import Site, WebServer  # noqa: E402
from exporters.webauth import MAX_FAILURES  # noqa: E402
from exporters.webconfig import WebConfig  # noqa: E402
from exporters.webpassword import hash_password  # noqa: E402
from tests.lab.flood import USER, Scraper, flood, guess  # noqa: E402
from tests.lab.harness import free_port  # noqa: E402

PASSWORD = "correct horse battery staple"
HASHED = hash_password(PASSWORD)
_counter = itertools.count()


def request(port: int, user: str, password: str, source: str = "127.0.0.1") -> tuple[int, float]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    connection.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
    status = connection.getresponse().status
    connection.close()
    return status, time.perf_counter() - started


@contextmanager
def endpoint():
    """A fresh endpoint in this process (no remembered outcomes, no lockouts); its port."""
    with tempfile.TemporaryDirectory() as state:
        store = Store(StateDB(Path(state)))
        port = free_port()
        server = WebServer(f"127.0.0.1:{port}", Site(store, {}), WebConfig(basic_auth_users={USER: HASHED}))
        server.start()
        try:
            yield port
        finally:
            server.stop()
            store.close()


def storm(port: int, clients: int, seconds: float, password: Callable[[], str]) -> tuple[float, float, Counter]:
    """(requests per second, CPU seconds per wall second, status codes) while clients hammer."""
    codes, count, stop = Counter(), threading.Lock(), time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            status, _ = request(port, USER, password())
            with count:
                codes[status] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu, wall = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - wall
    return codes.total() / wall, (time.process_time() - cpu) / wall, codes  # clients are in this process too


def in_process(clients: int, seconds: float) -> None:
    for name, password in (("one wrong password, repeated", lambda: "wrong"),
                           ("a new wrong password each time", lambda: f"wrong {next(_counter)}"),
                           ("the right password (remembered)", lambda: PASSWORD)):
        with endpoint() as port:
            rate, cpu, codes = storm(port, clients, seconds, password)
        print(f"{clients} clients, {name}: {rate:7.0f} req/s, CPU {cpu:.2f} cores, answers {dict(codes)}")
    with endpoint() as port:  # under the lockout: each try from an address of its own, MAX_FAILURES of each
        known = [request(port, USER, f"first {n}", f"127.0.2.{n + 1}")[1] for n in range(MAX_FAILURES)]
        unknown = [request(port, f"nobody{n}", "x", f"127.0.3.{n + 1}")[1] for n in range(MAX_FAILURES)]
    print(f"first try, known user wrong password: median {statistics.median(known) * 1000:.1f} ms; "
          f"unknown user: median {statistics.median(unknown) * 1000:.1f} ms")


@contextmanager
def agent(directory: Path):
    """A real `vigil run` with basic auth; its pid and port."""
    port = free_port()
    (directory / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{HASHED}'\n")
    (directory / "vigil.yaml").write_text(f"listen: 127.0.0.1:{port}\nstate_dir: {directory / 'state'}\n"
                                          f"web_config: {directory / 'web.yml'}\n"
                                          "targets:\n  - {name: monitor, kind: host}\n")
    with open(directory / "agent.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(directory / "vigil.yaml")],  # noqa: S603 (our own agent)
                                   stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
    try:
        scraper = Scraper(port, PASSWORD)
        deadline = time.monotonic() + 30
        while scraper.scrape() != 200:  # the first good scrape runs its one bcrypt: remembered from now on
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the agent did not serve: see {directory / 'agent.log'}")
            time.sleep(0.2)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(10)


def floods(flood_seconds: float) -> None:
    addresses = [f"127.0.1.{n}" for n in range(1, 201)]
    scenarios = (
        ("160 distinct wrong passwords at once", lambda port: flood(port, 160)),
        ("1,200 random passwords at once", lambda port: flood(port, 1200)),
        (f"40 random passwords a second for {flood_seconds:g} s",
         lambda port: flood(port, int(40 * flood_seconds), per_second=40)),
        ("1,200 from 200 addresses, each another user",
         lambda port: flood(port, 1200, sources=addresses, request=lambda n: guess(n, user=f"nobody{n}"))),
    )
    for name, run in scenarios:
        with tempfile.TemporaryDirectory() as directory, agent(Path(directory)) as (pid, port):
            scraper = Scraper(port, PASSWORD, every=0.1)
            cpu, wall = cpu_seconds(pid), time.monotonic()
            scraper.start()
            try:
                answers = run(port)
            finally:
                scraped = scraper.stop()
            took, cpu = time.monotonic() - wall, cpu_seconds(pid) - cpu
            print(f"{name}: flood answers {dict(answers)} in {took:.1f} s; agent CPU {cpu:.2f} s; "
                  f"good scraper {scraped.count(200)} of {len(scraped)} answered 200 {dict(Counter(scraped))}, "
                  f"slowest {max(scraper.took) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.getLogger("exporters.web").setLevel(logging.ERROR)  # the endpoints in this process: no login lines
    print(f"{os.cpu_count()} cores (shared: figures are inflated by other work)")
    in_process(args.clients, args.seconds)
    floods(args.flood_seconds)


if __name__ == "__main__":
    main()
