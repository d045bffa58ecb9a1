"""msal's HTTP through the collector's own client, so that signing in has the transport's bounds.

msal blocks, and left to its own requests session it reads any answer whole (a gzip bomb,
500 MB), with `timeout=` per read only (a drip holds it for ever), in a thread that the
job's timeout abandons and that reads on. Here each msal call runs in a thread of its own
(not the event loop's default executor, which calls stuck there would take from every
other job: name lookups run in it too), and each request msal makes in that thread is sent
by the collector's AsyncApi on the event loop (agent/net/http.py): the size limit,
decompressed; one deadline for the whole exchange; the target's ca_file over the
environment's bundles; retries of 429 and gateway errors; counting, as `authority` (GET)
and `token` (POST). An httpx response has what msal reads of one (status_code, text,
headers, raise_for_status). When a call is abandoned (its deadline passed, or the job was
cancelled), the request in flight is cancelled and any further one fails at once, so the
thread ends with the call, not minutes after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import requests

from agent.net.http import AsyncApi, HttpError

T = TypeVar("T")


class AuthorityUnreachable(requests.RequestException):
    """No usable answer from the authority. A requests exception because that is the class msal expects of
    a transport: it falls back to a cached token still valid on it alone."""

    def __init__(self, failure: HttpError | None):
        self.reason = failure.reason if failure is not None else "the call was abandoned at its deadline"
        super().__init__(self.reason)


class _Call:
    """One msal call: the loop that sends its requests, the request in flight, and whether it was abandoned."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._abandoned = False
        self._pending: concurrent.futures.Future | None = None

    def send(self, request: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        """Run `request` on the loop and wait for it (in msal's thread)."""
        with self._lock:
            if self._abandoned:
                request.close()
                raise AuthorityUnreachable(None)
            self._pending = asyncio.run_coroutine_threadsafe(request, self._loop)
        try:
            return self._pending.result()
        except concurrent.futures.CancelledError:
            raise AuthorityUnreachable(None) from None
        except HttpError as exc:
            raise AuthorityUnreachable(exc) from None

    def abandon(self) -> None:
        """Cancel the request in flight (its connection is closed), and refuse any further one."""
        with self._lock:
            self._abandoned = True
            if self._pending is not None:
                self._pending.cancel()


class MsalHttp:
    """The `http_client` msal is given: its `get` and `post`, for the call running in the calling thread."""

    def __init__(self, api: AsyncApi):
        self._api = api
        self._local = threading.local()

    async def call(self, work: Callable[[], T], timeout: float) -> T:
        """`work` (msal) in a thread of its own; TimeoutError after `timeout` s. Abandoned when it ends
        early, by the deadline or by cancellation: its thread then has nothing left to wait for."""
        call = _Call(asyncio.get_running_loop())
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            self._local.call = call
            if not result.set_running_or_notify_cancel():
                return
            try:
                result.set_result(work())
            except BaseException as exc:  # handed to the awaiting task
                result.set_exception(exc)

        threading.Thread(target=run, name="vigil-msal", daemon=True).start()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(result)
        finally:
            call.abandon()

    def get(self, url: str, params: Any = None, headers: Any = None) -> httpx.Response:
        return self._local.call.send(self._api.request("GET", url, api="authority", params=params,
                                                       headers=headers))

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None) -> httpx.Response:
        return self._local.call.send(self._api.request("POST", url, api="token", params=params, data=_form(data),
                                                       headers=headers))


def _form(data: Any) -> Any:
    """msal's form as requests would send it: httpx would write a bytes value (the client assertion) as its
    repr, b'...'."""
    if not isinstance(data, dict):
        return data
    return {key: value.decode() if isinstance(value, bytes) else value for key, value in data.items()}

