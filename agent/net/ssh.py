"""The SSH transport of the ssh collector and the sftp location, on paramiko, in worker threads.

- **Host keys are pinned.** The server's key must be in the configured `known_hosts` or
  match `host_key_fingerprint` (SHA256:...); an unknown key is refused and a changed one
  is refused with both fingerprints. Nothing is ever added, ~/.ssh is never read, and no
  agent is asked.
- **Client keys** (ed25519, RSA, ECDSA) are loaded from `key_file`, decrypted with
  `key_passphrase` (a secret reference); `password` is tried when there is no key or the
  key is refused.
- **Bounds.** Connect, banner, auth and channel opening each have the endpoint's timeout; a
  command run by `run()` is bounded as a whole (not per read), its output capped, and its
  channel closed when either is exceeded. Keepalives find a dead peer of a long session.
- **Closed connections.** A connection found closed before a command started (sshd
  restarted, or closed it as unused: OpenSSH 9.2's UnusedConnectionTimeout) is
  ConnectionClosed; a caller whose connection ran earlier commands raises
  KeptConnectionClosed, a SessionLost, and the agent connects again within the poll.
- **Jump hosts.** `connect(endpoint, via=jump.get_transport())` tunnels through another
  connection (a direct-tcpip channel); the target's key is checked as for a direct one.

Every failure is an SshError of one line naming user@host:port, the cause and the fix.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

import paramiko
from pydantic import BaseModel, Field, SecretStr, model_validator

from agent.collector import SessionLost
from agent.ondisk import KeyFile, KnownHosts
from agent.reasons import shorten
from agent.secrets import Secret

READ = 32768
POLL = 1.0  # seconds between checks of a silent command's deadline (select wakes at once on data)


class SshError(Exception):
    """An SSH step that failed; one line, never a passphrase or a password."""


class ConnectionClosed(SshError):
    """The connection was closed before a command started: sshd restarted, or closed it as unused
    (UnusedConnectionTimeout), or the network dropped it."""


class KeptConnectionClosed(ConnectionClosed, SessionLost):
    """The same, of a connection that ran earlier polls' commands: the agent connects again and
    polls once more (a caller that knows the connection served before raises it)."""


class HostKeyUnknown(SshError):
    """The server's key is neither in known_hosts nor the pinned one."""


class HostKeyChanged(SshError):
    """known_hosts has another key for this server: reinstalled, or someone in between."""


class AuthRefused(SshError):
    """The server refused every credential offered."""


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    key_file: Path | None
    key_passphrase: SecretStr | None
    password: SecretStr | None
    known_hosts: Path | None
    host_key_fingerprint: str | None
    timeout: float
    keepalive: float = 30.0

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


