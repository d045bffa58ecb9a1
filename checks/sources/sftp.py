"""Backups as files on an SFTP server, read with paramiko: `{kind: sftp, host:, user:, key_file:, path:}`.

The same rules as a local directory (checks.sources.filelike), over one SSH connection
per listing, made by the shared transport (agent.net.ssh), so the server must be known
before the first connection: its key is either in `known_hosts` or pinned by
`host_key_fingerprint`; an unknown or changed key is refused, never added.
Authentication is by `key_file` (encrypted with `key_passphrase`, by reference) or
`password`, never an agent or ~/.ssh keys, and every step (connect, banner, auth, each
SFTP request) has the location's timeout.
"""

from __future__ import annotations

import math
import posixpath
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Literal

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR
from pydantic import Field

from agent.net.ssh import SshError, SshFields, connect
from checks.model import (
    BackupSnapshot,
    Candidate,
    Drilled,
    DrillNotRun,
    LocationConfig,
    Measured,
    Sink,
    Verified,
    VerifyConfig,
    VerifyOutcome,
)
from checks.sources import filelike
from checks.sources.filelike import Deadline, Entry, LocationError, NamePattern

WINDOW = 4 << 20  # bytes requested at once when reading a file (128 requests of 32 KiB in flight)


class SftpLocation(Measured, Verified, Drilled):
    kind = "sftp"

    class Config(LocationConfig, SshFields):
        kind: Literal["sftp"]
        path: str = Field(description="the directory of the backups: absolute, or relative to the user's "
                                      "login directory")
        pattern: NamePattern = Field("*", description="which names in it are backups (a glob)")

    def __init__(self, config: Config, context):
        self.config = config
        self._clock = context.clock
        self.address = f"{config.host}:{config.port}"
        separator = "" if config.path.startswith("/") else "/~/"
        self.where = f"sftp://{config.user}@{self.address}{separator}{config.path}"

    def backups(self) -> list[BackupSnapshot]:
        with self._session() as tree:
            return filelike.list_backups(tree, self.config.pattern)

    def measure(self, snapshot: BackupSnapshot) -> BackupSnapshot:
        deadline = Deadline(self._clock, self.config.timeout, f"counting the files in {snapshot.name}")
        with self._session() as tree:
            return filelike.measure(tree, snapshot, deadline)

    def verify(self, verify: VerifyConfig) -> VerifyOutcome:
        deadline = Deadline(self._clock, verify.timeout, f"verifying {self.where}")
        try:
            with self._session() as tree:
                return filelike.verify_newest(tree, self.config.pattern, deadline)
        except LocationError as exc:
            return VerifyOutcome(None, str(exc))

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        """Each dump with its sidecar's sha256, each file of a directory backup, over one session."""
        deadline = Deadline(self._clock, self.config.timeout, f"listing the files of {self.where}")
        with self._session() as tree:
            yield from filelike.candidates(tree, backups, deadline)

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """The file's listed size and no more, read in windows; the file and the session are closed on any way out.
        Each request has the location's timeout; the whole read, which may take longer, the drill's own time."""
        unbounded = Deadline(self._clock, math.inf, f"reading {candidate.path}")
        try:
            with self._session(limit=candidate.size) as tree:
                filelike.stream(tree, candidate, sink, cancel, unbounded)
        except LocationError as exc:
            raise DrillNotRun(str(exc)) from None

    def holds(self, backup_id: str) -> bool:
        """A fresh stat of the backup; a name that is not UTF-8 (listed with escapes) is looked up in a listing."""
        with self._session() as tree:
            return tree.exists(backup_id) or filelike.holds(tree, self.config.pattern, backup_id)

    @contextmanager
    def _session(self, limit: int | None = None) -> Iterator[SftpTree]:
        endpoint = self.config.endpoint(self.config.timeout)
        try:
            client = connect(endpoint)
        except SshError as exc:  # "ssh user@host:port: why" or "key_file ...: why", named as this location
            raise LocationError(f"sftp://{endpoint.where}: {str(exc).removeprefix(f'ssh {endpoint.where}: ')}"
                                ) from None
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.config.timeout)
            yield SftpTree(sftp, self.config.path, self.where, limit)
        except paramiko.SSHException as exc:
            raise LocationError(f"{self.where}: {exc}") from None
        finally:
            client.close()


class SftpTree:
    """A remote directory as a filelike.Tree; `limit` bounds how much of a file is read (a drill reads its listed
    size, never more)."""

    def __init__(self, sftp: paramiko.SFTPClient, root: str, where: str, limit: int | None = None):
        self._sftp, self._root, self.where, self._limit = sftp, root, where, limit

    def list(self, directory: str = "") -> list[Entry]:
        listing = _listdir_attr(self._sftp, self._path(directory))  # lstat-like: symlinks stay symlinks
        return [found for name, attributes in listing if (found := filelike.entry(name, attributes))]

    def open(self, name: str) -> BinaryIO:
        file = self._sftp.open(self._path(name), "rb")
        size = file.stat().st_size or 0
        return _WindowedFile(file, size if self._limit is None else min(size, self._limit))

    def exists(self, name: str) -> bool:
        try:
            self._sftp.stat(self._path(name))
        except FileNotFoundError:  # paramiko's IOError(ENOENT)
            return False
        return True

    def _path(self, name: str) -> bytes:
        """The remote path as bytes: names keep the bytes the server sent, UTF-8 or not."""
        return (posixpath.join(self._root, name) if name else self._root).encode("utf-8", "surrogateescape")


def _listdir_attr(sftp: paramiko.SFTPClient, path: bytes) -> list[tuple[str, paramiko.SFTPAttributes]]:
    """paramiko's listdir_attr, but a name that is not UTF-8 arrives as surrogate escapes (as os.listdir
    gives it) instead of failing the whole listing with UnicodeDecodeError. It speaks the protocol
    through paramiko's `_request`, pinned with paramiko in constraints.txt."""
    kind, message = sftp._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = message.get_binary()
    found = []
    try:
        while True:
            try:
                kind, message = sftp._request(CMD_READDIR, handle)
            except EOFError:  # the end of the directory
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(message.get_int()):
                name = message.get_string().decode("utf-8", "surrogateescape")
                message.get_string()  # the `ls -l` line
                attributes = paramiko.SFTPAttributes._from_msg(message)
                if name not in (".", ".."):
                    found.append((name, attributes))
    finally:
        sftp._request(CMD_CLOSE, handle)
    return found


class _WindowedFile:
    """A remote file read WINDOW bytes at a time, each window as many requests in flight.

    A plain SFTP read waits one round trip per 32 KiB, so a far server crawls; paramiko's
    prefetch() plans the whole file up front, so its memory grows with the file.
    """

    def __init__(self, file: paramiko.SFTPFile, size: int):
        self._file, self._size = file, size
        self._position = 0
        self._window, self._used = b"", 0  # bytes read ahead from _position - _used on, and how many were read

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self._size - self._position
        if self._used == len(self._window) and self._position < self._size:
            length = min(max(size, WINDOW), self._size - self._position)
            self._window, self._used = b"".join(self._file.readv([(self._position, length)])), 0
        data = self._window[self._used:self._used + size]
        self._used += len(data)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position, self._window, self._used = base + offset, b"", 0
        return self._position

    def tell(self) -> int:
        return self._position

    def __enter__(self) -> _WindowedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()
