"""Hostile answers a contract fake serves on request: a gzip bomb, a body too large to hold, a drip.

Each is what a broken or malicious server (or whatever answers in its place: a captive
portal, a proxy, a spoofed name) can send a client that trusts it to be an API. A fake
serves one in place of its documented answer when a test asks (`GraphFake.hostile`,
`MerakiFake.hostile`, `VeeamFake.hostile`); `HostilePeer` serves one to every request, in
place of any HTTPS server (a restic REST server). Bodies are generated while they are
written, so the fake never holds one in memory, and writing ends when the client hangs up:
`active` counts the answers still being written, which for a drip is the clients still
reading it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from itertools import chain

from tests.fakes.server import Served
from tests.lab.pki import PKI

BLOCK = 1 << 20  # the bomb's and the large body's unit


class Streamed:
    """One hostile answer, served to every request the fake routes to it, each written as generated."""

    def __init__(self, headers: dict[str, str], chunks: Callable[[], Iterator[bytes]], *, every: float = 0.0,
                 status: int = 200, drip_head: bool = False):
        self.headers, self.chunks, self.every, self.status = headers, chunks, every, status
        self.drip_head = drip_head  # the status line and headers come a byte at a time too
        self.served = self.active = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def write(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True  # a body cut short leaves nothing to keep alive
        head = (f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in self.headers.items()) + "\r\n").encode()
        with self._lock:
            self.served += 1
            self.active += 1
        try:
            for chunk in chain(_bytes(head) if self.drip_head else (head,), self.chunks()):
                handler.wfile.write(chunk)
                if self.every:
                    handler.wfile.flush()
                    if self._hung_up(handler.connection) or self._stopping.is_set():
                        return
        except (OSError, ssl.SSLError):
            pass  # the client hung up: what a bounded client does
        finally:
            with self._lock:
                self.active -= 1

    def _hung_up(self, connection: socket.socket) -> bool:
        """Wait `every` seconds; True as soon as the client closes (a client waiting for its answer sends nothing
        more, so the socket turns readable only at its end): `active` then drops at once, not at a later write."""
        readable, _, _ = select.select([connection], [], [], self.every)
        return bool(readable)

    def stop(self) -> None:
        """End every drip still being written (the test is over)."""
        self._stopping.set()


def gzip_bomb(inflated: int, content_type: str = "application/json") -> Streamed:
    """`inflated` bytes of JSON whitespace, sent gzip-compressed about 1000:1 (Content-Encoding: gzip).

    One megabyte of spaces compressed after a full flush is the same few hundred bytes each
    time, so the body is that block repeated, then a final block and the gzip trailer (the
    CRC of what was sent, counted as it goes).
    """
    spaces = b" " * BLOCK
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: the gzip wrapper
    first = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush(zlib.Z_FINISH)[:-8]  # the final empty block, without the trailer
    blocks = max(1, inflated // BLOCK)

    def chunks() -> Iterator[bytes]:
        crc = zlib.crc32(spaces)
        yield first
        for _ in range(blocks - 1):
            crc = zlib.crc32(spaces, crc)
            yield block
        yield end + crc.to_bytes(4, "little") + (blocks * BLOCK % (1 << 32)).to_bytes(4, "little")

    length = len(first) + (blocks - 1) * len(block) + len(end) + 8
    return Streamed({"content-type": content_type, "content-encoding": "gzip", "content-length": str(length)},
                    chunks)


def huge(size: int, tail: bytes = b"{}", content_type: str = "application/json") -> Streamed:
    """A body of `size` bytes: JSON whitespace, then `tail` (valid JSON, so only a size limit refuses it)."""
    spaces = b" " * BLOCK

    def chunks() -> Iterator[bytes]:
        left = size - len(tail)
        while left > 0:
            yield spaces[:left]
            left -= BLOCK
        yield tail

    return Streamed({"content-type": content_type, "content-length": str(size)}, chunks)


def drip(body: bytes, every: float = 0.5, content_type: str = "application/json", *, head: bool = False) -> Streamed:
    """`body` one byte every `every` seconds (2 bytes/s by default): each read gets something, none gets all.

    With `head`, the status line and headers come so too: a client whose deadline starts with the body, or
    that bounds each read only, waits for them for minutes.
    """
    return Streamed({"content-type": content_type, "content-length": str(len(body))}, lambda: _bytes(body),
                    every=every, drip_head=head)


def _bytes(data: bytes) -> Iterator[bytes]:
    for index in range(len(data)):
        yield data[index:index + 1]


class HostilePeer(Served):
    """An HTTPS server on loopback that gives every request, whatever its method and path, one hostile answer."""

    def __init__(self, pki: PKI, answer: Streamed):
        self.answer = answer
        self.url = f"https://127.0.0.1:{self._serve(_handler_for(answer), pki, 'hostile-peer')}"

    def __exit__(self, *exc_info: object) -> None:
        self.answer.stop()  # a drip still written would hold the server's shutdown
        super().__exit__(*exc_info)


def _handler_for(answer: Streamed) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # each dripped byte goes out on its own

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("content-length") or 0))  # else the socket reads as hung up
            answer.write(self)

        do_HEAD = do_POST = do_GET

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return Handler
