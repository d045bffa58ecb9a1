"""The HTTP transport of every kind that speaks a REST API (meraki, m365, veeam, ...), on httpx.

What each of them would otherwise get wrong on its own:

- **Trust.** `ssl_context(ca_file)`: a target's `ca_file` is the only CA it trusts, whatever
  REQUESTS_CA_BUNDLE / SSL_CERT_FILE / CURL_CA_BUNDLE say (httpx and requests prefer the
  environment to a path); without one, the system's CAs. Verification is never off.
- **Budget and retries.** A request first takes a token from the API's rate bucket (the
  wait is counted with `ctx.api.waited`). 429 and 502/503/504, timeouts and connection
  errors are retried `retries` times: after Retry-After (seconds or an HTTP date) plus a
  little jitter, else after an exponential backoff with jitter. A server asking for longer
  than `max_retry_wait` fails the request at once rather than holding a job for an hour.
  Retries without an answer stop where the next would end past `RETRY_SHARE` of the job's
  timeout from the request's start: the run then fails with the request's own reason
  (connection refused, no answer within), not the run's bare "timed out". All sleeping
  is on the agent's clock.
- **Counting.** Every attempt is counted with `ctx.api.request(api, code)`: the status, or
  "timeout" / "error" when there was none, so a 429 storm shows while it happens; the
  time waited for the bucket and before retries goes to `ctx.api.waited(api, seconds)`.
- **Bounds.** `timeout` bounds each whole attempt (connect, headers and the body), not each
  read, so a server dribbling bytes cannot hold a job; a body over `max_bytes` is refused.
  Both clients send on httpx's async client, because only a cancelled coroutine stops a
  read: httpx's blocking client bounds each read alone, and waits for headers dripped a
  byte at a time for as long as they come (SyncApi runs its attempts on a loop of its own).
- **Errors.** HttpError is one line: the method, the URL without its query or userinfo
  (where tokens and passwords travel), the status or the cause, and a hint. Non-retryable
  4xx/5xx are returned, not raised, so a caller can map 401/403/404 itself;
  `get_json`/`raise_for_status` raise them with the API's own error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from agent import __version__
from agent.net.tls import certificate_problem
from agent.reasons import shorten

if TYPE_CHECKING:
    from agent.collector import Context
    from agent.ratelimit import TokenBucket

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF = 1.0  # seconds before the first retry when the server does not say; doubles each time
RETRY_SHARE = 0.8  # of the job's timeout: how long one request may go on retrying
JITTER = 0.1  # a retry waits up to this share longer (at least up to 0.1 s), so callers do not stampede
USER_AGENT = f"vigil/{__version__}"

log = logging.getLogger(__name__)  # one DEBUG line per attempt, with its api and code, without the query
T = TypeVar("T")


class HttpError(Exception):
    """An HTTP request that failed: one line, never a query string, a token or a password."""

    def __init__(self, method: str, url: httpx.URL | str, reason: str, *, status: int | None = None,
                 hint: str = ""):
        self.method, self.url, self.status, self.reason = method, safe_url(url), status, reason
        self.detail = f"{reason}; {hint}" if hint else reason  # without the method and URL, for callers' own words
        super().__init__(f"{method} {self.url}: {self.detail}")


class CaFileError(ValueError):
    """The configured CA file cannot be used."""


def safe_url(url: httpx.URL | str) -> str:
    """The URL as it may be shown: no userinfo, no query, no fragment."""
    try:
        return str(httpx.URL(url).copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparseable URL>"


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification on; `ca_file` the only trusted CA when given (read now, so a renewed CA needs no restart).

    A context, not a path, is what keeps the environment's bundles out: httpx and requests
    replace a path with SSL_CERT_FILE / REQUESTS_CA_BUNDLE, never a context.
    """
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise CaFileError(f"cannot use ca_file {ca_file}: {why}; it must be a PEM file of CA certificates") from None


