"""Child processes (restic, borg and the ssh behind them), each in its own process group.

A child gets the tool's own variables and only the basics of the agent's environment
(`environment`): the agent's environment holds every `${env:}` secret of every job.

A thread cannot be killed, but its child can: a timeout kills the child's whole group,
and so does the agent's stop (`stop_all`), so no tool outlives the run that started it
or the agent (under systemd a survivor would be reparented and keep reading a
repository for hours). restic starts its ssh in a process group of its own (so that
Ctrl-C reaches restic only): the tool's other descendants are found in /proc and
signalled too.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

REAP_TIMEOUT = 5.0  # seconds to collect a killed group's last output
MAX_OUTPUT = 256 << 20  # bytes a tool may write on each stream (restic's JSON of 100,000 snapshots is ~60 MiB)

# what a tool, and the ssh it starts, needs of the agent's environment (and every LC_*): where programs are,
# the home, language and time zone, temporary files, the way out (proxies), the CAs the system trusts, an ssh agent
PASSED_ON = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSL_CERT_FILE",
                       "SSL_CERT_DIR", "SSH_AUTH_SOCK", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                       "http_proxy", "https_proxy", "no_proxy", "all_proxy"})

_live: set[subprocess.Popen] = set()
_lock = threading.Lock()
_stopping = False


class Stopping(Exception):
    """The agent is stopping: no new child is started."""


class OutputTooLarge(Exception):
    """The child wrote more than it may on one stream; its group was killed."""


def environment(own: Mapping[str, str]) -> dict[str, str]:
    """A child's environment: the basics of the agent's (PASSED_ON, LC_*) and the child's own variables."""
    basics = {name: value for name, value in os.environ.items() if name in PASSED_ON or name.startswith("LC_")}
    return {**basics, **own}


def run(argv: list[str], env: Mapping[str, str], timeout: float, max_bytes: int | None = None
        ) -> subprocess.CompletedProcess:
    """Like subprocess.run capturing text (undecodable bytes replaced), the child leading its own group and
    given `environment(env)`; a child that outlives `timeout` or writes more than `max_bytes` (default
    MAX_OUTPUT) on a stream is killed."""
    with _lock:
        if _stopping:
            raise Stopping(f"{argv[0]} not started: the agent is stopping")
        process = subprocess.Popen(argv, env=environment(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603 — an argv list, never a shell
                                   stderr=subprocess.PIPE, start_new_session=True)
        _live.add(process)
    try:
        try:
            stdout, stderr = _read(process, time.monotonic() + timeout, timeout, max_bytes or MAX_OUTPUT)
        except (subprocess.TimeoutExpired, OutputTooLarge):
            _signal(process, signal.SIGKILL)
            process.communicate(timeout=REAP_TIMEOUT)
            raise
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    finally:
        with _lock:
            _live.discard(process)


def _read(process: subprocess.Popen, deadline: float, timeout: float, max_bytes: int) -> tuple[str, str]:
    """Both streams until they close and the child exits, each at most `max_bytes`, before `deadline`."""
    chunks: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
    sizes = dict.fromkeys(chunks, 0)
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(process.args, timeout)
            for key, _ in selector.select(left):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fd)
                    continue
                sizes[key.fd] += len(data)
                if sizes[key.fd] > max_bytes:
                    raise OutputTooLarge(f"wrote more than {max_bytes >> 20} MiB")
                chunks[key.fd].append(data)
    process.wait(max(deadline - time.monotonic(), 0.001))
    texts = [b"".join(chunks[pipe.fileno()]).decode("utf-8", "replace") for pipe in (process.stdout, process.stderr)]
    process.stdout.close()
    process.stderr.close()
    return texts[0], texts[1]


def stop_all(grace: float = 1.0) -> int:
    """Refuse new children, SIGTERM every live group, SIGKILL those left after `grace` seconds.

    Returns how many groups were signalled."""
    global _stopping
    with _lock:
        _stopping = True
        live = list(_live)
    for process in live:
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in live:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
    if live:
        log.info("stopped %d child process group(s)", len(live))
    return len(live)


def _signal(process: subprocess.Popen, signum: int) -> None:
    """Signal the child's group and its descendants while it is unreaped (so the ids are still its own)."""
    if process.poll() is not None:
        return
    for pid in _descendants(process.pid):
        _kill(os.kill, pid, signum)
    _kill(os.killpg, process.pid, signum)


def _kill(kill, pid: int, signum: int) -> None:
    try:
        kill(pid, signum)
    except ProcessLookupError:
        pass


def _descendants(root: int) -> list[int]:
    """Every process below `root`, from the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found
