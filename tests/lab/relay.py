"""A TCP relay of the tests' own, on loopback in front of a peer (moto, azurite): it counts the bytes each way and
the connections still open, so a test knows how much a client really read from the server and whether it left a
socket behind. It runs in threads of the test process; `splice` is also the forward proxy's tunnel."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from tests.lab.harness import serving


def _uncounted(size: int) -> None:
    pass


def splice(client: socket.socket, upstream: socket.socket, sent: Callable[[int], None] = _uncounted,
           received: Callable[[int], None] = _uncounted) -> None:
    """Pass bytes both ways until both sides are done; `sent(n)` and `received(n)` are told each chunk's size
    (sent: client to upstream)."""
    pump = threading.Thread(target=_pipe, args=(upstream, client, received), daemon=True)
    pump.start()
    _pipe(client, upstream, sent)
    pump.join(10)


def _pipe(source: socket.socket, sink: socket.socket, counted: Callable[[int], None]) -> None:
    try:
        while chunk := source.recv(65536):
            counted(len(chunk))
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class _Handler(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        with socket.create_connection(self.server.upstream, timeout=10) as upstream:
            self.server.count("open", 1)
            try:
                splice(self.request, upstream, lambda size: self.server.count("up", size),
                       lambda size: self.server.count("down", size))
            finally:
                self.server.count("open", -1)


class Relay(socketserver.ThreadingTCPServer):
    """`down`: bytes the peer sent its clients; `up`: the other way; `open`: connections relayed now."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.down = self.up = self.open = 0
        self._lock = threading.Lock()

    def count(self, what: str, amount: int) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + amount)

    def reset(self) -> None:
        """Zero the byte counters (open connections stay counted)."""
        with self._lock:
            self.down = self.up = 0

    def url(self, url: str) -> str:
        """The peer's URL (`https://127.0.0.1:PORT/path`) through the relay: the same, with the relay's port."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{self.server_address[1]}"))


@contextmanager
def relay(url: str) -> Iterator[Relay]:
    """A relay in front of the peer at `url` (its host and port); `Relay.url(url)` is the address to use."""
    parts = urlsplit(url)
    server = Relay((parts.hostname, parts.port))
    with serving(server, "relay"):
        yield server
