"""A restore drill's independent reference: the live source file's SHA-256, read only while it is provably the
content the backup holds (`drill: compare: {target:, root:, hash:}`).

The source is read where it lives: on an ssh target, over the SSH transport the ssh collector
uses (agent.net.ssh: host keys pinned, its `via:` jump), or on this host (`local`). A file is
compared only when its size, mtime and ctime (whole seconds) equal what the backup recorded
and nothing changed while it was hashed: ctime catches new content whose mtime was put back
(`touch -r`, `os.utime`). Whatever stands in the way (a change, a missing file, no read
permission, a Windows host, whose ctime is the creation time, a file written within 2 s of
the backup) is SourceSkipped, never a failure.

Remotely `stat` runs before and after the hash, and the hash is `sha256sum` on the host
(`hash: remote`) or the file read over SFTP into a SHA-256 here (`hash: stream`). Each
command is bounded here and, a little later, on the host (coreutils `timeout`); a path is
hostile input, so it only ever reaches a shell as one shlex-quoted argument.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import posixpath
import re
import shlex
import stat
import threading
from dataclasses import dataclass

import paramiko

from agent.net.ssh import SshError, connect, run
from agent.reasons import shorten
from checks.model import Candidate, CompareConfig
from checks.sources.sftp import SftpTree

SETTLE = 2.0  # seconds: a file modified this close to the backup may have changed again within the same second
HASH_RATE = 16 << 20  # bytes per second a source host is assumed to hash at least: bounds the hash's time
LOCAL_LEAST = 15.0  # seconds a local hash may take whatever the size (an ssh target's: its command_timeout)
CHUNK = 1 << 20  # bytes read at once locally
SERVER_GRACE = 1  # seconds a command may run on the host after vigil stopped waiting, before `timeout` ends it
MAX_REPLY = 4096  # bytes of output a stat or a hash may write
STAT = "stat -c '%s %Y %Z %f' -- \"$1\""  # size, mtime, ctime, raw mode (hex); never follows a link
SHA256SUM = "exec nice -n 19 sha256sum < \"$1\""  # reads the file by redirection: no name to parse back
DIGEST = re.compile(r"[0-9a-f]{64}")


class SourceSkipped(Exception):
    """The live source cannot vouch for this file (changed, gone, unreadable, Windows): not a failure."""


@dataclass(frozen=True)
class Stat:
    """What decides whether the live file still is the backed-up content: whole seconds, as `stat` gives them."""

    size: int
    mtime: int
    ctime: int
    regular: bool


class LiveSource:
    """The live source of one drill: `sha256(candidate)` per file, `close()` when the drill ends or is
    cancelled (from another thread: it closes the connection, which ends a command waiting on it)."""

    def __init__(self, compare: CompareConfig, context):
        self._target, self._jump = compare.linked
        self._root, self._stream = compare.root, compare.hash == "stream"
        self._clock = context.clock
        self._clients: list[paramiko.SSHClient] = []  # the jump host's first
        self._lock = threading.Lock()
        self._closed = False

    def sha256(self, candidate: Candidate, backed_up_at: float | None = None) -> str:
        """The source file's SHA-256 (hex), or SourceSkipped saying why it cannot vouch for the backup's copy.
        `backed_up_at`: when the backup was taken (its snapshot's time)."""
        path = self._source_path(candidate.path)
        where = f"{self._target.name}:{path}" if self._target is not None else path
        if self._target is not None and getattr(self._target, "os", "linux") == "windows":
            raise SourceSkipped(f"{self._target.name} runs Windows, whose ctime is the creation time: the live "
                                "source is compared on Linux and other POSIX servers only")
        if candidate.mtime is None or candidate.ctime is None:
            raise SourceSkipped(f"the backup recorded no mtime and ctime for {candidate.path}, so the source "
                                f"{where} cannot be shown to be unchanged")
        if backed_up_at is not None and abs(backed_up_at - candidate.mtime) < SETTLE:
            raise SourceSkipped(f"the source {where} was modified within {SETTLE:g}s of the backup, which may "
                                "hold an earlier version of that second")
        before = self._stat(path, where)
        _same(candidate, before, where)
        digest = self._hash(path, before.size, where)
        if self._stat(path, where) != before:
            raise SourceSkipped(f"the source {where} changed while it was hashed")
        return digest

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in reversed(clients):
            client.close()

    def _source_path(self, path: str) -> str:
        """The backed-up path under `root`; one that would leave it (`..`) or cannot exist is skipped."""
        joined = posixpath.normpath(posixpath.join(self._root, path.lstrip("/")))
        inside = posixpath.normpath(self._root)
        if "\0" in path or not (joined == inside or joined.startswith(inside.rstrip("/") + "/")):
            raise SourceSkipped(f"{path!r} is no path under the source's root {self._root}")
        return joined

    def _stat(self, path: str, where: str) -> Stat:
        if self._target is None:
            try:
                found = os.lstat(path)
            except OSError as exc:
                raise _unreadable(exc.errno, exc.strerror or "", where) from None
            return Stat(found.st_size, found.st_mtime_ns // 10**9, found.st_ctime_ns // 10**9,
                        stat.S_ISREG(found.st_mode))
        reply = self._remote(STAT, "stat", path, where, self._target.command_timeout)
        try:
            size, mtime, ctime, mode = reply.split()
            return Stat(int(size), int(mtime), int(ctime), stat.S_ISREG(int(mode, 16)))
        except ValueError:
            raise SourceSkipped(f"unexpected reply from stat on {self._target.name}: "
                                f"{reply[:60]!r}") from None

    def _hash(self, path: str, size: int, where: str) -> str:
        seconds = self._hash_seconds(size)
        if self._target is None:
            return self._hash_local(path, size, where, seconds)
        if self._stream:
            return self._hash_stream(path, size, where, seconds)
        reply = self._remote(SHA256SUM, "sha256sum", path, where, seconds).split()
        if not reply or not DIGEST.fullmatch(reply[0]):
            raise SourceSkipped(f"unexpected reply from sha256sum on {self._target.name}")
        return reply[0]

    def _hash_seconds(self, size: int) -> float:
        least = self._target.command_timeout if self._target is not None else LOCAL_LEAST
        return least + size / HASH_RATE

    def _hash_local(self, path: str, size: int, where: str, seconds: float) -> str:
        try:
            with open(path, "rb", buffering=0, opener=_no_link) as file:
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    raise SourceSkipped(f"the source {where} is no longer a regular file")
                return self._digest(file.read, size, where, seconds)
        except OSError as exc:
            raise _unreadable(exc.errno, exc.strerror or str(exc), where) from None

    def _hash_stream(self, path: str, size: int, where: str, seconds: float) -> str:
        try:
            with self._client().open_sftp() as sftp:
                sftp.get_channel().settimeout(self._target.command_timeout)
                with SftpTree(sftp, "/", where).open(path) as file:
                    return self._digest(file.read, size, where, seconds)
        except OSError as exc:  # paramiko's SFTP errors carry the errno of the status the server sent
            raise _unreadable(exc.errno, str(exc), where) from None
        except (SshError, paramiko.SSHException, EOFError) as exc:
            raise SourceSkipped(f"cannot read the source {where} over SFTP: {exc}") from None

    def _digest(self, read, size: int, where: str, seconds: float) -> str:
        """SHA-256 of at most `size` bytes read in chunks: more means the file grew, and then it changed."""
        digest, left, deadline = hashlib.sha256(), size + 1, self._clock.monotonic() + seconds
        while data := read(min(CHUNK, left)):
            if self._closed:
                raise SourceSkipped("the drill was stopped")
            if self._clock.monotonic() > deadline:
                raise SourceSkipped(f"hashing the source {where} took longer than {seconds:.0f}s")
            digest.update(data)
            left -= len(data)
            if left <= 0:
                raise SourceSkipped(f"the source {where} changed while it was hashed (it grew)")
        return digest.hexdigest()

    def _remote(self, script: str, what: str, path: str, where: str, seconds: float) -> str:
        """One bounded command on the target, `path` its only argument: its stdout, or SourceSkipped."""
        command = (f"exec env LC_ALL=C timeout -k 2 {math.ceil(seconds) + SERVER_GRACE} /bin/sh -c "
                   f"{shlex.quote(script)} sh {shlex.quote(path)} </dev/null")
        try:
            status, stdout, stderr = run(self._client(), command, timeout=seconds, max_bytes=MAX_REPLY,
                                         what=f"`{what}`")
        except SshError as exc:
            raise SourceSkipped(f"cannot read the source {where}: {exc}") from None
        if status == 0:
            return stdout.decode("ascii", "replace")
        said = stderr.decode("utf-8", "replace").strip().splitlines()
        if status in (124, 137, -1):
            raise SourceSkipped(f"reading the source {where} did not finish within {seconds:.0f}s")
        raise _unreadable(None, shorten(said[-1], 200) if said else f"{what} exited with status {status}", where)

    def _client(self) -> paramiko.SSHClient:
        """The connection to the target (through its jump host), made on first use and kept for the drill."""
        with self._lock:
            if self._closed:
                raise SshError("the drill was stopped")
            if self._clients:
                return self._clients[-1]
        timeout = self._target.command_timeout
        made = []
        try:
            if self._jump is not None:
                made.append(connect(self._jump.endpoint(timeout)))
            made.append(connect(self._target.endpoint(timeout),
                                via=made[0].get_transport() if self._jump is not None else None))
        except SshError:
            for client in reversed(made):
                client.close()
            raise
        with self._lock:
            if not self._closed:
                self._clients = made
                return made[-1]
        for client in reversed(made):
            client.close()
        raise SshError("the drill was stopped")


def _no_link(path: str, flags: int) -> int:
    """Open the file itself, never where a link put there since its stat points, and never wait on a FIFO."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _same(candidate: Candidate, found: Stat, where: str) -> None:
    """SourceSkipped unless the live file has the backed-up size, mtime and ctime (whole seconds)."""
    if not found.regular:
        raise SourceSkipped(f"the source {where} is no longer a regular file")
    recorded = (candidate.size, math.floor(candidate.mtime), math.floor(candidate.ctime))
    for what, then, now in zip(("size", "mtime", "ctime"), recorded, (found.size, found.mtime, found.ctime),
                               strict=True):
        if then != now:
            raise SourceSkipped(f"the source {where} changed since the backup (its {what} was {then}, is {now})")


def _unreadable(code: int | None, said: str, where: str) -> SourceSkipped:
    """A file that is gone or that the account may not read, told apart by errno, else by the C locale's words."""
    if code in (errno.ENOENT, errno.ENOTDIR) or "No such file" in said or "Not a directory" in said:
        return SourceSkipped(f"the source {where} is gone")
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in said or "Operation not permitted" in said:
        return SourceSkipped(f"vigil's account may not read the source {where} (permission denied): give it "
                             "read access (a group or an ACL) to compare with the live source")
    return SourceSkipped(f"cannot read the source {where}: {said}")
