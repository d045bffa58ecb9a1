"""Microsoft Graph v1.0 reads: JSON entities, `@odata.nextLink` pages and report downloads.

Transport, retries (429/503 with Retry-After, else exponential backoff), the tenant's
rate bucket and request counting are agent/net/http.py's; this maps the answers: a 401
gets one new token, a 403 is `PermissionMissing` (the signal's permission is not
granted), other errors and malformed JSON are `GraphError`. A next link must stay on the
Graph host (the token goes with it), and a listing within agent/net/paging.py's bounds (a
next link that comes round again, more items or bytes than any tenant has); a report's 302
is followed without the token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from agent.net.http import AsyncApi
from agent.net.paging import Listing, ListingError
from agent.ratelimit import TokenBucket
from collectors.m365.auth import TokenSource


class GraphError(Exception):
    """Graph answered something unusable; one line naming the endpoint."""


class PermissionMissing(GraphError):
    """Graph answered 403: the app registration lacks the permission the signal needs."""


class Graph:
    def __init__(self, api: AsyncApi, tokens: TokenSource, bucket: TokenBucket, graph_url: str):
        self._api, self._tokens, self._bucket = api, tokens, bucket
        self._base = graph_url.rstrip("/") + "/"

    async def get(self, path: str, api: str, params: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One entity or page; `api` names the endpoint in the request counters."""
        return _object(await self._authorized(path, api, params, headers), api)

    async def items(self, path: str, api: str, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> AsyncIterator[dict]:
        """Every item of a collection, page after page (`headers`, e.g. a Prefer, go with every page), within
        the bounds of one listing (agent/net/paging.py)."""
        url: str | None = path
        listing = Listing()
        while url is not None:
            value, url = await self._page(url, api, params, headers, listing)
            params = None  # the next link carries the query
            value.reverse()
            while value:  # handed over one by one, so that a page is freed before the next one is read
                yield value.pop()

    async def _page(self, url: str, api: str, params: dict[str, str] | None, headers: dict[str, str] | None,
                    listing: Listing) -> tuple[list[dict], str | None]:
        """One page's items and the next page's link, counted in `listing`."""
        response = await self._authorized(url, api, params, headers)
        body = _object(response, api)
        value, link = body.get("value"), body.get("@odata.nextLink")
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise GraphError(f"Graph answered a {api} page without a list of objects in `value`")
        if link is not None and not (isinstance(link, str) and link.startswith(self._base)):
            raise GraphError(f"Graph's next link for {api} leaves {self._base}; refused (it would carry the token)")
        try:
            listing.add(len(value), len(response.content))
            return value, None if link is None else listing.follow(link)
        except ListingError as exc:
            raise GraphError(f"Graph's {api} listing: {exc}") from None

    async def report(self, path: str, api: str) -> str:
        """A usage report's CSV: Graph answers 302 to a pre-authenticated URL fetched without the token."""
        response = await self._authorized(path, api, None, None)
        if response.status_code == 403:
            raise PermissionMissing(f"Graph refused {api} (403 {_code(response)})")
        if response.status_code != 302 or "location" not in response.headers:
            _check(response, api)
            raise GraphError(f"Graph answered {response.status_code} for {api}, not a redirect to the report")
        download = await self._api.request("GET", response.headers["location"], api="report_download",
                                           auth_header=False)
        _check(download, "report_download")
        return download.content.decode("utf-8-sig", errors="replace")

    async def _authorized(self, path: str, api: str, params: dict[str, str] | None,
                          headers: dict[str, str] | None) -> httpx.Response:
        token, response = await self._send(path, api, params, headers)
        if response.status_code == 401:  # expired or revoked before msal's cache thought so
            self._tokens.reject(token)
            token, response = await self._send(path, api, params, headers)
        return response

    async def _send(self, path: str, api: str, params: dict[str, str] | None,
                    headers: dict[str, str] | None) -> tuple[str, httpx.Response]:
        token = await self._tokens.token()
        return token, await self._api.request("GET", path, api=api, bucket=self._bucket, params=params,
                                              headers={**(headers or {}), "Authorization": f"Bearer {token}"})


def _object(response: httpx.Response, api: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; PermissionMissing for a 403, GraphError for anything else."""
    if response.status_code == 403:
        raise PermissionMissing(f"Graph refused {api} (403 {_code(response)})")
    _check(response, api)
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraphError(f"Graph answered malformed JSON for {api}") from None
    if not isinstance(body, dict):
        raise GraphError(f"Graph answered {type(body).__name__} for {api}, not an object")
    return body


def _check(response: httpx.Response, api: str) -> None:
    if not 200 <= response.status_code < 300:
        raise GraphError(f"Graph answered {response.status_code} {_code(response)} for {api}")


def _code(response: httpx.Response) -> str:
    """Graph's error code ({"error": {"code": ...}}), or the reason phrase."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", ""))[:80] if isinstance(error, dict) else ""
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return response.reason_phrase
