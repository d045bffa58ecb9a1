"""A restic REST server (protocol v2) on a free loopback port, for repositories at `rest:` URLs.

Debian has no rest-server package, so this is the protocol as restic speaks it
(https://restic.readthedocs.io/en/stable/100_references.html#rest-backend), enough for
the real restic to init, back up, list, forget and prune: files under a folder per type,
listings as v1 or v2 JSON, reads with byte ranges. Run as `python rest_server.py
DIRECTORY PORT` (a process of its own, stopped by its PID).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TYPES = ("data", "keys", "locks", "snapshots", "index")
V2 = "application/vnd.x.restic.rest.v2"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@contextmanager
def rest_server(directory: Path) -> Iterator[str]:
    """The server's base URL (a repository is `rest:URL`), serving `directory`."""
    from tests.lab.harness import free_port, http_get, running

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, __file__, str(directory), str(port)]
    url = f"http://127.0.0.1:{port}/"
    with running(argv, directory.parent / "rest-server.log", lambda: http_get(url + "config")[0] in (200, 404),
                 "rest server"):
        yield url


class _Handler(BaseHTTPRequestHandler):
    root: Path

    def _file(self) -> Path | None:
        parts = [part for part in self.path.split("?")[0].split("/") if part]
        if parts == ["config"]:
            return self.root / "config"
        if len(parts) == 2 and parts[0] in TYPES and re.fullmatch(r"[0-9a-f]{1,64}", parts[1]):
            return self.root / parts[0] / parts[1]
        return None

    def _reply(self, code: int, body: bytes = b"", kind: str = "application/octet-stream") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        file = self._file()
        if file is None or not file.is_file():
            return self._reply(404)
        self.send_response(200)
        self.send_header("Content-Length", str(file.stat().st_size))
        self.end_headers()

    def do_GET(self) -> None:
        parts = [part for part in self.path.split("?")[0].split("/") if part]
        if len(parts) == 1 and parts[0] in TYPES and self.path.endswith("/"):
            files = sorted((self.root / parts[0]).iterdir()) if (self.root / parts[0]).is_dir() else []
            v2 = V2 in self.headers.get("Accept", "")
            listing = [{"name": f.name, "size": f.stat().st_size} if v2 else f.name for f in files]
            return self._reply(200, json.dumps(listing).encode(), V2 if v2 else "application/json")
        file = self._file()
        if file is None or not file.is_file():
            return self._reply(404)
        data = file.read_bytes()
        if match := _RANGE.fullmatch(self.headers.get("Range", "")):
            start, end = int(match[1]), int(match[2]) if match[2] else len(data) - 1
            return self._reply(206, data[start:end + 1])
        self._reply(200, data)

    def do_POST(self) -> None:
        if "create=true" in self.path:
            for kind in TYPES:
                (self.root / kind).mkdir(parents=True, exist_ok=True)
            return self._reply(200)
        file = self._file()
        if file is None:
            return self._reply(400)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(body)
        self._reply(200)

    def do_DELETE(self) -> None:
        file = self._file()
        if file is None or not file.is_file():
            return self._reply(404)
        file.unlink()
        self._reply(200)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")


if __name__ == "__main__":
    _Handler.root = Path(sys.argv[1])
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), _Handler).serve_forever()
