"""The HTTP client every HTTPS kind shares: TLS with the target's own CA, budgets, retries, counting.

(A stand-in written on the meraki branch against the API agreed with the net branch, so
that the Meraki collector could be tested before agent/net/http.py landed; the net
branch's module replaces it.)

- A target's `ca_file` wins over REQUESTS_CA_BUNDLE / SSL_CERT_FILE in the environment:
  the client is built with an explicit SSL context and `trust_env=False`.
- Before each attempt the caller's TokenBucket is awaited; the wait is recorded with
  `ctx.api.waited`, and every attempt is counted with `ctx.api.request(api, code)`, so a
  429 storm shows in the counters while it happens.
- 429, 502, 503, 504 and timeouts are retried (`retries` times) after Retry-After plus
  jitter, or an exponential backoff; a server asking for longer than `max_retry_wait`
  ends the call. Other non-2xx answers are returned for the caller to map.
- A body over `max_bytes` is an error, not a memory spike.
"""

from __future__ import annotations

import json
import random
import ssl
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from agent.collector import Context
    from agent.ratelimit import TokenBucket

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MiB = 1024 * 1024


class HttpError(Exception):
    """A request that failed for good; one line, never a header or a secret."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AsyncApi:
    def __init__(self, base_url: str, ctx: Context, *, ca_file: str | None = None, timeout: float = 20.0,
                 headers: dict[str, str] | None = None, retries: int = 3, max_retry_wait: float = 60.0,
                 max_bytes: int = 32 * MiB, follow_redirects: bool = False):
        self.ctx, self.retries, self.max_retry_wait, self.max_bytes = ctx, retries, max_retry_wait, max_bytes
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl.create_default_context()
        self._client = httpx.AsyncClient(base_url=base_url, verify=verify, trust_env=False, timeout=timeout,
                                         headers=headers or {}, follow_redirects=follow_redirects)

    async def request(self, method: str, url: str, *, api: str, bucket: TokenBucket | None = None,
                      params: Any = None, headers: dict[str, str] | None = None, json: Any = None,
                      data: Any = None, auth_header: bool = True) -> httpx.Response:
        attempt = 0
        while True:
            if bucket is not None:
                started = self.ctx.clock.monotonic()
                await bucket.acquire()
                self.ctx.api.waited(api, self.ctx.clock.monotonic() - started)
            request = self._client.build_request(method, url, params=params, headers=headers, json=json, data=data)
            if not auth_header:
                request.headers.pop("authorization", None)
            try:
                response = await self._send(request)
            except httpx.TimeoutException as exc:
                self.ctx.api.request(api, "timeout")
                if attempt >= self.retries:
                    raise HttpError(f"{method} {request.url.path} timed out after {attempt + 1} attempts") from exc
                await self.ctx.clock.sleep(self._backoff(attempt))
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                self.ctx.api.request(api, "error")
                raise HttpError(f"{method} {request.url.path} failed: {type(exc).__name__}: {exc}") from exc
            self.ctx.api.request(api, response.status_code)
            if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                return response
            wait = self._retry_after(response, attempt)
            if wait > self.max_retry_wait:
                return response
            await self.ctx.clock.sleep(wait)
            attempt += 1

    async def get_json(self, url: str, *, api: str, bucket: TokenBucket | None = None, params: Any = None,
                       headers: dict[str, str] | None = None) -> Any:
        response = await self.request("GET", url, api=api, bucket=bucket, params=params, headers=headers)
        if not response.is_success:
            raise HttpError(f"GET {response.request.url.path} answered HTTP {response.status_code}",
                            response.status_code)
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise HttpError(f"GET {response.request.url.path} answered malformed JSON") from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise HttpError(f"{request.method} {request.url.path}: the answer is over "
                                    f"{self.max_bytes // MiB} MiB", response.status_code)
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body),
                              request=request)

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        try:
            seconds = float(response.headers.get("retry-after", ""))
        except ValueError:
            return self._backoff(attempt)
        return max(0.0, seconds) + random.uniform(0, 0.25 * max(seconds, 1.0))

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.8, 1.2)
