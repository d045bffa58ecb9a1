"""Backups as files on an SFTP server, read with paramiko: `{kind: sftp, host:, user:, key_file:, path:}`.

The same rules as a local directory (checks.sources.filelike), over one SSH connection
per listing. The server must be known before the first connection: its key is either in
`known_hosts` or pinned by `host_key_fingerprint`; an unknown or changed key is refused,
never added. Authentication is by `key_file` only (no agent, no ~/.ssh keys), and every
step (connect, banner, auth, each SFTP request) has the location's timeout.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import paramiko
from pydantic import Field, model_validator

from checks.config import VerifyConfig
from checks.model import BackupSnapshot, LocationConfig, VerifyOutcome
from checks.sources import filelike
from checks.sources.filelike import Deadline, Entry, LocationError, NamePattern, reason

WINDOW = 4 << 20  # bytes requested at once when reading a file (128 requests of 32 KiB in flight)


class SftpLocation:
    kind = "sftp"

    class Config(LocationConfig):
        kind: Literal["sftp"]
        host: str
        port: Annotated[int, Field(ge=1, le=65535)] = 22
        user: str
        key_file: Path
        known_hosts: Path | None = None
        host_key_fingerprint: Annotated[str, Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$")] | None = None
        path: str  # absolute, or relative to the user's login directory
        pattern: NamePattern = "*"

        @model_validator(mode="after")
        def _host_key_known(self) -> SftpLocation.Config:
            if (self.known_hosts is None) == (self.host_key_fingerprint is None):
                raise ValueError("set one of known_hosts or host_key_fingerprint: the server's key must be "
                                 "known in advance (ssh-keyscan -p PORT HOST | ssh-keygen -lf -)")
            return self

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

    @contextmanager
    def _session(self) -> Iterator[SftpTree]:
        client = self._connect()
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.config.timeout)
            yield SftpTree(sftp, self.config.path, self.where)
        except paramiko.SSHException as exc:
            raise LocationError(f"{self.where}: {exc}") from None
        finally:
            client.close()

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            self._handshake(client)
        except BaseException:
            client.close()
            raise
        return client

    def _handshake(self, client: paramiko.SSHClient) -> None:
        """Connect and authenticate, or raise LocationError saying which of the two went wrong."""
        config = self.config
        key = _private_key(config.key_file)
        if config.known_hosts is not None:
            try:
                client.get_host_keys().load(str(config.known_hosts))
            except OSError as exc:
                raise LocationError(f"cannot read known_hosts {config.known_hosts}: {reason(exc)}") from None
        client.set_missing_host_key_policy(_KnownHostsOnly(config.host_key_fingerprint, config.known_hosts))
        timeout = config.timeout
        try:
            client.connect(config.host, config.port, username=config.user, pkey=key, look_for_keys=False,
                           allow_agent=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout)
        except paramiko.BadHostKeyException as exc:
            raise LocationError(
                f"sftp {self.address}: the host key has changed: the server sent {exc.key.fingerprint}, "
                f"{config.known_hosts} has {exc.expected_key.fingerprint} (if the server was reinstalled, "
                "update known_hosts after checking the new key)") from None
        except UnknownHostKey as exc:
            raise LocationError(f"sftp {self.address}: {exc}") from None
        except paramiko.AuthenticationException:
            raise LocationError(f"sftp {config.user}@{self.address}: the server refused the key {config.key_file}"
                                ) from None
        except (paramiko.SSHException, OSError) as exc:
            raise LocationError(f"sftp {self.address}: cannot connect: {reason(exc)}") from None


class UnknownHostKey(paramiko.SSHException):
    """The server's key is neither in known_hosts nor the pinned one."""


class _KnownHostsOnly(paramiko.RejectPolicy):
    """Refuse any key not already known, except the pinned one; never add a key anywhere.

    paramiko asks this policy only about keys missing from known_hosts: a known host that
    shows another key raises BadHostKeyException before it gets here.
    """

    def __init__(self, pinned: str | None, known_hosts: Path | None):
        self._pinned, self._known_hosts = pinned, known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self._pinned is not None:
            if key.fingerprint.rstrip("=") == self._pinned.rstrip("="):
                return
            raise UnknownHostKey(f"the server's {key.get_name()} key is {key.fingerprint}, "
                                 f"not the pinned {self._pinned}")
        raise UnknownHostKey(f"the server's {key.get_name()} key ({key.fingerprint}) is not in {self._known_hosts}; "
                             f"check it and add it (ssh-keyscan)")


def _private_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise LocationError(f"key_file {path} does not exist") from None
    except PermissionError:
        raise LocationError(f"key_file {path} is not readable by this user") from None
    except paramiko.PasswordRequiredException:
        raise LocationError(f"key_file {path} has a passphrase; vigil needs a key without one "
                            "(protect it with file permissions)") from None
    except (paramiko.SSHException, paramiko.UnknownKeyType, OSError, ValueError) as exc:
        raise LocationError(f"key_file {path} is not a private key vigil can read ({type(exc).__name__})") from None


class SftpTree:
    """A remote directory as a filelike.Tree."""

    def __init__(self, sftp: paramiko.SFTPClient, root: str, where: str):
        self._sftp, self._root, self.where = sftp, root, where

    def list(self, directory: str = "") -> list[Entry]:
        listing = self._sftp.listdir_attr(self._path(directory))  # lstat-like: symlinks stay symlinks
        return [found for attributes in listing if (found := filelike.entry(attributes.filename, attributes))]

    def open(self, name: str) -> BinaryIO:
        file = self._sftp.open(self._path(name), "rb")
        return _WindowedFile(file, file.stat().st_size or 0)

    def _path(self, name: str) -> str:
        return posixpath.join(self._root, name) if name else self._root


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
