"""Every TLS handshake of the probes: verified, the served chain reported, a refusal named, old versions found.

A probe shakes hands itself (httpx for https, asyncio's start_tls after a STARTTLS) with
`client_context(options)`: verification is always on, against the system's store or
`ca_file`. Then, with the ssl object of that connection, `report()` emits each certificate
the server sent (leaf, intermediate, root) and the negotiated version. When verification
fails, `refused()` shakes hands once more without it, through the probe's own `Handshake`,
so that the chain is still reported (an expired leaf shows its date) and the reason names the
fault: expired, not valid yet, another host name, self-signed, an intermediate not sent,
an untrusted CA (agent/net/tls.py's words). `OldestVersion` finds the oldest protocol the
server still accepts, once an hour: TLS 1.0 or 1.1 is a finding in the verdict's notes,
not a failed probe (an alert covers it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.net.http import ssl_context
from agent.net.tls import certificate_problem, unknown_issuer
from collectors.probes.metrics import NEGOTIATED_VERSION, NOT_AFTER, NOT_BEFORE, OLDEST_VERSION
from collectors.probes.phases import ProbeFailed

if TYPE_CHECKING:
    from agent.collector import Emitter
    from collectors.probes.config import TlsOptions

# A probe's way to shake hands with a given context: connect (and STARTTLS), yield the ssl
# object, close on exit. `refused()` and `OldestVersion` shake hands through it.
Handshake = Callable[[ssl.SSLContext], AbstractAsyncContextManager[ssl.SSLObject]]
Preamble = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

RECHECK = 3600.0  # seconds between two checks of the oldest version a server accepts
OLD = ("1.0", "1.1")  # versions that are a finding
_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_TRIED = ((ssl.TLSVersion.TLSv1, "1.0"), (ssl.TLSVersion.TLSv1_1, "1.1"), (ssl.TLSVersion.TLSv1_2, "1.2"))
_NO_LOCAL_ISSUER = 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
_EXPIRED = 10


@dataclass(frozen=True)
class Certificate:
    """One certificate the server sent, where it stands in the chain and when it is valid."""

    position: str  # leaf, intermediate, root (a self-signed certificate after the leaf)
    subject: str
    issuer: str
    not_before: float
    not_after: float


def client_context(options: TlsOptions | None) -> ssl.SSLContext:
    """Verification on, with the system's store or `ca_file` (agent.net.http.CaFileError when it is unusable).

    One context per trust store, shared by every target that verifies with it: each copy of the system's
    bundle holds about 0.8 MB and takes about 25 ms of CPU to load (1,000 targets held 0.8 GB). It is
    loaded again when its file changes, so a target that opens after a renewed ca_file or bundle uses it.
    """
    ca_file = options.ca_file if options is not None else None
    identity = trust_identity(ca_file)
    shared = _SHARED.get(ca_file)
    if shared is None or shared[0] != identity:
        shared = _SHARED[ca_file] = (identity, ssl_context(ca_file))
    return shared[1]


_SHARED: dict[Path | None, tuple[tuple, ssl.SSLContext]] = {}  # by ca_file (None: the system's store)


def trust_identity(ca_file: Path | None) -> tuple:
    """The trust store's files (ca_file, or the system's bundle and folder) as they are now: each one's inode,
    size and time of change."""
    defaults = ssl.get_default_verify_paths()
    found = []
    for path in (ca_file,) if ca_file else (defaults.cafile, defaults.capath):
        try:
            stat = os.stat(path) if path else None
        except OSError:
            stat = None
        found.append((path, stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat else (path,))
    return tuple(found)


def unverified_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A context that reads whatever the server sends; with `version`, that protocol only, at OpenSSL's
    security level 0 (OpenSSL 3 refuses TLS 1.0 and 1.1 above it, so asking is the only way to know)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 is deprecated: that is what is asked
            context.minimum_version = context.maximum_version = version
        context.set_ciphers("DEFAULT@SECLEVEL=0")
    return context


def connect(host: str, port: int, server_name: str | None, preamble: Preamble | None = None) -> Handshake:
    """The Handshake of a service at host:port: TLS at once (https, imaps), or after `preamble` has spoken
    the service's own protocol up to its STARTTLS (SMTP, an SSLRequest, a proxy's CONNECT)."""

    @asynccontextmanager
    async def handshake(context: ssl.SSLContext) -> AsyncIterator[ssl.SSLObject]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if preamble is not None:
                await preamble(reader, writer)
            await writer.start_tls(context, server_hostname=server_name or host)
            yield writer.get_extra_info("ssl_object")
        finally:
            writer.transport.abort()  # no close_notify to wait for: the socket goes now

    return handshake


def served_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[Certificate, ...]:
    """Every certificate the server sent, in its order, verified or not."""
    from cryptography import x509

    chain = ssl_object._sslobj.get_unverified_chain() or ()  # public from Python 3.13
    served = []
    for index, raw in enumerate(chain):
        cert = x509.load_der_x509_certificate(raw.public_bytes(ssl._ssl.ENCODING_DER))
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        position = "leaf" if index == 0 else "root" if subject == issuer else "intermediate"
        served.append(Certificate(position, subject, issuer, cert.not_valid_before_utc.timestamp(),
                                  cert.not_valid_after_utc.timestamp()))
    return tuple(served)


def emit_chain(out: Emitter, chain: tuple[Certificate, ...]) -> None:
    for cert in chain:
        labels = {"position": cert.position, "subject": cert.subject, "issuer": cert.issuer}
        out.gauge(NOT_AFTER, cert.not_after, **labels)
        out.gauge(NOT_BEFORE, cert.not_before, **labels)


def version_number(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """"1.3" for TLSv1.3."""
    return _VERSIONS.get(ssl_object.version() or "", "0")


def report(out: Emitter, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[Certificate, ...]:
    """After a verified handshake: the served chain and the negotiated version, emitted; the chain."""
    chain = served_chain(ssl_object)
    emit_chain(out, chain)
    out.gauge(NEGOTIATED_VERSION, float(version_number(ssl_object)))
    return chain


async def refused(out: Emitter, error: ssl.SSLCertVerificationError, handshake: Handshake) -> ProbeFailed:
    """Why the certificate was refused, as the probe's failure; the chain read and emitted all the same
    (a handshake without verification: a server that refuses it too leaves the chain unreported)."""
    chain: tuple[Certificate, ...] = ()
    try:
        async with handshake(unverified_context()) as ssl_object:
            chain = served_chain(ssl_object)
    except (OSError, ssl.SSLError):
        pass
    emit_chain(out, chain)
    return ProbeFailed(refusal(error, chain))


def refusal(error: ssl.SSLCertVerificationError, chain: tuple[Certificate, ...]) -> str:
    """The reason, in agent/net/tls.py's words, with what the chain adds: the intermediate the server does
    not send or the CA not trusted, by name; the certificate that expired and when."""
    sent = {cert.subject for cert in chain}
    if error.verify_code == _NO_LOCAL_ISSUER and chain and chain[-1].issuer not in sent:
        problem, fix = unknown_issuer(chain[-1].issuer, len(chain))
    else:
        problem, fix = certificate_problem(error)
    if error.verify_code == _EXPIRED:
        expired = [cert for cert in chain if cert.not_after < dt.datetime.now(dt.UTC).timestamp()]
        problem += "".join(f" ({cert.position} {cert.subject}, on {_date(cert.not_after)})" for cert in expired[:1])
    return f"{problem}; {fix}"


def _date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class OldestVersion:
    """The oldest protocol version a server accepts, found again every RECHECK seconds: one handshake per
    version from TLS 1.0 up, each allowed that version only, until one is accepted."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._checked: float | None = None
        self.version = ""  # "" until known

    async def check(self, out: Emitter, handshake: Handshake) -> None:
        """Find it when due (a server that cannot be reached leaves it unknown, to try next run); emit it."""
        if self._checked is None or self._monotonic() - self._checked >= RECHECK:
            found = await _oldest(handshake)
            if found:
                self.version, self._checked = found, self._monotonic()
        if self.version:
            out.gauge(OLDEST_VERSION, float(self.version))

    def notes(self) -> Mapping[str, str]:
        """The finding for the verdict: TLS 1.0 or 1.1 still offered."""
        if self.version not in OLD:
            return {}
        return {"TLS": f"the server still accepts TLS {self.version}, which is broken and deprecated: "
                       "allow only TLS 1.2 and 1.3 on it"}


async def _oldest(handshake: Handshake) -> str:
    for version, number in _TRIED:
        try:
            async with handshake(unverified_context(version)):
                return number
        except (ssl.SSLError, ConnectionResetError):
            continue  # refused: try the next
        except OSError:
            return ""  # no answer: unknown
    return "1.3"
