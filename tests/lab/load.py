"""Load on a running agent: concurrent scrapers, slowloris and idle connections, a cycle, RSS.

Shared by tests/test_load.py (short runs that assert no errors) and bench/load.py,
bench/soak.py (long runs that print figures). A scrape counts as good only when it is a
200 whose body is whole: the gzip stream decompresses with its CRC, the text ends with a
newline, every job has its `vigil_up` line and the agent's own trailer families are there.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TRAILER = b"\nvigil_state_database_ok "  # the agent's own families come after every job's
REQUEST_START = b"GET /metrics HTTP/1.1\r\nHost: vigil\r\nUser-Agent: slowloris\r\n"  # never finished


@dataclass
class Storm:
    """What the scrapers saw: one latency per good scrape, one line per bad one."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_read: int = 0

    def figures(self) -> str:
        return (f"{len(self.latencies)} good scrapes ({len(self.latencies) / self.seconds:.0f}/s), "
                f"{len(self.errors)} errors; {latency_summary(self.latencies)}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def latency_summary(seconds: list[float]) -> str:
    if not seconds:
        return "no latencies"
    ms = [value * 1000 for value in seconds]
    return (f"p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, "
            f"p99 {percentile(ms, 0.99):.0f} ms, max {max(ms):.0f} ms")


def whole(body: bytes, jobs: int) -> str:
    """'' when `body` is a complete exposition of `jobs` jobs, else what is wrong with it."""
    if not body.endswith(b"\n"):
        return f"body of {len(body)} bytes does not end with a newline"
    ups = body.count(b"\nvigil_up{")
    if ups != jobs:
        return f"{ups} vigil_up series, not {jobs}"
    if TRAILER not in body:
        return "no vigil_state_database_ok: the agent's own families are missing"
    return ""


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").strip("/").split(":")
    return host, int(port)


def _scrape(connection: http.client.HTTPConnection, jobs: int) -> tuple[str, int]:
    """One GET of /metrics as Prometheus sends it: what is wrong with the answer ('' if nothing), bytes read."""
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        wire = response.read()
        body = gzip.decompress(wire) if response.getheader("Content-Encoding") == "gzip" else wire
        return (f"status {response.status}" if response.status != 200 else whole(body, jobs)), len(wire)
    except (OSError, http.client.HTTPException, EOFError, gzip.BadGzipFile) as exc:
        connection.close()  # the next request connects again
        return f"{type(exc).__name__}: {exc}", 0


def _record(storm: Storm, problem: str, elapsed: float, size: int) -> None:
    storm.bytes_read += size
    if problem:
        storm.errors.append(problem)
    else:
        storm.latencies.append(elapsed)


def _scraper(address: tuple[str, int], jobs: int, until: float, storm: Storm, lock: threading.Lock,
             timeout: float) -> None:
    """One Prometheus-like scraper: a kept-alive connection, gzip, as fast as answers come."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    while time.monotonic() < until:
        started = time.monotonic()
        problem, size = _scrape(connection, jobs)
        with lock:
            _record(storm, problem, time.monotonic() - started, size)
    connection.close()


def scrape_storm(url: str, jobs: int, clients: int = 50, seconds: float = 5.0, timeout: float = 30.0) -> Storm:
    """`clients` scrapers in threads of their own, each scraping without pause for `seconds`."""
    storm, lock = Storm(seconds), threading.Lock()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_scraper, args=(_address(url), jobs, until, storm, lock, timeout),
                                daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 5)
    return storm


def good_scrapes(url: str, jobs: int, seconds: float, timeout: float = 30.0) -> Storm:
    """One well-behaved scraper, five times a second, a new connection each time (timed with the connect)."""
    storm = Storm(seconds)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        connection = http.client.HTTPConnection(*_address(url), timeout=timeout)
        problem, size = _scrape(connection, jobs)
        connection.close()
        _record(storm, problem, time.monotonic() - started, size)
        time.sleep(0.2)  # the pace of one scraper, not a wait for a condition
    return storm


@dataclass
class Held:
    """Bad connections kept open: how many the server dropped (and were opened again)."""

    slowloris: int
    idle: int
    dropped: int = 0
    open_now: int = 0


@contextmanager
def bad_clients(url: str, slowloris: int, idle: int, byte_every: float = 1.0) -> Iterator[Held]:
    """Keep `slowloris` connections sending a request one byte at a time, never finishing it, and
    `idle` ones that send nothing, all open (one the server ends is opened again at once)."""
    address = _address(url)
    held = Held(slowloris, idle)
    stop = threading.Event()

    def connect() -> socket.socket:
        sock = socket.create_connection(address, timeout=5)
        sock.setblocking(False)
        return sock

    socks = [[connect(), 0] for _ in range(slowloris + idle)]
    held.open_now = len(socks)

    def trickle() -> None:
        while not stop.wait(byte_every):
            for index, entry in enumerate(socks):
                sock, sent = entry
                if _ended(sock):
                    sock.close()
                    held.dropped += 1
                    entry[:] = [connect(), 0]
                elif index < slowloris:
                    try:
                        sock.send(REQUEST_START[sent % len(REQUEST_START):][:1])
                        entry[1] = sent + 1
                    except OSError:
                        pass  # ended: seen on the next round

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join(byte_every + 10)
        for sock, _ in socks:
            sock.close()


def _ended(sock: socket.socket) -> bool:
    """On a non-blocking socket: has the server ended it (EOF, a reset, or an answer before closing)?"""
    try:
        sock.recv(4096)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def status(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/status.json", timeout=30) as response:
        return json.load(response)


@dataclass
class Cycle:
    """The first full cycle: when each job first had a result, and the status document at its end."""

    seconds: float  # until every job had a result (or the timeout)
    document: dict
    first_result: dict[str, float]  # job name -> seconds until its first result

    def by_kind(self) -> list[str]:
        """One line per kind: its jobs, when the last of them had its first result, their median run."""
        kinds: dict[str, list[dict]] = {}
        for job in self.document["jobs"]:
            kinds.setdefault(job["kind"], []).append(job)
        return [f"{kind:>8}: {len(jobs):3d} jobs, all collected after "
                f"{max(self.first_result.get(job['name'], float('inf')) for job in jobs):5.1f} s, median run "
                f"{statistics.median(job['last_duration_seconds'] or 0 for job in jobs):.2f} s"
                for kind, jobs in sorted(kinds.items())]


def wait_for_cycle(url: str, jobs: int, timeout: float) -> Cycle:
    """Poll /status.json until every one of `jobs` jobs has a result, or `timeout` s have passed."""
    started = time.monotonic()
    first: dict[str, float] = {}
    while True:
        document = status(url)
        now = time.monotonic() - started
        for job in document["jobs"]:
            if job["last_run"] is not None:
                first.setdefault(job["name"], now)
        if len(first) >= jobs or now > timeout:
            return Cycle(now, document, first)
        time.sleep(1.0)  # polling the agent's own status (500 jobs' worth), bounded by `timeout`


def failed(document: dict) -> list[str]:
    """'name: error' of every job that has not run or whose last run failed."""
    return [f"{job['name']}: {job['last_error'] or job['state']}" for job in document["jobs"]
            if job["last_run"] is None or job["state"] != "ok"]


def rss_slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 2:
        return 0.0
    return statistics.linear_regression([t for t, _ in points], [m for _, m in points]).slope * 60


@dataclass
class Soak:
    """A long run of the agent: its first full cycle, then its RSS every few seconds."""

    cycle: Cycle  # the first full cycle
    failed_first: list[str]  # jobs not ok after the first cycle
    failed_last: list[str]  # jobs not ok at the end
    errors: int  # failed runs over the whole soak, all jobs
    skipped: int  # runs skipped because the job's previous run was still going
    rss: list[tuple[float, float]]  # (seconds since the first cycle, MiB)

    def figures(self) -> str:
        start, end = self.rss[0][1], self.rss[-1][1]
        return (f"first full cycle {self.cycle.seconds:.1f} s; RSS {start:.1f} MiB after it, {end:.1f} MiB after "
                f"{self.rss[-1][0] / 60:.1f} min (slope {rss_slope(self.rss):+.2f} MiB/min); failed runs "
                f"{self.errors}, skipped {self.skipped}; not ok: {len(self.failed_first)} then {len(self.failed_last)}")


def soak(url: str, pid: int, jobs: int, seconds: float, every: float = 10.0, cycle_timeout: float = 600.0) -> Soak:
    """Wait for the first full cycle, then sample the agent's RSS every `every` s for `seconds`."""
    from bench.procfs import rss_mib

    cycle = wait_for_cycle(url, jobs, cycle_timeout)
    started = time.monotonic()
    points = [(0.0, rss_mib(pid))]
    while (elapsed := time.monotonic() - started) < seconds:
        time.sleep(min(every, seconds - elapsed))  # the sampling pace
        points.append((time.monotonic() - started, rss_mib(pid)))
    final = status(url)
    return Soak(cycle, failed(cycle.document), failed(final), sum(job["errors_total"] for job in final["jobs"]),
                sum(job["skipped_total"] for job in final["jobs"]), points)
