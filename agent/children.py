"""Child processes (restic, borg and the ssh behind them), each in its own process group.

A child gets the tool's own variables and only the basics of the agent's environment
(`environment`): the agent's environment holds every `${env:}` secret of every job.

A thread cannot be killed, but its child can: a timeout kills the child's whole group,
and so does the agent's stop (`stop_all`), so no tool outlives the run that started it
or the agent (under systemd a survivor would be reparented and keep reading a
repository for hours). restic starts its ssh in a process group of its own (so that
Ctrl-C reaches restic only): the tool's other descendants are found in /proc and
signalled too. A restore drill streams a tool's stdout as it arrives (`stream`, `chunks`)
and is cancelled from another thread (a stop, reload or timeout) through a threading.Event.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

REAP_TIMEOUT = 5.0  # seconds to collect a killed group's last output
MAX_OUTPUT = 256 << 20  # bytes a tool may write on each stream (restic's JSON of 100,000 snapshots is ~60 MiB)
MAX_STDERR = 64 << 10  # what a streamed tool's stderr keeps: its last bytes, where the errors are
POLL = 0.1  # seconds between looks at a cancel event

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


class Cancelled(Exception):
    """The caller's cancel event was set while the child ran (a stop, reload or timeout from another thread);
    its group was killed."""


def environment(own: Mapping[str, str]) -> dict[str, str]:
    """A child's environment: the basics of the agent's (PASSED_ON, LC_*) and the child's own variables."""
    basics = {name: value for name, value in os.environ.items() if name in PASSED_ON or name.startswith("LC_")}
    return {**basics, **own}


def run(argv: list[str], env: Mapping[str, str], timeout: float, max_bytes: int | None = None
        ) -> subprocess.CompletedProcess:
    """Like subprocess.run capturing text (undecodable bytes replaced), the child leading its own group and
    given `environment(env)`; a child that outlives `timeout` or writes more than `max_bytes` (default
    MAX_OUTPUT) on a stream is killed."""
    limit = max_bytes or MAX_OUTPUT
    kept = {True: bytearray(), False: bytearray()}  # stdout, stderr
    with _started(argv, env) as process:
        for is_stdout, data in _pump(process, time.monotonic() + timeout, timeout):
            kept[is_stdout] += data
            if len(kept[is_stdout]) > limit:
                raise OutputTooLarge(f"wrote more than {limit >> 20} MiB")
    return subprocess.CompletedProcess(argv, process.returncode, _text(kept[True]), _text(kept[False]))


def chunks(argv: list[str], env: Mapping[str, str], timeout: float, *, cancel: threading.Event | None = None,
           give_up: Callable[[str], bool] | None = None, max_stderr: int = MAX_STDERR) -> Iterator[bytes]:
    """A tool's stdout, chunk by chunk as it arrives (nothing kept), the child run as by `run`.

    Its stderr is kept, the last `max_stderr` bytes (the errors come last), and shown to `give_up` as it
    grows: True kills the group (a tool that would only retry what cannot succeed). Raises
    CalledProcessError (with the stderr text) when the tool exits otherwise than 0, TimeoutExpired after
    `timeout`, Cancelled once `cancel` is set (from any thread): the group killed in each case, and when
    the caller stops iterating (close the generator, as `contextlib.closing` does).
    """
    stderr = bytearray()
    gave_up = False
    with _started(argv, env) as process:
        for is_stdout, data in _pump(process, time.monotonic() + timeout, timeout, cancel):
            if is_stdout:
                yield data
                continue
            stderr += data
            del stderr[:-max_stderr]
            if give_up is not None and not gave_up and give_up(_text(stderr)):
                gave_up = True
                _signal(process, signal.SIGKILL)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv, None, _text(stderr))


def stream(argv: list[str], env: Mapping[str, str], timeout: float, sink, *, cancel: threading.Event | None = None,
           give_up: Callable[[str], bool] | None = None, max_stderr: int = MAX_STDERR) -> None:
    """A tool's stdout into `sink.write`, chunk by chunk as it arrives, writing nothing anywhere else; as
    `chunks` (what it raises, `give_up`), and the group is killed when the sink raises."""
    with closing(chunks(argv, env, timeout, cancel=cancel, give_up=give_up, max_stderr=max_stderr)) as output:
        for data in output:
            sink.write(data)


@contextmanager
def _started(argv: list[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen]:
    """The child, leading its own group and registered for `stop_all`; its group killed and reaped when the
    caller fails (or stops reading) before it ended."""
    with _lock:
        if _stopping:
            raise Stopping(f"{argv[0]} not started: the agent is stopping")
        process = subprocess.Popen(argv, env=environment(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603 — an argv list, never a shell
                                   stderr=subprocess.PIPE, start_new_session=True)
        _live.add(process)
    try:
        yield process
    except BaseException:
        _signal(process, signal.SIGKILL)
        process.communicate(timeout=REAP_TIMEOUT)
        raise
    finally:
        with _lock:
            _live.discard(process)


def _pump(process: subprocess.Popen, deadline: float, timeout: float, cancel: threading.Event | None = None
          ) -> Iterator[tuple[bool, bytes]]:
    """(from stdout?, bytes) from both streams as they arrive, until both close and the child exits, before
    `deadline` (else TimeoutExpired) and while `cancel` is not set (else Cancelled, seen within POLL)."""
    streams = {process.stdout.fileno(): True, process.stderr.fileno(): False}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(process.args, timeout)
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{Path(process.args[0]).name} was cancelled")
            for key, _ in selector.select(left if cancel is None else min(left, POLL)):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fd)
                    continue
                yield streams[key.fd], data
    process.wait(max(deadline - time.monotonic(), 0.001))
    process.stdout.close()
    process.stderr.close()


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


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