Fingerprint = Annotated[str, Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$")]


class SshFields(BaseModel):
    """The SSH keys shared by the ssh collector and the sftp location (mix into their Config)."""

    host: str = Field(description="the server's name or address")
    port: int = Field(22, ge=1, le=65535, description="the SSH port")
    user: str = Field(description="the user to log in as")
    key_file: KeyFile | None = Field(None, description="the private key (ed25519, RSA or ECDSA; OpenSSH or PEM "
                                                       "format); no agent and no ~/.ssh key is ever used")
    key_passphrase: Secret | None = Field(None, description="the key_file's passphrase, as a secret reference")
    password: Secret | None = Field(None, description="a password, as a secret reference; tried when there "
                                                      "is no key_file or the server refuses the key")
    known_hosts: KnownHosts | None = Field(None, description="a known_hosts file with the server's key (one of "
                                                             "known_hosts or host_key_fingerprint)")
    host_key_fingerprint: Fingerprint | None = Field(None, description="the server's key pinned as SHA256:... "
                                                                       "(ssh-keyscan HOST, piped to ssh-keygen -lf -)")

    @model_validator(mode="after")
    def _host_key_known(self) -> Self:
        if (self.known_hosts is None) == (self.host_key_fingerprint is None):
            raise ValueError("set one of known_hosts or host_key_fingerprint: the server's key must be "
                             "known in advance (ssh-keyscan -p PORT HOST | ssh-keygen -lf -)")
        if self.key_file is None and self.password is None:
            raise ValueError("set key_file (or password): vigil uses no SSH agent and no ~/.ssh keys")
        if self.key_passphrase is not None and self.key_file is None:
            raise ValueError("key_passphrase is set but key_file is not")
        return self

    def endpoint(self, timeout: float, keepalive: float = 30.0) -> SshEndpoint:
        return SshEndpoint(self.host, self.port, self.user, self.key_file, self.key_passphrase, self.password,
                           self.known_hosts, self.host_key_fingerprint, timeout, keepalive)


def connect(endpoint: SshEndpoint, via: paramiko.Transport | None = None) -> paramiko.SSHClient:
    """An authenticated client, or SshError saying which step failed and what to do."""
    key = load_key(endpoint.key_file, endpoint.key_passphrase) if endpoint.key_file is not None else None
    client = paramiko.SSHClient()
    try:
        _handshake(client, endpoint, key, via)
    except BaseException:
        client.close()
        raise
    return client


def load_key(path: Path, passphrase: SecretStr | None) -> paramiko.PKey:
    """A private key from its file; SshError naming the file and what is wrong with it."""
    secret = passphrase.get_secret_value().encode() if passphrase is not None else None
    try:
        return paramiko.PKey.from_path(path, secret)
    except FileNotFoundError:
        raise SshError(f"key_file {path} does not exist") from None
    except PermissionError:
        raise SshError(f"key_file {path} is not readable by this user") from None
    except (paramiko.SSHException, paramiko.UnknownKeyType, OSError, ValueError, TypeError) as exc:
        if _encrypted(path):
            if secret is None:
                raise SshError(f"key_file {path} is encrypted; set key_passphrase: to a reference to its "
                               "passphrase") from None
            raise SshError(f"key_file {path} cannot be decrypted with key_passphrase; check the "
                           "passphrase") from None
        raise SshError(f"key_file {path} is not a private key vigil can read ({type(exc).__name__})") from None


def _encrypted(path: Path) -> bool:
    """Whether the key needs a passphrase: the libraries say so only when none is given."""
    try:
        paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        return True
    except TypeError as exc:  # cryptography's words, for OpenSSH and for PEM files
        return any(word in str(exc) for word in ("password-protected", "is encrypted"))
    except (paramiko.SSHException, paramiko.UnknownKeyType, OSError, ValueError):
        return False
    return False


def _handshake(client: paramiko.SSHClient, endpoint: SshEndpoint, key: paramiko.PKey | None,
               via: paramiko.Transport | None) -> None:
    where, timeout = endpoint.where, endpoint.timeout
    if endpoint.known_hosts is not None:
        try:
            client.get_host_keys().load(str(endpoint.known_hosts))
        except OSError as exc:
            raise SshError(f"ssh {where}: cannot read known_hosts {endpoint.known_hosts}: "
                           f"{exc.strerror or exc}") from None
        except paramiko.hostkeys.InvalidHostKey as exc:
            raise SshError(f"ssh {where}: known_hosts {endpoint.known_hosts} has a line that is not a host key "
                           f"({str(exc.line).split()[0] if exc.line else 'empty'} ...): fix or remove it "
                           "(ssh-keyscan -p PORT HOST prints good ones)") from None
    client.set_missing_host_key_policy(_PinnedOnly(endpoint))
    sock = _tunnel(endpoint, via) if via is not None else None
    password = endpoint.password.get_secret_value() if endpoint.password is not None else None
    try:
        client.connect(endpoint.host, endpoint.port, username=endpoint.user, pkey=key, password=password,
                       look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, channel_timeout=timeout, sock=sock)
    except paramiko.BadHostKeyException as exc:
        raise HostKeyChanged(
            f"ssh {where}: the host key has changed: the server sent {exc.key.fingerprint}, "
            f"{endpoint.known_hosts} has {exc.expected_key.fingerprint} (if the server was reinstalled, "
            "update known_hosts after checking the new key)") from None
    except HostKeyUnknown:
        raise
    except paramiko.AuthenticationException:
        offered = " and ".join(part for part in (f"the key {endpoint.key_file}" if key else "",
                                                 "the password" if password else "") if part)
        raise AuthRefused(f"ssh {where}: the server refused {offered}; check that it is authorized "
                          "for this user") from None
    except TimeoutError:
        raise SshError(f"ssh {where}: no answer within {timeout:g}s; check the host, port and "
                       "firewall") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if _refused(exc):
            raise SshError(f"ssh {where}: connection refused; check the host and port, and that sshd "
                           "runs") from None
        if "banner" in str(exc) or "No existing session" in str(exc):  # the server never spoke, or hung up
            raise SshError(f"ssh {where}: {_no_banner(exc, client, timeout)} (is this an SSH server?)") from None
        raise SshError(f"ssh {where}: cannot connect: {_reason(exc)}") from None
    transport = client.get_transport()
    if transport is not None and endpoint.keepalive > 0:
        transport.set_keepalive(max(1, round(endpoint.keepalive)))


def _no_banner(exc: BaseException, client: paramiko.SSHClient, timeout: float) -> str:
    """A peer that accepted and stayed silent, or one that hung up; paramiko's own words hide which.

    The banner error carries what ended the read (EOF or a reset when the peer hung up, a
    timeout when it stayed silent) as its context; when the caller sees only "No existing
    session", the transport thread kept the banner error as `saved_exception`.
    """
    saved = getattr(client.get_transport(), "saved_exception", None)
    causes = [error for first in (exc, saved) if first is not None for error in (first, first.__context__)]
    if any(isinstance(error, EOFError | ConnectionError) or "reset" in str(error) for error in causes):
        return "the server hung up before sending an SSH banner"
    return f"no SSH banner within {timeout:g}s"


def _refused(exc: BaseException) -> bool:
    """Refused on every address the name has (paramiko tries each and raises them together)."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(isinstance(error, ConnectionRefusedError) for error in exc.errors.values())
    return isinstance(exc, ConnectionRefusedError)


def _tunnel(endpoint: SshEndpoint, via: paramiko.Transport) -> paramiko.Channel:
    try:
        return via.open_channel("direct-tcpip", (endpoint.host, endpoint.port), ("127.0.0.1", 0),
                                timeout=endpoint.timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        jump = via.getpeername()
        raise SshError(f"ssh {endpoint.where}: the jump host {jump[0]}:{jump[1]} did not open a tunnel "
                       f"({_reason(exc)}); check AllowTcpForwarding there") from None


class _PinnedOnly(paramiko.MissingHostKeyPolicy):
    """Refuse any key not already known, except the pinned one; never add a key anywhere.

    paramiko asks this policy only about keys missing from known_hosts: a known host that
    shows another key raises BadHostKeyException before it gets here.
    """

    def __init__(self, endpoint: SshEndpoint):
        self._pinned, self._known_hosts, self._where = (endpoint.host_key_fingerprint, endpoint.known_hosts,
                                                        endpoint.where)

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self._pinned is not None:
            if key.fingerprint.rstrip("=") == self._pinned.rstrip("="):
                return
            raise HostKeyUnknown(f"ssh {self._where}: the server's {key.get_name()} key is {key.fingerprint}, "
                                 f"not the pinned {self._pinned}")
        raise HostKeyUnknown(f"ssh {self._where}: the server's {key.get_name()} key ({key.fingerprint}) is not in "
                             f"{self._known_hosts}; check it and add it (ssh-keyscan)")


def run(client: paramiko.SSHClient, command: str, *, timeout: float, max_bytes: int = 4 << 20,
        stdin: bytes | None = None, what: str = "") -> tuple[int, bytes, bytes]:
    """Run one command: (exit status, stdout, stderr). The whole command has `timeout` seconds.

    A failure names the command as `what` says (`the poll script linux_poll.sh`: a script sent
    inline is unreadable in its shell quoting), or shows the command itself when `what` is empty.
    An exit status of -1 means the server gave none (the command was killed by a signal).
    """
    named = what or f"`{shorten(command, 60)}`"
    transport = client.get_transport()
    where = _peer(transport)
    deadline = time.monotonic() + timeout
    try:
        channel = transport.open_session(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
        if not transport.is_active():  # it ended as the session was asked for: nothing ran
            raise ConnectionClosed(f"ssh {where}: the server closed the connection") from None
        if "timeout opening channel" in str(exc).lower():  # paramiko's words for a server that went silent
            raise SshError(f"ssh {where}: cannot open a session: no answer from the server within {timeout:g}s "
                           "(sshd or the host hangs, or is overloaded)") from None
        raise SshError(f"ssh {where}: cannot open a session: {_reason(exc)}") from None
    try:
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = _drain(channel, deadline, max_bytes, where, named, timeout)
        return channel.recv_exit_status(), out, err
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SshError(f"ssh {where}: {named} failed: {_reason(exc)}") from None
    finally:
        channel.close()


def _drain(channel: paramiko.Channel, deadline: float, max_bytes: int, where: str, named: str,
           timeout: float) -> tuple[bytes, bytes]:
    """Read stdout and stderr until the command exits, within the deadline and the cap."""
    out: list[bytes] = []
    err: list[bytes] = []
    size = 0
    while True:
        while channel.recv_ready() or channel.recv_stderr_ready():
            if channel.recv_ready():
                chunk = channel.recv(READ)
                out.append(chunk)
                size += len(chunk)
            if channel.recv_stderr_ready():
                chunk = channel.recv_stderr(READ)
                err.append(chunk)
                size += len(chunk)
            if size > max_bytes:
                raise SshError(f"ssh {where}: {named} wrote more than {max_bytes} bytes; "
                               "stopped it")
        if channel.eof_received and (channel.exit_status_ready() or channel.closed):
            if not (channel.recv_ready() or channel.recv_stderr_ready()):
                return b"".join(out), b"".join(err)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise SshError(f"ssh {where}: {named} did not finish within {round(timeout, 1):g}s; stopped it")
        select.select([channel], [], [], min(left, POLL))


def _peer(transport: paramiko.Transport | None) -> str:
    if transport is None or not transport.is_active():
        raise ConnectionClosed("ssh: the server closed the connection")
    try:
        host, port = transport.getpeername()[:2]
    except OSError:  # the jump host's connection under it is gone
        raise ConnectionClosed("ssh: the server closed the connection") from None
    return f"{transport.get_username()}@{host}:{port}"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
