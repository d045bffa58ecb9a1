"""Child processes (restic, borg and the ssh behind them), each in its own process group.

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
import signal
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

REAP_TIMEOUT = 5.0  # seconds to collect a killed group's last output

_live: set[subprocess.Popen] = set()
_lock = threading.Lock()
_stopping = False


class Stopping(Exception):
    """The agent is stopping: no new child is started."""


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Like subprocess.run capturing text (undecodable bytes replaced), the child leading its own group."""
    with _lock:
        if _stopping:
            raise Stopping(f"{argv[0]} not started: the agent is stopping")
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603 — an argv list, never a shell
                                   stderr=subprocess.PIPE, encoding="utf-8", errors="replace", start_new_session=True)
        _live.add(process)
    try:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.communicate(timeout=REAP_TIMEOUT)
            raise
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    finally:
        with _lock:
            _live.discard(process)


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
