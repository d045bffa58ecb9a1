"""A small HTTP forward proxy of the tests' own (the lab has no squid): CONNECT tunnels for https, absolute
URLs passed on for http, every request line kept in `seen`, so a test knows the probe went through it.
It runs in threads of the test process, on loopback."""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from tests.lab.harness import serving
from tests.lab.relay import splice


class _Handler(socketserver.BaseRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.server.seen.append(line)
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            head = head.split(b"\r\n\r\n", 1)[1]
        else:
            url = urlsplit(target)
            upstream = socket.create_connection((url.hostname, url.port or 80), timeout=10)
        with upstream:
            upstream.sendall(head)
            splice(self.request, upstream)


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def forward_proxy() -> Iterator[_Proxy]:
    proxy = _Proxy()
    with serving(proxy, "forward-proxy"):
        yield proxy
