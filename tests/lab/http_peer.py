"""A small HTTPS server of the tests' own, for the HTTP transport: it misbehaves on request.

Each path is one behaviour a real API shows sometimes: 429 with Retry-After (seconds or an
HTTP date), 503 without, a body larger than allowed (declared or chunked), a body (or the
status line and headers too) that dribbles in slowly, an error body, HTML where JSON was
expected, a redirect. It runs in a thread of the test process with a certificate from its
own CA (tests/lab/pki.py).
"""

from __future__ import annotations

import email.utils
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.lab.pki import PKI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        self.body = self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        with self.server.lock:
            self.server.hits[url.path] += 1
            hit = self.server.hits[url.path]
            self.server.seen.append((self.command, url.path, dict(self.headers)))
        failures = int(query.get("fail", "0"))
        if url.path == "/limited" and hit <= failures:
            return self._json(429, {"errors": ["Too many requests"]}, {"Retry-After": query.get("after", "2")})
        if url.path == "/dated" and hit <= failures:
            when = email.utils.formatdate(float(query["at"]), usegmt=True)
            return self._json(429, {"errors": ["Too many requests"]}, {"Retry-After": when})
        if url.path == "/busy" and hit <= failures:
            return self._json(503, {"error": {"code": "ServiceUnavailable", "message": "try later"}})
        if url.path == "/stall" and hit <= failures:
            time.sleep(float(query.get("for", "3")))
            return self._json(200, {"late": True})
        if url.path == "/error":
            return self._json(int(query.get("code", "500")),
                              {"error": {"code": "Forbidden", "message": "Missing role Reports.Read.All"}})
        if url.path == "/html":
            return self._raw(200, b"<html>Service is starting</html>", "text/html")
        if url.path == "/huge":
            return self._raw(200, b"x" * int(query["size"]), "application/octet-stream")
        if url.path == "/chunked":
            return self._chunked(int(query["chunks"]), int(query.get("chunk", "65536")))
        if url.path == "/slow":
            return self._slow(int(query["size"]), float(query["every"]), "head" in query)
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"https://127.0.0.1:{self.server.server_port}/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        headers = {name.lower(): value for name, value in self.headers.items()}
        return self._json(200, {"path": url.path, "query": query, "headers": headers})

    def _json(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
        self._raw(code, json.dumps(body).encode(), "application/json", headers)

    def _raw(self, code: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self, chunks: int, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(chunks):
                self.wfile.write(f"{size:x}\r\n".encode() + b" " * size + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up once it had enough

    def _slow(self, size: int, every: float, head: bool) -> None:
        """`size` spaces of JSON, one every `every` seconds; with `head`, the status line and headers before."""
        start = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
        slow = start * head + b" " * size
        try:
            if not head:
                self.wfile.write(start)
            for index in range(len(slow)):
                self.wfile.write(slow[index:index + 1])
                self.wfile.flush()
                with self.server.lock:
                    self.server.dripped += 1
                if self.server.stopping.wait(every):
                    return
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pki: PKI):
        super().__init__(("127.0.0.1", 0), _Handler)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(pki.server_cert, pki.server_key)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.dripped = 0  # bytes of slow answers sent, a byte at a time
        self.stopping = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose (a body too large, a timeout) are not errors here

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_port}"


@contextmanager
def http_peer(pki: PKI) -> Iterator[_Server]:
    server = _Server(pki)
    thread = threading.Thread(target=server.serve_forever, name="http-peer", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