def api_message(response: httpx.Response) -> str:
    """The error text an API put in its body (Graph, Meraki, OAuth, Veeam shapes), or ""."""
    try:
        body = response.json()
    except ValueError:
        return ""
    parts: Iterable[object] = ()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Graph: {"error": {"code", "message"}}
            parts = (error.get("code"), error.get("message"))
        elif isinstance(body.get("errors"), list):  # Meraki: {"errors": ["..."]}
            parts = ("; ".join(str(item) for item in body["errors"]),)
        elif error is not None:  # OAuth: {"error", "error_description"}
            parts = (error, body.get("error_description"))
        else:  # Veeam: {"errorCode", "message"}
            parts = (body.get("errorCode"), body.get("message"))
    lines = [str(part).strip().splitlines()[0] for part in parts if part and str(part).strip()]
    return shorten(": ".join(lines))


def raise_for_status(response: httpx.Response) -> httpx.Response:
    """The response if it is a 2xx; else HttpError with the status and the API's message."""
    if response.is_success:
        return response
    message = api_message(response)
    raise HttpError(response.request.method, response.request.url,
                    f"HTTP {response.status_code} {response.reason_phrase}" + (f" ({message})" if message else ""),
                    status=response.status_code)


def json_of(response: httpx.Response) -> Any:
    """The parsed body, or HttpError saying it is not JSON (never the body itself)."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise HttpError(response.request.method, response.request.url,
                        f"the answer is not JSON ({kind})", status=response.status_code) from None


class _TooLarge(Exception):
    pass


class _Api:
    """What the async and the blocking client share: building requests, sending one attempt, retry decisions."""

    def __init__(self, base_url: str, ctx: Context, *, ca_file: Path | None = None, timeout: float = 20.0,
                 headers: Mapping[str, str] | None = None, retries: int = 3, max_retry_wait: float = 60.0,
                 max_bytes: int = 32 << 20, follow_redirects: bool = False):
        self.base_url, self.ctx = base_url, ctx
        self.timeout, self.retries, self.max_retry_wait, self.max_bytes = timeout, retries, max_retry_wait, max_bytes
        self._random = random.Random()  # noqa: S311 — retry jitter, not a secret
        self._client = httpx.AsyncClient(base_url=base_url, verify=ssl_context(ca_file), timeout=timeout,
                                         follow_redirects=follow_redirects,
                                         headers={"user-agent": USER_AGENT, **(headers or {})})

    def _build(self, method: str, url: str, *, params: Any, headers: Mapping[str, str] | None, json: Any,
               data: Any, auth_header: bool) -> httpx.Request:
        request = self._client.build_request(method, url, params=params, headers=headers, json=json, data=data)
        if not auth_header:  # a redirect to another host (a report download) must not carry the token
            request.headers.pop("authorization", None)
        return request

    async def _attempt(self, request: httpx.Request) -> tuple[httpx.Response | None, BaseException | None]:
        """One exchange within `timeout`: the answer read whole, or why there is none."""
        response = None
        scope = asyncio.timeout(self.timeout)
        connected = False

        async def trace(event: str, info: dict[str, Any]) -> None:  # httpx's trace extension
            nonlocal connected
            connected = connected or event == "connection.connect_tcp.complete" or event.startswith("http")

        request.extensions["trace"] = trace
        try:
            async with scope:
                response = await self._client.send(request, stream=True)
                try:
                    self._check_length(response)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size = self._add_chunk(chunks, chunk, size)
                    self._keep(response, chunks)
                finally:
                    await response.aclose()
        except _TooLarge as exc:
            return response, exc
        except (httpx.TransportError, TimeoutError) as exc:
            # A cancelled TLS read surfaces as a read error: the deadline is what happened, while
            # connecting (a host down, a firewall) or after (a service too slow).
            if scope.expired():
                return None, TimeoutError() if connected else httpx.ConnectTimeout("no connection", request=request)
            return None, exc
        return response, None

    def _check_length(self, response: httpx.Response) -> None:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise _TooLarge

    def _add_chunk(self, chunks: list[bytes], chunk: bytes, size: int) -> int:
        size += len(chunk)
        if size > self.max_bytes:
            raise _TooLarge
        chunks.append(chunk)
        return size

    @staticmethod
    def _keep(response: httpx.Response, chunks: list[bytes]) -> None:
        # What httpx's own read() does with the bytes it reads; here they were read within bounds.
        response._content = b"".join(chunks)

    def _retry_wait(self, attempt: int, request: httpx.Request, response: httpx.Response | None,
                    failure: BaseException | None, started: float) -> float | None:
        """Seconds to wait before the next attempt; None to return the response; HttpError to give up."""
        wait = self._next_wait(attempt, request, response, failure)
        late = wait is not None and self.ctx.clock.monotonic() + wait > started + RETRY_SHARE * self.ctx.timeout
        if late and response is None:  # no answer, and no time left to retry: say why now
            raise self._failed(request, failure, f" (after {attempt + 1} attempts)" if attempt else "")
        return wait

    def _next_wait(self, attempt: int, request: httpx.Request, response: httpx.Response | None,
                   failure: BaseException | None) -> float | None:
        if isinstance(failure, _TooLarge):
            raise self._too_large(request, response)
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        if response is None and (_untrusted(failure) or _unknown_name(failure)):  # neither gets better in a second
            raise self._failed(request, failure)
        if attempt >= self.retries:
            if response is not None:
                return None
            raise self._failed(request, failure, f" (after {attempt + 1} attempts)" if attempt else "")
        asked = _retry_after(response, self.ctx.clock.time()) if response is not None else None
        if asked is not None and asked > self.max_retry_wait:
            raise HttpError(request.method, request.url,
                            f"HTTP {response.status_code} {response.reason_phrase}", status=response.status_code,
                            hint=f"the server asks to retry after {asked:g}s, more than the "
                                 f"{self.max_retry_wait:g}s vigil waits; the next run tries again")
        if asked is None:
            return min(self.max_retry_wait, BACKOFF * 2 ** attempt) * self._random.uniform(0.5, 1.0)
        return asked + self._random.uniform(0, max(0.1, asked * JITTER))

    def _failed(self, request: httpx.Request, failure: BaseException | None, attempts: str = "") -> HttpError:
        reason, hint = transport_reason(failure, self.timeout)
        return HttpError(request.method, request.url, reason + attempts, hint=hint)

    def _too_large(self, request: httpx.Request, response: httpx.Response) -> HttpError:
        return HttpError(request.method, request.url, f"the answer is larger than {self.max_bytes} bytes",
                         status=response.status_code, hint="check the URL; a listing this large needs paging")

    def _count(self, api: str, request: httpx.Request, response: httpx.Response | None,
               failure: BaseException | None) -> None:
        if response is not None:
            code: int | str = response.status_code
        else:
            code = "timeout" if _is_timeout(failure) else "error"
        self.ctx.api.request(api, code)
        log.debug("http request api=%s method=%s url=%s code=%s", api, request.method, safe_url(request.url), code)


class AsyncApi(_Api):
    """One API's client on the event loop; make it in `open()`, `aclose()` it in `close()`."""

    async def request(self, method: str, url: str, *, api: str, bucket: TokenBucket | None = None,
                      params: Any = None, headers: Mapping[str, str] | None = None, json: Any = None,
                      data: Any = None, auth_header: bool = True) -> httpx.Response:
        request = self._build(method, url, params=params, headers=headers, json=json, data=data,
                              auth_header=auth_header)
        attempt, started = 0, self.ctx.clock.monotonic()
        while True:
            if bucket is not None:
                self.ctx.api.waited(api, await bucket.acquire())
            response, failure = await self._attempt(request)
            self._count(api, request, response, failure)
            wait = self._retry_wait(attempt, request, response, failure, started)
            if wait is None:
                return response
            self.ctx.api.waited(api, wait)
            await self.ctx.clock.sleep(wait)
            attempt += 1

    async def get_json(self, url: str, *, api: str, bucket: TokenBucket | None = None, params: Any = None,
                       headers: Mapping[str, str] | None = None) -> Any:
        """GET, then the parsed JSON of a 2xx answer; HttpError for anything else."""
        response = await self.request("GET", url, api=api, bucket=bucket, params=params, headers=headers)
        return json_of(raise_for_status(response))

    async def aclose(self) -> None:
        await self._client.aclose()


