"""Plain-HTTP peers that answer every GET with one XML body: an object store's listing, hand-written.

moto and Azurite store what a client uploads, so they cannot list the values a broken or
hostile endpoint can send (a negative size, 2^63 and more, pages that never end); the real
SDKs parse this one. The body may be made per request from its path and query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = f'<?xml version="1.0" encoding="utf-8"?>{self.server.body(self.path)}'.encode()
        self.send_response(200)
        self.send_header("content-type", "application/xml")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    body: Callable[[str], str]


@contextmanager
def canned_xml(body: str | Callable[[str], str]) -> Iterator[str]:
    """The peer's base URL while it runs; `body` is the XML, or makes it from each request's path and query."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.body = body if callable(body) else lambda path: body
    thread = threading.Thread(target=server.serve_forever, name="canned-xml", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _RawHandler(BaseHTTPRequestHandler):
    server: RawListing

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("content-type", "application/xml")
        self.send_header("content-length", str(len(self.server.body)))
        self.send_header("x-ms-version", "2021-08-06")
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


class RawListing(ThreadingHTTPServer):
    """Every GET gets `body`, bytes as the test wrote them (its own declaration, bytes that are not UTF-8),
    with Azure's version header."""

    body = b""


@contextmanager
def raw_listing() -> Iterator[RawListing]:
    """The peer while it runs: set its `body`, reach it at `server_port`."""
    peer = RawListing(("127.0.0.1", 0), _RawHandler)
    thread = threading.Thread(target=peer.serve_forever, args=(0.05,), name="raw-listing", daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.shutdown()
        peer.server_close()
        thread.join(10)
