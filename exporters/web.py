"""The HTTP(S) endpoint: /metrics, the landing page, /status.json, /-/healthy, /-/ready.

A small threaded stdlib server (as prometheus_client's own), so a slow client never
blocks the event loop that runs the jobs. What a client can hold is bounded:
- at most MAX_CONNECTIONS connections (and half the open-file limit); when full, the
  connection that has waited longest for its request is dropped to make room, so a
  flood of idle or trickling connections never locks a scraper out; when every
  connection is busy answering, a new one gets a quick 503 (TLS: is closed);
- a whole exchange (TLS handshake, request, response) gets REQUEST_TIMEOUT seconds,
  not each read: a client sending one byte every few seconds is dropped on time;
- an accept that fails for want of file descriptors pauses the accept loop briefly
  instead of spinning on a listening socket that stays readable.
Each connection is wrapped for TLS as it is accepted, with the settings current at
that moment, so a reload swaps certificate, users and headers in one assignment.
Basic auth covers every path, as the official exporters do; a flood of guesses gets 429
(exporters.webauth: lockout, a bounded queue for bcrypt, remembered good credentials).

Also served: /runbooks/<Alert>, the runbook every shipped alert links to (from the
installed copy, or the checkout's docs/runbooks), so a link in a page or an e-mail
works without a wiki. /metrics is gzip-compressed when the scraper accepts it.
A plain HTTP request to the TLS port is answered with a 400 that names the https URL.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import split_listen
from agent.logs import Throttled
from agent.model import MetricSpec
from agent.store import Store
from exporters.prometheus import CONTENT_TYPE, Exposition
from exporters.status import landing_html, status_document
from exporters.webauth import BasicAuth, Login
from exporters.webconfig import WebConfig, ssl_context

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0  # seconds for one whole exchange; Prometheus' scrape timeout defaults to 10 s
MAX_CONNECTIONS = 512  # each holds a thread and a file descriptor
BACKLOG = 1024  # connections the kernel queues while the accept loop catches up (capped by somaxconn)
ACCEPT_PAUSE = 0.1  # seconds the accept loop waits when the process is out of file descriptors
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# where install.sh puts the runbooks; a development checkout serves its own docs/runbooks
RUNBOOK_DIRS = (Path("/usr/share/doc/vigil/runbooks"), Path(__file__).resolve().parent.parent / "docs" / "runbooks")
_ALERT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")  # bounded: a longer name is no file (ENAMETOOLONG)
HEARTBEAT = 1.0  # seconds between the event loop's beats
STALLED_AFTER = 10.0  # seconds a beat may be late before /-/healthy says the agent is stuck
_TLS_HANDSHAKE = 0x16  # the first byte of every TLS record that opens a connection
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\nToo many connections")


class Site:
    """What the endpoint serves: it reads the store, never writes to it."""

    def __init__(self, store: Store, info: dict[str, Any]):
        self.store = store
        self.info = info
        self.exposition = Exposition()
        self.ready = threading.Event()
        self._beat: float | None = None  # when the agent's event loop last turned (monotonic)
        self.facts: dict[MetricSpec, float] = {}  # the agent's own gauges (reload outcome, certificate expiry)

    def beat(self) -> None:
        """The event loop turned: called by the agent every HEARTBEAT seconds."""
        self._beat = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the event loop last turned, past what a beat may take; 0 while it turns."""
        if self._beat is None:
            return 0.0
        late = time.monotonic() - self._beat - HEARTBEAT
        return late if late > STALLED_AFTER else 0.0

    def metrics(self, gzip: bool = False) -> bytes:
        return self.exposition.render(self.store.snapshot(), self.store.db.ok, dict(self.facts), gzip)

    @staticmethod
    def runbook(name: str) -> bytes | None:
        """The runbook of the alert `name`, from the first runbook folder that has it."""
        if not _ALERT_NAME.fullmatch(name):
            return None
        for folder in RUNBOOK_DIRS:
            if (path := folder / f"{name}.md").is_file():
                return path.read_bytes()
        return None

    def status(self) -> dict[str, Any]:
        """The status document; its error texts were redacted where they were made (agent.redact)."""
        db = self.store.db
        return status_document(self.store.snapshot(), self.info, db.problem, db.notice, time.time(),
                               dict(self.facts))


@dataclass(frozen=True)
class _Settings:
    """What a reload may change, swapped as one value."""

    tls: ssl.SSLContext | None
    auth: BasicAuth
    headers: dict[str, str]

    @classmethod
    def of(cls, web: WebConfig, current: _Settings | None = None) -> _Settings:
        """Everything built before anything is applied; raises WebConfigError. On a reload the
        current settings' logins carry over: a reload neither forgets a good scraper nor lifts a lockout."""
        tls = ssl_context(web.tls_server_config) if web.tls_server_config is not None else None
        auth = BasicAuth(web.basic_auth_users, learnt_by=current.auth if current is not None else None)
        return cls(tls, auth, dict(web.http_server_config.headers))


