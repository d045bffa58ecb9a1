"""The Meraki Dashboard API as the collector reads it: paged GETs, error messages, answer shapes.

Every list is read by following the `Link: <...>; rel=next` header, with `perPage` at the
maximum the endpoint allows, so calls grow with pages (1,000 devices a page), not with
devices. A next link is followed only on the configured API host (or a host of the same
Meraki domain), as the API key travels with it, and within the bounds of one listing
(agent/net/paging.py: a link that comes round again, more items or bytes than an
organization has). Answers are checked against the few fields
read here; anything else in them is ignored, and a malformed answer is an error that
names the endpoint.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.net.http import AsyncApi, HttpError
from agent.net.paging import Listing, ListingError
from agent.ratelimit import TokenBucket
from agent.reasons import shorten
from agent.units import MAX_SIZE

T = TypeVar("T")
# Figures out of range are a malformed answer, named by its field (a sample would be nonsense).
Count = Annotated[int, Field(ge=0, le=MAX_SIZE)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MerakiError(Exception):
    """One line naming the organization, the endpoint and the likely fix; never the key."""


class Shape(BaseModel):
    """Only the fields read are declared; others are ignored."""

    model_config = ConfigDict(extra="ignore")


class Client:
    """Paged, checked GETs for one target; `api` labels are `org <id> <group>` (bounded)."""

    def __init__(self, api: AsyncApi, base_url: str):
        self._api = api
        base = urlsplit(base_url)
        self._scheme, self._host = base.scheme, (base.hostname or "").lower()
        self._origin_port = base.port or 443
        self._domain = _parent_domain(self._host)

    async def get(self, path: str, shape: Any, *, api: str, what: str, bucket: TokenBucket | None = None,
                  params: dict | None = None) -> Any:
        """One unpaged GET, checked against `shape` (a type pydantic validates)."""
        response = await self._request(path, api=api, what=what, bucket=bucket, params=params)
        return _validate(shape, _decode(response, what), what)

    async def pages(self, path: str, shape: type[T], per_page: int, *, api: str, what: str,
                    bucket: TokenBucket | None = None, params: dict | None = None,
                    items: str | None = None) -> list[T]:
        """Every item of a paged list; `items` names the key holding them when a page is an object."""
        url: str | None = path
        query: dict | None = {**(params or {}), "perPage": per_page}
        found: list[T] = []
        listing = Listing()
        while url is not None:
            response = await self._request(url, api=api, what=what, bucket=bucket, params=query)
            url, query = self._next(response, what), None
            try:
                if url is not None:  # before the page is decoded: a page that names itself is decoded once
                    url = listing.follow(url)
                body = _decode(response, what)
                if items is not None:
                    body = body.get(items) if isinstance(body, dict) else None
                page = _validate(list[shape], body, what)
                listing.add(len(page), len(response.content))
            except ListingError as exc:
                raise MerakiError(f"{what}: {exc}") from None
            found += page
        return found

    async def _request(self, url: str, *, api: str, what: str, bucket: TokenBucket | None,
                       params: dict | None) -> httpx.Response:
        try:
            response = await self._api.request("GET", url, api=api, bucket=bucket, params=params)
        except HttpError as exc:
            raise MerakiError(f"{what}: {exc}") from None
        if response.is_success:
            return response
        raise MerakiError(f"{what}: {_explain(response)}")

    def _next(self, response: httpx.Response, what: str) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        parts = urlsplit(link)
        host = (parts.hostname or "").lower()
        same = host == self._host and (parts.port or 443) == self._origin_port
        if parts.scheme != self._scheme or not (same or (self._domain and host.endswith("." + self._domain))):
            raise MerakiError(f"{what}: the next-page link points to {parts.scheme}://{host}, not the API host "
                              f"{self._host}; not followed, as the API key would go with it")
        return link


def _parent_domain(host: str) -> str:
    """meraki.com for api.meraki.com; none for an IP address or a two-label name."""
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        labels = host.split(".")
        return ".".join(labels[1:]) if len(labels) >= 3 else ""


def _decode(response: httpx.Response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise MerakiError(f"{what}: the answer is not valid JSON (HTTP {response.status_code}, "
                          f"{len(response.content)} bytes)") from None


def _validate(shape: Any, body: Any, what: str) -> Any:
    try:
        return TypeAdapter(shape).validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise MerakiError(f"{what}: unexpected answer ({where}: {first['msg']})") from None


def _explain(response: httpx.Response) -> str:
    """The error status as a sentence with the fix, and Meraki's own `errors` text."""
    code = response.status_code
    try:
        errors = json.loads(response.content).get("errors") or []
        said = shorten("; ".join(str(error) for error in errors), 200)
    except (ValueError, AttributeError):
        said = ""
    said = f" ({said})" if said else ""
    if code == 401:
        return f"HTTP 401{said}: the API key was refused; check api_key (Organization > API & webhooks)"
    if code == 403:
        return f"HTTP 403{said}: the API key's admin may not read this; give it read access to the organization"
    if code == 404:
        return (f"HTTP 404{said}: not found; check `organizations` (ids the key can see) and base_url "
                "(the organization's regional API host)")
    if code == 429:
        return (f"HTTP 429{said}: still rate limited after retries; other applications share the "
                "organization's 10 requests/s, lower requests_per_second or poll less often")
    return f"HTTP {code}{said}"


# --- answer shapes: the fields read (tests/fixtures/meraki holds the documented bodies) ----------

class Enabled(Shape):
    enabled: bool = True


class Licensing(Shape):
    model: str = ""


class Org(Shape):
    id: str
    name: str
    api: Enabled = Enabled()
    licensing: Licensing = Licensing()


class Network(Shape):
    id: str
    name: str
    productTypes: list[str] = []


class NetworkRef(Shape):
    id: str | None = None


class Device(Shape):
    """One device of the organization's inventory (getOrganizationDevices): its name and model."""

    serial: str
    name: str | None = None
    networkId: str | None = None
    model: str | None = None
    productType: str | None = None


class Availability(Shape):
    """One device's status (getOrganizationDevicesAvailabilities): no model, the network as `network.id`."""

    serial: str
    name: str | None = None
    network: NetworkRef = NetworkRef()
    productType: str | None = None
    status: str | None = None


class Uplink(Shape):
    interface: str
    status: str | None = None


class UplinkDevice(Shape):
    serial: str
    networkId: str | None = None
    uplinks: list[Uplink] = []


class Point(Shape):
    lossPercent: Percent | None = None
    latencyMs: Milliseconds | None = None


class LossLatency(Shape):
    serial: str
    networkId: str | None = None
    uplink: str
    ip: str | None = None
    timeSeries: list[Point] = []


class License(Shape):
    status: str | None = None
    expirationDate: str | None = None
    licensedDeviceCounts: dict[str, Count] | None = None


class Percentage(Shape):
    percentage: Percent | None = None


class Band(Shape):
    band: str
    wifi: Percentage = Percentage()
    nonWifi: Percentage = Percentage()
    total: Percentage = Percentage()


class Radio(Shape):
    serial: str
    network: NetworkRef = NetworkRef()
    byBand: list[Band] = []


class Port(Shape):
    status: str | None = None


class Switch(Shape):
    serial: str
    name: str | None = None
    network: NetworkRef = NetworkRef()
    ports: list[Port] = []


class Alert(Shape):
    severity: str | None = None
