"""The HTTPS server under each contract fake: started, stopped, killed and started again on its port.

A fake runs in a thread of the test process, so "killing" it must do what a crashed
process's kernel would: close the listener and every open connection at once (a plain
shutdown leaves keep-alive connections served by their handler threads). The fake's
state (its records, tokens, canned answers) lives on the fake and survives a restart.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.lab.pki import PKI


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], pki: PKI):
        super().__init__(("127.0.0.1", port), handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(pki.server_cert, pki.server_key)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)


class Served:
    """What a fake mixes in: `_serve(handler, pki, name)` in its __init__, then a context manager."""

    _server: _Server
    _thread: threading.Thread

    def _serve(self, handler: type[BaseHTTPRequestHandler], pki: PKI, name: str, port: int = 0) -> int:
        """Make the server (a free port unless given); returns the port."""
        self._handler, self._pki, self._name = handler, pki, name
        self._server = _Server(port, handler, pki)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=name, daemon=True)
        return self._server.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def close_idle_after(self, seconds: float) -> None:
        """Close a keep-alive connection that sent no request for `seconds`, from its next
        connection on: a server's keep-alive limit (nginx's keepalive_timeout, a proxy's idle timeout)."""
        self._handler.timeout = seconds

    @property
    def open_connections(self) -> int:
        with self._server.lock:
            return len(self._server.connections)

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def kill(self) -> None:
        """As a crash: the port closed and every open connection cut, nothing answered after."""
        self._server.shutdown()
        self._server.server_close()
        with self._server.lock:
            connections = list(self._server.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client hung up already
            connection.close()
        self._thread.join()

    def start_again(self) -> None:
        """The same fake (state, port) serving once more after `kill()`."""
        self._serve(self._handler, self._pki, self._name, self._server.server_address[1])
        self._thread.start()
