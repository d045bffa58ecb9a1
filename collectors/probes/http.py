"""`kind: http`: one request on httpx, each phase timed, the answer judged, the TLS chain reported.

The phases: resolve and connect are timed in the network backend (which also picks the
address family the target prefers), tls and processing (the request sent, until the
status line and headers: blackbox_exporter's "processing", the time to first byte) from
httpcore's trace events, transfer while the body is read, never more than `max_body` of it.
Redirects are followed here, hop by hop, so that each hop's body is bounded too. Each probe
makes its client and closes it before it returns: no connection is kept between probes (a
kept one would hide a server that no longer accepts new ones, and would hold a socket).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from agent.net.http import USER_AGENT, safe_url, transport_reason
from collectors.probes import tls
from collectors.probes.config import HttpConfig
from collectors.probes.metrics import HTTP_STATUS
from collectors.probes.phases import Phases, ProbeFailed

if TYPE_CHECKING:
    from agent.collector import Emitter

MAX_REDIRECTS = 10
_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
# httpcore's traced steps -> the phase each starts or ends (processing spans two of them)
_STARTS = {"connection.start_tls": "tls", "http11.send_request_headers": "processing"}
_ENDS = {"connection.start_tls": "tls", "http11.receive_response_headers": "processing"}


class HttpCheck:
    """One target's probe; what it keeps between probes: its TLS context and the oldest TLS version found."""

    def __init__(self, config: HttpConfig, monotonic: Callable[[], float]) -> None:
        self.config = config
        self._context = tls.client_context(config)
        self._oldest = tls.OldestVersion(monotonic)

    def notes(self) -> Mapping[str, str]:
        return self._oldest.notes()

    async def run(self, out: Emitter, phases: Phases) -> None:
        config = self.config
        backend = _Backend(phases, config.ip_version, config.ip_fallback)
        transport = httpx.AsyncHTTPTransport(verify=self._context, trust_env=False, retries=0)
        # httpx takes no network backend: its pool is httpcore's, made again here with ours
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._context, max_connections=1, keepalive_expiry=0,
            proxy=httpcore.Proxy(str(config.proxy)) if config.proxy else None,
            network_backend=backend)
        # the probe's deadline bounds the whole exchange (collector.Probe): httpx's own timeouts would bound each read
        try:
            async with httpx.AsyncClient(transport=transport, timeout=None, trust_env=False,  # noqa: S113 — see above
                                         headers={"user-agent": USER_AGENT}) as client:
                response, body = await self._exchange(client, out, phases)
        finally:
            await backend.close()
        out.gauge(HTTP_STATUS, response.status_code)
        judge(config, response, body)

    async def _exchange(self, client: httpx.AsyncClient, out: Emitter, phases: Phases) -> tuple[httpx.Response, bytes]:
        """The last answer (after the redirects followed) and its body, as far as read; its TLS reported."""
        config = self.config
        request = client.build_request(config.method, str(config.url), headers=_headers(config),
                                       extensions={"trace": _Trace(phases)})
        if config.server_name:
            request.extensions["sni_hostname"] = config.server_name
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as failure:
                await self._refused(out, request, failure)
                # 0: httpx has no timeout here (the probe's deadline is the one), so no reason names one
                reason = "; ".join(filter(None, transport_reason(failure, 0)))
                raise ProbeFailed(reason) from None
            try:
                body = await _read(response, config.max_body, phases)
                if not (config.follow_redirects and response.next_request is not None):
                    await self._report_tls(out, request, response)
                    return response, body
            finally:
                await response.aclose()
            request = response.next_request
        raise ProbeFailed(f"more than {MAX_REDIRECTS} redirects; the last to {safe_url(request.url)}")

    async def _report_tls(self, out: Emitter, request: httpx.Request, response: httpx.Response) -> None:
        """The TLS of the connection that gave the last answer (the stream still open), if any."""
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        if ssl_object is not None:
            tls.report(out, ssl_object)
            await self._oldest.check(out, self._handshake(request))

    async def _refused(self, out: Emitter, request: httpx.Request, failure: BaseException) -> None:
        """A certificate refused: the probe's failure named from the chain (read without verification)."""
        error = _cause(failure, ssl.SSLCertVerificationError)
        if error is not None:
            handshake = self._handshake(request)
            refusal = await tls.refused(out, error, handshake)
            await self._oldest.check(out, handshake)
            raise refusal

    def _handshake(self, request: httpx.Request) -> tls.Handshake:
        """Another handshake with the server that answered `request` (through the proxy, if any)."""
        url, name = request.url, self.config.server_name
        if self.config.proxy is None:
            return tls.connect(url.host, url.port or 443, name)
        proxy = httpx.URL(str(self.config.proxy))
        return tls.connect(proxy.host, proxy.port or 80, name or url.host, _tunnel(url.host, url.port or 443))


def _tunnel(host: str, port: int) -> tls.Preamble:
    """A proxy's CONNECT to host:port, before the TLS handshake through it."""

    async def preamble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if head.split(b" ", 2)[1:2] != [b"200"]:
            raise ConnectionRefusedError(f"the proxy refused CONNECT {host}:{port}")

    return preamble


