"""The HTTP(S) endpoint: /metrics, the landing page, /status.json, /-/healthy, /-/ready.

A small threaded stdlib server (as prometheus_client's own), so a slow client never
blocks the event loop that runs the jobs. TLS handshakes happen in the request's own
thread, and basic auth covers every path, as the official exporters do.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent import __version__
from agent.config import split_listen
from agent.store import Store
from exporters.prometheus import CONTENT_TYPE, Exposition
from exporters.status import landing_html, status_document
from exporters.webconfig import BasicAuth, WebConfig, ssl_context

log = logging.getLogger(__name__)


class Site:
    """What the endpoint serves: it reads the store, never writes to it."""

    def __init__(self, store: Store, info: dict[str, Any]):
        self.store = store
        self.info = info
        self.exposition = Exposition()
        self.ready = threading.Event()

    def metrics(self) -> bytes:
        return self.exposition.render(self.store.snapshot(), self.store.db.ok)

    def status(self) -> dict[str, Any]:
        db = self.store.db
        return status_document(self.store.snapshot(), self.info, db.problem, db.notice, time.time())


class WebServer:
    def __init__(self, listen: str, site: Site, web: WebConfig):
        host, port = split_listen(listen)
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, port), _Handler)  # OSError when the port is taken
        self._httpd.site = site
        self._tls = web.tls_server_config is not None
        if web.tls_server_config is not None:
            self._httpd.socket = ssl_context(web.tls_server_config).wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._apply(web)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vigil-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{host}:{port}/"

    def start(self) -> None:
        self._thread.start()

    def reconfigure(self, web: WebConfig) -> None:
        """Apply a reloaded web config: users, headers, and a renewed certificate."""
        if (web.tls_server_config is not None) != self._tls:
            log.warning("switching TLS on or off needs a restart; keeping the current mode")
            return
        if web.tls_server_config is not None:
            self._httpd.socket.context = ssl_context(web.tls_server_config)
        self._apply(web)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _apply(self, web: WebConfig) -> None:
        self._httpd.auth = BasicAuth(web.basic_auth_users)
        self._httpd.headers = dict(web.http_server_config.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site
    auth: BasicAuth
    headers: dict[str, str]

    def handle_error(self, request, client_address) -> None:
        log.debug("request failed client=%s", client_address[0], exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"vigil/{__version__}"
    timeout = 30  # seconds a client may take to send its request

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        if not self._authorized():
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="vigil"'})
            return
        site = self.server.site
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, site.metrics(), CONTENT_TYPE)
        elif path == "/":
            self._send(200, landing_html(site.status()).encode(), "text/html; charset=utf-8")
        elif path == "/status.json":
            self._send(200, json.dumps(site.status(), indent=1).encode(), "application/json")
        elif path == "/-/healthy":
            self._send(200, b"OK\n", "text/plain; charset=utf-8")
        elif path == "/-/ready":
            ready = site.ready.is_set()
            self._send(200 if ready else 503, b"Ready\n" if ready else b"Not ready\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"Not found: try /metrics or /\n", "text/plain; charset=utf-8")

    def _authorized(self) -> bool:
        auth = self.server.auth
        if not auth.enabled:
            return True
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return auth.check(user, password)

    def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.headers, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        log.debug("http client=%s %s", self.client_address[0], format % args)
