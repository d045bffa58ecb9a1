"""Peers that say nothing: a TCP port that accepts and holds every connection, one that drops SYNs,
a UDP port that drops.

They stand for a host whose service hangs (a wedged sshd, a firewall that eats replies):
the client's connect succeeds, or its datagram is sent, and then nothing comes back. The
accepted sockets stay open until `stop()`, so a client sees silence, not a reset.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

UNRESOLVABLE = "vigil-fault.invalid"  # RFC 2606: `.invalid` never resolves


@dataclass
class Blackhole:
    """A bound socket on 127.0.0.1 that never answers; `accepted` counts TCP connections held."""

    sock: socket.socket
    held: list[socket.socket] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.sock.getsockname()[1]

    @property
    def accepted(self) -> int:
        return len(self.held)

    def _hold(self) -> None:
        """Accept every connection and keep it open, reading nothing and sending nothing."""
        self.sock.settimeout(0.2)  # so that stop() is seen without a connection to wake accept()
        while not self.stopping.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(connection)

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        for connection in self.held:
            connection.close()


@contextmanager
def tcp_blackhole() -> Iterator[Blackhole]:
    """A TCP listener that accepts and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    hole = Blackhole(sock)
    thread = threading.Thread(target=hole._hold, name=f"tcp-blackhole {hole.port}", daemon=True)
    thread.start()
    try:
        yield hole
    finally:
        hole.stop()
        thread.join(5)


@contextmanager
def unaccepted() -> Iterator[int]:
    """A port whose handshakes the kernel completes and nobody accepts: a connect succeeds and then not a word
    comes (no SSH banner). Yields the port."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield silent.getsockname()[1]


@contextmanager
def syn_dropped() -> Iterator[int]:
    """A port whose SYNs are dropped, as a host behind a firewall: its listener's queue is full
    and never accepted from, so a connect hangs. Yields the port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = []
        while True:
            client = socket.socket()
            client.settimeout(0.5)
            try:
                client.connect(listener.getsockname())
            except OSError:  # the queue is full: from now on a connect hangs
                client.close()
                break
            queued.append(client)
        try:
            yield listener.getsockname()[1]
        finally:
            for client in queued:
                client.close()


@contextmanager
def udp_blackhole() -> Iterator[Blackhole]:
    """A bound UDP socket that is never read: every datagram is dropped, none answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    hole = Blackhole(sock)
    try:
        yield hole
    finally:
        hole.stop()
