"""What the database kinds share: the phases inside a driver's one connect call, the TLS they ask for,
the reasons for a connection that failed, and the server's state as metrics.

A driver connects, shakes hands in TLS and logs in within one call: the TLS context it is given
marks where the handshake begins and ends (`WatchedContext`), so the probe still times connect,
tls and login apart, and keeps the TLS object for the served chain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from contextlib import ExitStack
from dataclasses import dataclass

from agent.collector import Emitter
from agent.net.http import CaFileError
from agent.reasons import describe
from collectors.probes import tls
from collectors.probes.config import DatabaseConfig
from collectors.probes.metrics import DB_CONNECTIONS, DB_CONNECTIONS_MAX, DB_INFO, DB_REPLICA_LAG
from collectors.probes.phases import Phases, ProbeFailed
from collectors.probes.tls import Handshake, OldestVersion, trust_identity

PRIMARY, REPLICA = "primary", "replica"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerState:
    """What the probe read of the server; `stopped` says why a replica does not replicate ("" when it does)."""

    version: str
    role: str
    connections: int
    max_connections: int
    lag: float | None = None
    stopped: str = ""


def emit(out: Emitter, state: ServerState) -> None:
    """The server's state as metrics; then a stopped replica fails the probe, its state still shown."""
    out.gauge(DB_INFO, 1, version=state.version, role=state.role)
    out.gauge(DB_CONNECTIONS, state.connections)
    out.gauge(DB_CONNECTIONS_MAX, state.max_connections)
    if state.lag is not None:
        out.gauge(DB_REPLICA_LAG, max(state.lag, 0.0))
    if state.stopped:
        raise ProbeFailed(state.stopped)


class Stages:
    """Phases one after another, each beginning as the last ends, when a callback (not a block) marks them."""

    def __init__(self, phases: Phases) -> None:
        self._phases = phases
        self._open = ExitStack()

    def begin(self, name: str) -> None:
        self._open.close()
        self._open.enter_context(self._phases.phase(name))

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc_info) -> None:
        self._open.__exit__(*exc_info)  # the failure passed on: the phase it cut short stays named


class WatchedObject(ssl.SSLObject):
    """The TLS of one connection, which tells its context when its handshake has succeeded."""

    def do_handshake(self) -> None:
        super().do_handshake()
        self.context.established(self)


class WatchedContext(ssl.SSLContext):
    """A client context that marks the tls phase (and the login after it) and keeps the connection's TLS object.

    The server name checked (and sent as SNI) is `server_name`: the driver is given the address resolved."""

    stages: Stages
    server_name: str
    tls: ssl.SSLObject | None = None

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        self.stages.begin("tls")
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)

    def established(self, tls: ssl.SSLObject) -> None:
        self.tls = tls
        self.stages.begin("login")


class Kept:
    """What a target's probe keeps from one run to the next: its TLS context, and the oldest TLS version the
    server accepts (found once an hour).

    Loading a trust store costs about 25 ms of CPU (the system's bundle), more than all the rest of a
    probe: the context is made again only when the file it was loaded from changes (a renewed ca_file or
    system bundle is still read at the next probe, without a restart). One run at a time uses it.
    """

    def __init__(self, monotonic) -> None:
        self.oldest = OldestVersion(monotonic)
        self._context: WatchedContext | None = None
        self._loaded: tuple = ()

    def tls_context(self, config: DatabaseConfig, stages: Stages) -> WatchedContext | None:
        """TLS as configured, never without it when asked: verified by default, against ca_file when given (a
        context of its own, so that SSL_CERT_FILE and the like never replace ca_file)."""
        if config.tls == "off":
            return None
        loaded = _trust_files(config)
        if self._context is None or loaded != self._loaded:
            self._context, self._loaded = _new_context(config), loaded
        self._context.stages, self._context.tls = stages, None
        return self._context


def _trust_files(config: DatabaseConfig) -> tuple:
    """Where the context's trust comes from, with each file's identity and time: a change makes a new context."""
    return ("unverified",) if config.tls == "required" else trust_identity(config.ca_file)


def _new_context(config: DatabaseConfig) -> WatchedContext:
    context = WatchedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.sslobject_class = WatchedObject
    context.server_name = config.server_name or config.host
    if config.tls == "required":
        log.warning("TLS verification is off target=%s (tls: required): the server's certificate is not checked",
                    config.name)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    elif config.ca_file:
        try:
            context.load_verify_locations(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:  # vigil's own config, not the server: the run fails
            raise CaFileError(f"cannot use ca_file {config.ca_file}: {describe(exc)}; it must be a PEM file of CA "
                              "certificates") from None
    else:
        context.load_default_certs()
    return context


async def resolve(host: str, port: int) -> str:
    """The first address of `host`, so that an unknown name is said to be one (the driver then connects there)."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeFailed(f"cannot resolve {host} ({exc.strerror})") from None
    return found[0][4][0]


async def connection_failure(exc: BaseException, config: DatabaseConfig, out: Emitter,
                             handshake: Handshake) -> ProbeFailed:
    """The failure of a connection below the database's own protocol: a certificate refused (its chain read
    and emitted all the same, collectors/probes/tls.py), a connection refused, a TLS handshake that failed."""
    where = f"{config.host}:{config.port}"
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return await tls.refused(out, cause, handshake)
        if isinstance(cause, ConnectionRefusedError):
            return ProbeFailed(f"{where} refused the connection: is the server running and listening on that port?")
        if isinstance(cause, ssl.SSLError):
            return ProbeFailed(f"the TLS handshake with {where} failed ({cause.reason or describe(cause)})")
        if isinstance(cause, OSError) and cause.errno:
            return ProbeFailed(f"cannot connect to {where} ({describe(cause)})")
    return ProbeFailed(f"cannot connect to {where} ({describe(exc)})")


def report_tls(out: Emitter, context: WatchedContext | None) -> None:
    """The served chain and the version negotiated, once the connection is up in TLS."""
    if context is not None and context.tls is not None:
        tls.report(out, context.tls)


async def check_oldest(out: Emitter, context: WatchedContext | None, kept: Kept, handshake: Handshake) -> None:
    """The oldest TLS version the server accepts (once an hour, after the probe's own connection closed)."""
    if context is not None:
        await kept.oldest.check(out, handshake)


def not_offering_tls(config: DatabaseConfig) -> str:
    return (f"{config.host}:{config.port} does not offer TLS: enable TLS on the server, or set tls: off to "
            "connect unencrypted")


def login_refused(config: DatabaseConfig) -> str:
    return f"the server refused the login for user {config.user}: check password"


def too_slow(config: DatabaseConfig) -> str:
    return (f"the query ran longer than the statement timeout ({config.statement_timeout:g}s): the server is "
            "overloaded or the query is slow")


def _causes(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