def judge(config: HttpConfig, response: httpx.Response, body: bytes) -> None:
    """ProbeFailed when the answer is not as the config expects: the status, then the body's checks."""
    status = response.status_code
    if config.expect_status and status not in config.expect_status or not config.expect_status and status // 100 != 2:
        expected = " or ".join(map(str, config.expect_status)) if config.expect_status else "2xx"
        raise ProbeFailed(f"HTTP {status} {response.reason_phrase}, expected {expected}")
    if (config.body_matches or config.body_not_matches or config.json_equals) and body is None:
        raise ProbeFailed(f"the body is longer than {config.max_body} bytes, the most max_body lets vigil read "
                          "to match it; raise max_body or probe a smaller page")
    text = body.decode(response.encoding or "utf-8", errors="replace") if body else ""
    if config.body_matches and not re.search(config.body_matches, text):
        raise ProbeFailed(f"the body does not match {config.body_matches!r}")
    if config.body_not_matches and (found := re.search(config.body_not_matches, text)):
        raise ProbeFailed(f"the body matches {config.body_not_matches!r} ({found[0][:60]!r}), which it must not")
    if config.json_equals:
        _check_json(config.json_equals, body)


def _check_json(expected: Mapping[str, object], body: bytes) -> None:
    try:
        document = json.loads(body)
    except ValueError:
        raise ProbeFailed("the body is not JSON, and json_equals expects it") from None
    for path, value in expected.items():
        found = _field(document, path)
        if found is _MISSING:
            raise ProbeFailed(f"the JSON has no field {path}")
        if found != value or isinstance(found, bool) != isinstance(value, bool):
            raise ProbeFailed(f"the JSON field {path} is {json.dumps(found)[:60]}, expected {json.dumps(value)}")


_MISSING = object()


def _field(document: object, path: str) -> object:
    """The value at a dotted path: object keys, and list indexes as numbers."""
    for step in path.split("."):
        if isinstance(document, dict) and step in document:
            document = document[step]
        elif isinstance(document, list) and step.isdigit() and int(step) < len(document):
            document = document[int(step)]
        else:
            return _MISSING
    return document


async def _read(response: httpx.Response, limit: int, phases: Phases) -> bytes | None:
    """The body, or None when it is longer than `limit` (read no further)."""
    chunks, size = [], 0
    with phases.phase("transfer"):
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def _headers(config: HttpConfig) -> dict[str, str]:
    """The configured headers and the authorization, which httpx drops on a redirect to another host."""
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    if config.bearer_token is not None:
        headers["authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
    if config.basic_auth is not None:
        pair = f"{config.basic_auth.user}:{config.basic_auth.password.get_secret_value()}"
        headers["authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
    return headers


def _cause(failure: BaseException | None, kind: type[BaseException]) -> Any:
    while failure is not None and not isinstance(failure, kind):
        failure = failure.__cause__ or failure.__context__
    return failure


class _Trace:
    """httpcore's trace extension: its steps timed as the probe's phases."""

    def __init__(self, phases: Phases) -> None:
        self._phases = phases
        self._open: dict[str, AbstractContextManager[None]] = {}

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        step, _, state = event.rpartition(".")
        if state == "started" and step in _STARTS:
            phase = self._phases.phase(_STARTS[step])
            phase.__enter__()
            self._open[_STARTS[step]] = phase
        elif state in ("complete", "failed") and step in _ENDS and (phase := self._open.pop(_ENDS[step], None)):
            phase.__exit__(None, None, None)
            if state == "failed":  # cut short (the deadline): still the phase to name in the reason
                self._phases.current = _ENDS[step]


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, with the name resolved here: timed as its own phase, the preferred family first."""

    def __init__(self, phases: Phases, family: str | None, fallback: bool) -> None:
        self._phases, self._family, self._fallback = phases, family, fallback
        self._backend = httpcore.AnyIOBackend()
        self._opened: list[httpcore.AsyncNetworkStream] = []

    async def close(self) -> None:
        """Close every connection made, whatever became of it: httpcore leaves one whose TLS handshake was
        cancelled (the deadline) open until the garbage collector finds it."""
        for stream in self._opened:
            await stream.aclose()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        with self._phases.phase("resolve"):
            try:
                found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise ProbeFailed(f"the host name {host} does not resolve ({error.strerror}); "
                                  "check the name in the URL, and DNS") from None
        address = self._pick(host, found)
        with self._phases.phase("connect"):
            stream = await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
        self._opened.append(stream)
        return stream

    def _pick(self, host: str, found: list) -> str:
        if self._family is not None:
            preferred = [entry for entry in found if entry[0] == _FAMILIES[self._family]]
            if preferred or not self._fallback:
                if not preferred:
                    raise ProbeFailed(f"the host name {host} has no {self._family} address; set ip_fallback: true "
                                      "to use the other family")
                return preferred[0][4][0]
        return found[0][4][0]

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)