class WebServer:
    def __init__(self, listen: str, site: Site, web: WebConfig, request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS):
        host, port = split_listen(listen)
        server_class = _Server6 if ":" in host else _Server
        settings = _Settings.of(web)
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit != resource.RLIM_INFINITY:
            max_connections = max(1, min(max_connections, soft_limit // 2))
        # OSError when the port is taken
        self._httpd = server_class((host, port), site, settings, request_timeout, max_connections)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vigil-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._httpd.settings.tls else 'http'}://{host}:{port}/"

    def start(self) -> None:
        self._thread.start()

    def reconfigure(self, web: WebConfig) -> None:
        """Apply a reloaded web config (certificate, users, headers) all at once, or
        raise WebConfigError and keep serving with the current one."""
        settings = _Settings.of(web, self._httpd.settings)
        was_tls = self._httpd.settings.tls is not None
        self._httpd.settings = settings  # new connections only; open ones finish as they began
        if (settings.tls is not None) != was_tls:
            log.warning("TLS is now %s url=%s", "on" if settings.tls else "off", self.url)

    def stop(self) -> None:
        self._httpd.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_all()


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    settings: _Settings
    deadline: float
    since: float = field(default_factory=time.monotonic)  # when it began waiting for its request
    reading: bool = True  # still waiting for its request line and headers
    dropped: bool = False

    def drop(self) -> None:
        """Wake the thread blocked on this socket (a read returns EOF) and end the exchange."""
        self.dropped = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the plain call, also on an SSLSocket
        except OSError:
            pass  # already closed by its thread


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address, site: Site, settings: _Settings, request_timeout: float, max_connections: int):
        self.site, self.settings = site, settings
        self.request_timeout, self.max_connections = request_timeout, max_connections
        self.closing = threading.Event()
        self.open: dict[socket.socket, _Connection] = {}
        self._lock = threading.Lock()
        self._refused = Throttled(log)
        self._out_of_fds = Throttled(log)
        self.failed_logins = Throttled(log)
        self.refused_logins = Throttled(log)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return self.socket.accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_FDS:
                # the listening socket stays readable: without a pause the loop spins at 100 % CPU
                self._out_of_fds.warning("cannot accept connections: %s (raise LimitNOFILE=)", exc.strerror)
                self.closing.wait(ACCEPT_PAUSE)
            raise

    def verify_request(self, request, client_address) -> bool:
        """Admit the connection, making room by dropping the longest waiting reader."""
        with self._lock:
            live = [c for c in self.open.values() if not c.dropped]
            readers = [c for c in live if c.reading]
            if len(live) < self.max_connections or readers:
                if len(live) >= self.max_connections:
                    min(readers, key=lambda c: c.since).drop()
                self.open[request] = _Connection(request, self.settings, time.monotonic() + self.request_timeout)
                return True
        self._refused.warning("connection limit reached, every connection busy: refusing client=%s limit=%d",
                              client_address[0], self.max_connections)
        if self.settings.tls is None:
            try:
                request.send(_BUSY, socket.MSG_DONTWAIT)
            except OSError:
                pass
        return False

    def connection(self, request: socket.socket) -> _Connection:
        with self._lock:
            return self.open[request]

    def restart(self, conn: _Connection) -> None:
        """A kept-alive connection waits for its next request, with a fresh deadline."""
        conn.since = time.monotonic()
        conn.deadline, conn.reading = conn.since + self.request_timeout, True

    def shutdown_request(self, request) -> None:
        with self._lock:
            conn = self.open.pop(request, None)
        if conn is not None and conn.sock is not request:
            conn.sock.close()  # the TLS socket that took over the accepted one
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Drop connections past their deadline (the accept loop calls this twice a second)."""
        now = time.monotonic()
        with self._lock:
            late = [c for c in self.open.values() if c.deadline < now and not c.dropped]
        for conn in late:
            conn.drop()

    def drop_all(self) -> None:
        with self._lock:
            conns = list(self.open.values())
        for conn in conns:
            conn.drop()

    def handle_error(self, request, client_address) -> None:
        log.debug("request failed client=%s", client_address[0], exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"vigil/{__version__}"
    protocol_version = "HTTP/1.1"  # keep-alive: a scraper reuses its connection (and TLS session)
    # TCP_NODELAY: on a kept-alive connection the body, written after the headers, would wait for
    # the scraper's delayed ACK of them (Nagle): 40 ms added to every scrape after the first
    disable_nagle_algorithm = True
    # a request line without a version, or one the stdlib refuses (HTTP/2.0: 505), is answered with a
    # status line: the stdlib's default, HTTP/0.9, would send the error's body alone
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def setup(self) -> None:
        self.conn = self.server.connection(self.request)
        self.timeout = self.server.request_timeout  # each read; the server enforces the whole exchange
        if self.conn.settings.tls is not None:
            self.request = self.conn.sock = self.conn.settings.tls.wrap_socket(
                self.request, server_side=True, do_handshake_on_connect=False)
            if self.conn.dropped:  # dropped while it was being wrapped: the new socket is not shut yet
                self.conn.drop()
        super().setup()

    def version_string(self) -> str:
        return self.server_version  # not the stdlib's "Python/3.x" as well

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            if not self._speaks_tls():
                return
            self.request.do_handshake()  # here, in the connection's thread, under its deadline
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.server.restart(self.conn)
            self.handle_one_request()

    def _speaks_tls(self) -> bool:
        """False, after a 400 naming the https URL, for a client speaking plain HTTP to the TLS port."""
        first = socket.socket.recv(self.request, 1, socket.MSG_PEEK)  # the plain call: no TLS read yet
        if not first or first[0] == _TLS_HANDSHAKE:
            return bool(first)
        socket.socket.recv(self.request, 65536)  # what it sent, so closing sends no reset over the answer
        host, port = self.request.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        body = (f"This port speaks HTTPS: use https://{host}:{port}/ "
                "(the scrape config needs `scheme: https`).\n").encode()
        socket.socket.sendall(self.request, b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        log.debug("plain HTTP on the TLS port client=%s", self.client_address[0])
        return False

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.conn.reading = False
        return parsed

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        login = self._login()
        if login.retry_after:
            self._send(429, f"Too many logins: try again in {login.retry_after} s\n".encode(),
                       "text/plain; charset=utf-8", {"Retry-After": str(login.retry_after), "Connection": "close"})
            return
        if not login.granted:
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="vigil"'})
            return
        site = self.server.site
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzip = _accepts_gzip(self.headers.get("Accept-Encoding", ""))
            self._send(200, site.metrics(gzip), CONTENT_TYPE,
                       {"Vary": "Accept-Encoding", **({"Content-Encoding": "gzip"} if gzip else {})})
        elif path.startswith("/runbooks/") and (runbook := site.runbook(path.removeprefix("/runbooks/"))):
            self._send(200, runbook, "text/plain; charset=utf-8")  # markdown, but a browser downloads text/markdown
        elif path == "/":
            self._send(200, landing_html(site.status()).encode(), "text/html; charset=utf-8")
        elif path == "/status.json":
            self._send(200, json.dumps(site.status(), indent=1).encode(), "application/json")
        elif path == "/-/healthy":  # answered from this thread: a stuck event loop must not look healthy
            stalled = site.stalled_for()
            self._send(503 if stalled else 200, f"Event loop stalled for {stalled:.0f}s\n".encode() if stalled
                       else b"OK\n", "text/plain; charset=utf-8")
        elif path == "/-/ready":
            ready = site.ready.is_set()
            self._send(200 if ready else 503, b"Ready\n" if ready else b"Not ready\n", "text/plain; charset=utf-8")
        elif path.startswith("/runbooks/"):
            self._send(404, b"No such runbook: the name is the alert's, as in /runbooks/VigilDown\n",
                       "text/plain; charset=utf-8")
        else:
            self._send(404, b"Not found: try /metrics or /\n", "text/plain; charset=utf-8")

    def _login(self) -> Login:
        auth = self.conn.settings.auth
        if not auth.enabled:
            return Login(True)
        header = self.headers.get("Authorization")
        if header is None:
            return Login(False)  # a browser's first try: not a failed login
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", None
        client = self.client_address[0]
        if scheme.lower() == "basic" and password is not None:
            login = auth.check(user, password, client, self.conn.deadline)
        else:
            login = Login(False)
        # the user name only when it is one: a password typed into the user field stays out of the log
        shown = user if auth.known(user) else "(unknown)"
        if login.retry_after:
            self.server.refused_logins.warning("basic auth refused without a check: %s client=%s user=%s "
                                               "retry_after=%ds", login.why, client, shown, login.retry_after)
        elif not login.granted:
            self.server.failed_logins.warning("basic auth failed client=%s user=%s path=%s", client, shown,
                                              self.path.split("?", 1)[0])
        return login

    def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.conn.settings.headers, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        # the request line is the client's: a quoted value, never text in which it could write fields
        log.debug("http client=%s message=%s", self.client_address[0], format % args)


def _accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding lists gzip without q=0 (Prometheus sends `gzip`)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "").lower().rstrip("0").rstrip(".") not in ("q=0", "q=")
    return False