class SyncApi(_Api):
    """The same for code that runs in a worker thread; waits block on `ctx.clock.wait`.

    Each attempt runs on an event loop of this client's own, in the calling thread, so that
    the deadline cancels it wherever it waits (a watchdog closing the blocking client's socket
    would need httpcore's insides and a thread per request). One thread at a time sends (a
    location's calls are one at a time: checks.bounded); `close()` from another thread while
    an attempt runs (a job closed on reload) takes effect when the attempt ends.
    """

    def __init__(self, base_url: str, ctx: Context, **options: Any):
        super().__init__(base_url, ctx, **options)
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._running = self._closing = False

    def request(self, method: str, url: str, *, api: str, bucket: TokenBucket | None = None,
                params: Any = None, headers: Mapping[str, str] | None = None, json: Any = None,
                data: Any = None, auth_header: bool = True) -> httpx.Response:
        request = self._build(method, url, params=params, headers=headers, json=json, data=data,
                              auth_header=auth_header)
        attempt, started = 0, self.ctx.clock.monotonic()
        while True:
            if bucket is not None:
                self.ctx.api.waited(api, bucket.acquire_blocking())
            response, failure = self._run(self._attempt(request))
            self._count(api, request, response, failure)
            wait = self._retry_wait(attempt, request, response, failure, started)
            if wait is None:
                return response
            self.ctx.api.waited(api, wait)
            self.ctx.clock.wait(wait)
            attempt += 1

    def get_json(self, url: str, *, api: str, bucket: TokenBucket | None = None, params: Any = None,
                 headers: Mapping[str, str] | None = None) -> Any:
        response = self.request("GET", url, api=api, bucket=bucket, params=params, headers=headers)
        return json_of(raise_for_status(response))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` on this client's loop, in the calling thread; a close() meanwhile is done after it."""
        with self._lock:
            if self._closing:
                work.close()
                raise RuntimeError("the client is closed")
            self._running = True
        try:
            return self._loop.run_until_complete(work)
        finally:
            with self._lock:
                self._running = False
                closing = self._closing
            if closing:
                self._shut()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if self._running:
                return
        self._shut()

    def _shut(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()  # and its name lookups' thread, if it made one

    def __enter__(self) -> SyncApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Retry-After in seconds from now (delay-seconds or an HTTP date), or None if absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when.tzinfo else None


def _is_timeout(failure: BaseException | None) -> bool:
    return isinstance(failure, (httpx.TimeoutException, TimeoutError))


def _causes(failure: BaseException | None) -> Iterator[BaseException]:
    while failure is not None:
        yield failure
        failure = failure.__cause__ or failure.__context__


def _untrusted(failure: BaseException | None) -> bool:
    return any(isinstance(cause, ssl.SSLCertVerificationError) for cause in _causes(failure))


def _unknown_name(failure: BaseException | None) -> bool:
    """The resolver says the name does not exist (not a passing DNS failure, EAI_AGAIN)."""
    return any(isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME for cause in _causes(failure))


def transport_reason(failure: BaseException | None, timeout: float) -> tuple[str, str]:
    """What went wrong below HTTP, and the likely fix (for any client's exception chain)."""
    for cause in _causes(failure):
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve", "check the host name in the URL, and DNS"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return certificate_problem(cause)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", "check the host and port, and that the service runs"
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake failed ({cause.reason or cause})", "check that the port speaks HTTPS"
    if any(isinstance(cause, httpx.ConnectTimeout) for cause in _causes(failure)):
        return f"no connection within {timeout:g}s", "check that the host is up and no firewall drops the port"
    if any(_is_timeout(cause) for cause in _causes(failure)):  # connected, then too slow or silent
        return f"no answer within {timeout:g}s", "the service accepted the connection but did not answer in time: " \
                                                "check that it is healthy, or raise timeout:"
    return str(failure) or type(failure).__name__, ""
