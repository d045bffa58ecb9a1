"""Start a real peer on a free loopback port, wait until it answers, stop it by its PID.

Locally a missing peer skips its tests with a reason; with VIGIL_LAB=require (set by
.ci/run) a missing peer fails them, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRED = os.environ.get("VIGIL_LAB") == "require"


def need(program: str, hint: str = "run `make lab`") -> str:
    """The path of a peer's program, or skip (fail under VIGIL_LAB=require)."""
    found = shutil.which(program) or (program if os.path.isabs(program) and os.access(program, os.X_OK) else None)
    if found:
        return found
    message = f"{program} is not installed ({hint})"
    if REQUIRED:
        pytest.fail(f"VIGIL_LAB=require: {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float = 30, what: str = "the condition",
               interval: float = 0.1) -> object:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def client_output(argv: list[str], what: str, timeout: float = 30, env: dict[str, str] | None = None) -> str:
    """The output of a peer's own client (psql, mariadb...); its error fails the test, naming `what`."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if done.returncode:
        raise AssertionError(f"{what} failed: {done.stderr.strip()}")
    return done.stdout.strip()


class Peer:
    """A started process with its log file; `stop()` ends it by PID."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.argv, self.env, self.cwd = list(argv), env, cwd  # to start it again after a kill
        self.log = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, cwd=cwd,
                                        start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL to its whole process group, as a crash: no clean shutdown, connections reset."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()

    def again(self) -> Peer:
        """The same command (so the same port and files) started once more; the caller stops it."""
        return Peer(self.argv, self.log, self.env, self.cwd)

    def stop(self, timeout: float = 10) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


@contextmanager
def running(argv: list[str], log: Path, ready: Callable[[], object], what: str,
            timeout: float = 30, env: dict[str, str] | None = None) -> Iterator[Peer]:
    peer = Peer(argv, log, env)
    try:
        wait_until(lambda: ready() if peer.alive() else _died(peer, what), timeout, what)
        yield peer
    finally:
        peer.stop()


def _died(peer: Peer, what: str) -> None:
    pytest.fail(f"{what} exited with {peer.process.returncode}:\n{peer.output()[-3000:]}")


@contextmanager
def serving(server: socketserver.BaseServer, name: str) -> Iterator[None]:
    """A server of the tests' own (a proxy, a relay) served in a thread of the test process while inside."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
