"""One persistent connection per upsd, shared by every target that reads a UPS behind it.

A site's upsd often serves several UPSes; each `kind: nut` target polls one, and all of
them with the same login share one TCP (or STARTTLS) session: one handshake, one login,
requests taken in turn under a lock. A session whose stream broke (a timeout or a
cancel mid-reply leaves it out of step) is never reused: the next `acquire` makes a
new one, and the targets still holding the old one take the new one at their next poll.

upsd drops a client that sent nothing for more than 60 s (server/upsd.c, not
configurable), and the default interval is 60 s plus jitter: a session that served
earlier polls and is found closed before upsd answered raises SessionClosed, a
SessionLost, and the agent polls once more on a new session.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import SecretStr

from agent.collector import SessionLost
from agent.net.tls import certificate_refusal
from agent.reasons import describe

_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Session]] = weakref.WeakKeyDictionary()


class NutError(Exception):
    """upsd said no, or said nothing usable; the message names the server and the fix."""


class _Closed(NutError):
    """upsd closed the connection (or reset it)."""


class SessionClosed(NutError, SessionLost):
    """upsd closed a session that had served earlier requests, before answering this one."""


class Session:
    def __init__(self, key: tuple, host: str, port: int, timeout: float):
        self.key, self.where, self._host, self._port, self._timeout = key, f"{host}:{port}", host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.users = 0
        self.broken = False
        self.opened = asyncio.Event()  # set once connect() ended, well or not: others wait for it
        self.encrypted = False
        self.served = False  # a whole reply was read: from then on, a close before a reply is a drop

    @property
    def closed_by_peer(self) -> bool:
        """upsd closed the connection (it drops clients silent for 60 s), seen before sending anything."""
        return self._reader is not None and self._reader.at_eof()

    async def connect(self, tls: str, ca_file: Path | None, username: str | None, password: SecretStr | None) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port),
                                                                self._timeout)
        except socket.gaierror:
            self.broken = True
            raise NutError(f"upsd {self.where}: the host name does not resolve; check `host:` and DNS") from None
        except TimeoutError:
            self.broken = True
            raise NutError(f"upsd {self.where}: no answer to connecting within {self._timeout:g}s; check that the "
                           f"host is up and no firewall drops port {self._port}") from None
        except OSError as exc:
            self.broken = True
            raise NutError(f"upsd {self.where}: cannot connect ({describe(exc)}); is upsd listening "
                           "there (LISTEN in upsd.conf)?") from None
        async with self.turn():
            if tls != "off":
                await self._starttls(tls, ca_file)
            if username:
                await self.expect(f"USERNAME {username}", "USERNAME")
            if password:
                await self.expect(f"PASSWORD {password.get_secret_value()}", "PASSWORD")

    async def _starttls(self, tls: str, ca_file: Path | None) -> None:
        reply = await self.command("STARTTLS")
        if reply.startswith("OK STARTTLS"):
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            try:
                await self._writer.start_tls(context, server_hostname=self._host)
            except (ssl.SSLError, OSError) as exc:
                self.broken = True
                raise NutError(f"upsd {self.where}: TLS failed: "
                               + (certificate_refusal(exc) or f"{exc}; check upsd's certificate (CERTPATH/CERTFILE "
                                                                  "in upsd.conf)")) from None
            self.encrypted = True
        elif tls == "required":
            raise NutError(f"upsd {self.where}: upsd does not offer STARTTLS ({reply}); give upsd a certificate "
                           "(CERTPATH/CERTFILE in upsd.conf) or set `tls: if_offered`")

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One request at a time; anything but a clean reply (a timeout, a cancel) breaks the session."""
        async with self._lock:
            if self.broken or self._writer is None:  # broken by another target's request meanwhile
                raise SessionClosed(f"upsd {self.where}: the connection was lost before the request was sent")
            try:
                yield
            except NutError:
                raise
            except BaseException:
                self.broken = True
                raise

    async def command(self, line: str) -> str:
        """Send one line and read the first line of the reply; SessionClosed if upsd had closed a
        session that served earlier requests (nothing of this request was answered)."""
        try:
            if self.closed_by_peer:
                raise _Closed(f"upsd {self.where}: upsd closed the connection")
            self._writer.write(line.encode() + b"\n")
            return await self.line()
        except _Closed as closed:
            self.broken = True
            if self.served:
                raise SessionClosed(f"{closed} while it was idle") from None
            raise

    def done(self) -> None:
        """A whole reply was read: the session serves requests."""
        self.served = True

    async def expect(self, line: str, shown: str) -> None:
        """A login step that must answer OK; the message never shows the line (it may hold a password)."""
        reply = await self.command(line)
        if not reply.startswith("OK"):
            raise NutError(f"upsd {self.where}: {shown} refused ({reply[:60]}): check `username`/`password` "
                           "and upsd.users")

    async def line(self) -> str:
        try:
            raw = await asyncio.wait_for(self._reader.readline(), self._timeout)
        except TimeoutError:
            self.broken = True
            raise NutError(f"upsd {self.where}: no reply within {self._timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.broken = True
            raise _Closed(f"upsd {self.where}: upsd closed the connection ({exc})") from None
        except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: a line over the stream's limit
            self.broken = True
            raise NutError(f"upsd {self.where}: connection lost ({exc})") from None
        if not raw:
            self.broken = True
            raise _Closed(f"upsd {self.where}: upsd closed the connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer, self._reader, self.broken = self._writer, None, None, True
        try:
            if not writer.is_closing():
                writer.write(b"LOGOUT\n")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, TimeoutError, ssl.SSLError):
            pass  # the peer is gone already: nothing left to close


async def acquire(host: str, port: int, timeout: float, tls: str, ca_file: Path | None, username: str | None,
                  password: SecretStr | None) -> Session:
    """The live session for this upsd and login, made (and logged in) if there is none."""
    secret = hashlib.sha256(password.get_secret_value().encode()).hexdigest() if password else ""
    key = (host, port, tls, str(ca_file or ""), username or "", secret)
    sessions = _SESSIONS.setdefault(asyncio.get_running_loop(), {})
    session = sessions.get(key)
    if session is not None:
        await session.opened.wait()  # another target of this upsd is connecting it
        session.broken = session.broken or session.closed_by_peer
    if session is None or session.broken:
        session = sessions[key] = Session(key, host, port, timeout)
        try:
            await session.connect(tls, ca_file, username, password)
        except BaseException:
            if sessions.get(key) is session:
                sessions.pop(key)
            await session.close()
            raise
        finally:
            session.opened.set()
    session.users += 1
    return session


async def release(session: Session) -> None:
    """A target is done with the session; the last one out closes it."""
    session.users -= 1
    if session.users <= 0 or session.broken:
        sessions = _SESSIONS.get(asyncio.get_running_loop(), {})
        if sessions.get(session.key) is session and (session.users <= 0 or session.broken):
            sessions.pop(session.key)
        if session.users <= 0:
            await session.close()
