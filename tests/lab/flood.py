"""A basic-auth flood on the endpoint, and a scraper with good credentials beside it.

`flood()` sends each request on a connection of its own from one thread (non-blocking
sockets and a selector), all at once or at a given rate, from a chosen loopback address,
and counts the status codes it gets back: 1,200 requests leave in about a second, as a
password-guessing tool sends them. `Scraper` scrapes /metrics on a new connection every
`every` seconds meanwhile and keeps each answer. Shared by tests/test_web.py (which
asserts what each side got) and bench/web_auth.py (which prints it with the CPU used).
"""

from __future__ import annotations

import base64
import http.client
import resource
import secrets
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

USER = "prometheus"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def guess(n: int, user: str = USER) -> bytes:
    """The n-th request of a flood: GET /metrics with a new random password for `user`."""
    return (f"GET /metrics HTTP/1.1\r\nHost: vigil\r\nAuthorization: {basic(user, secrets.token_hex(8))}\r\n"
            "\r\n").encode()


def flood(port: int, count: int, per_second: float | None = None, sources: Sequence[str] = ("127.0.0.1",),
          request: Callable[[int], bytes] = guess, patience: float = 60.0) -> Counter[str]:
    """Send `count` requests, each on a new connection from the next of `sources` (all at once, or
    `per_second`), and count the answers: the status code, or `closed` (no answer), `error`, or
    `no answer` when `patience` seconds are up."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a descriptor for each connection, at once
    wanted = count + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    selector = selectors.DefaultSelector()
    answers: Counter[str] = Counter()
    started, sent, pending = time.monotonic(), 0, {}
    try:
        while (sent < count or pending) and time.monotonic() < started + patience:
            due = count if per_second is None else min(count, int((time.monotonic() - started) * per_second) + 1)
            for n in range(sent, due):
                sock = socket.socket()
                sock.setblocking(False)
                sock.bind((sources[n % len(sources)], 0))
                sock.connect_ex(("127.0.0.1", port))
                pending[sock] = request(n)
                selector.register(sock, selectors.EVENT_WRITE)
            sent = max(sent, due)
            for key, events in selector.select(timeout=0.01):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        _done(selector, sock, pending, answers, "error")
                        continue
                    try:
                        sock.send(pending[sock])  # a few hundred bytes: the empty send buffer takes them
                    except OSError:
                        _done(selector, sock, pending, answers, "error")
                        continue
                    pending[sock] = b""
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    _done(selector, sock, pending, answers, "error")
                    continue
                pending[sock] += chunk
                if b"\r\n" in pending[sock] or not chunk:
                    status = pending[sock].split(b" ", 2)[1].decode() if pending[sock] else "closed"
                    _done(selector, sock, pending, answers, status)
    finally:
        for sock in list(pending):
            _done(selector, sock, pending, answers, "no answer")
        selector.close()
    return answers


def _done(selector: selectors.BaseSelector, sock: socket.socket, pending: dict, answers: Counter, what: str) -> None:
    selector.unregister(sock)
    del pending[sock]
    sock.close()
    answers[what] += 1


class Scraper(threading.Thread):
    """GET /metrics with good credentials every `every` seconds, each on a new connection, until stopped;
    `answers` holds each status code (or the error) in order, `took` each one's seconds."""

    def __init__(self, port: int, password: str, every: float = 0.25, timeout: float = 10.0):
        super().__init__(daemon=True)
        self.port, self.every, self.timeout = port, every, timeout
        self.authorization = basic(USER, password)
        self.answers: list[int | str] = []
        self.took: list[float] = []
        self.stopping = threading.Event()

    def scrape(self) -> int | str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            connection.request("GET", "/metrics", headers={"Authorization": self.authorization})
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__
        finally:
            connection.close()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self.answers.append(self.scrape())
            self.took.append(time.monotonic() - started)
            self.stopping.wait(self.every)

    def stop(self) -> list[int | str]:
        self.stopping.set()
        self.join()
        return self.answers
