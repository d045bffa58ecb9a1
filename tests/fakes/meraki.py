"""A contract fake of the Cisco Meraki Dashboard API v1, over HTTPS on loopback.

The Dashboard API is a cloud service, so this serves what the official OpenAPI spec
documents (tests/fixtures/meraki: each file is one operation's example body, its documented
query parameters and perPage range), scaled to a generated organization of any size:

- `Authorization: Bearer <key>` (or `X-Cisco-Meraki-API-Key`); an unknown key is a 401,
  an organization the key cannot see a 404, both with the documented `{"errors": [...]}`;
- a query parameter the operation does not document is refused with a 400 and
  `{"errors": [...]}` naming it, so a call the real API would not take cannot pass here;
- list endpoints page as documented: `perPage` within each endpoint's range (outside it
  a 400), `startingAfter` / `endingBefore` tokens, and an RFC 5988 `Link` header with
  rel=first, prev, next, last built from them;
- devices are served by the current operations (devices/availabilities for status,
  devices for names and models); the deprecated devices/statuses is not served, so a
  collector still reading it fails here;
- every organization has a token bucket (10 requests/s, burst 10 by default); a request
  over it gets 429 with `Retry-After` and `{"errors":["API rate limit exceeded for
  organization"]}`, as the real service answers;
- uplinksLossAndLatency refuses a timespan over 300 s; array filters take Meraki's
  `name[]=value` form.

Test hooks make the next answers fail (any status, with Retry-After), hang past the
client's timeout, or come back as malformed JSON; `requests` records every request with
the time it arrived, so tests and the bench can count calls and measure the peak rate.
Hostile ones (tests/fakes/hostile.py) answer a path with a gzip bomb, a body too large or
a drip, and page a list for ever.
"""

from __future__ import annotations

import copy
import functools
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.hostile import Streamed
from tests.fakes.server import Served
from tests.lab.pki import PKI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "meraki"
BASE = "/api/v1"
RATE_LIMITED = {"errors": ["API rate limit exceeded for organization"]}

# product type -> (model, licence key or None) of the devices generated for it; the models of the
# newer product types are the fake's own (the spec's examples show only an MR34)
MODELS = {"appliance": ("MX68", "MX"), "switch": ("MS220-8P", "MS"), "wireless": ("MR34", "MR"),
          "camera": ("MV12", "MV"), "cellularGateway": ("MG21", "MG"), "sensor": ("MT10", "MT"),
          "wirelessController": ("CW9800H1", None), "campusGateway": ("CW9800H1-MCG", None),
          "secureConnect": ("SC-1", None)}
# after one appliance per network, the other devices take these types in turn
CYCLE = ("wireless", "switch", "wireless", "camera", "wireless", "switch", "sensor", "cellularGateway",
         "wireless", "wirelessController", "switch", "campusGateway", "wireless", "secureConnect")


def operation(name: str) -> dict:
    """One operation as documented: its example body, query parameters and perPage range."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def example(name: str) -> Any:
    """The official example body of one operation."""
    return operation(name)["example"]


@dataclass
class Org:
    """One generated organization: its networks, devices and licence, made from the examples."""

    id: str
    name: str
    networks: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)  # inventory records with a `status`, in serial order
    licensing: str = "co-term"
    api_enabled: bool = True
    license: dict = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)

    def device(self, serial: str) -> dict:
        return next(device for device in self.devices if device["serial"] == serial)

    def add_device(self, kind: str, model: str, status: str = "online", network: int = 0) -> dict:
        """One more device of any product type, a type the fake does not know too."""
        index = len(self.devices)
        serial = f"Q{int(self.id) % 1000:03d}-X{index // 1000:03d}-{index % 10000:04d}"
        device = {**copy.deepcopy(example("devices")[0]), "name": f"{kind}-{index:05d}", "serial": serial,
                  "mac": f"00:18:0b:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}",
                  "networkId": self.networks[network]["id"], "productType": kind, "model": model, "status": status}
        self.devices.append(device)
        self.devices.sort(key=lambda item: item["serial"])
        return device


def make_org(org_id: str, name: str, networks: int = 5, devices: int = 50, *, offline_every: int = 10,
             alerting_every: int = 7, dormant_every: int = 23, over_license: int = 1,
             expiration: str = "Feb 8, 2030 UTC") -> Org:
    """An organization of `networks` networks and `devices` devices (one appliance per network first).

    Statuses are deterministic: every `offline_every`-th device is offline, every
    `alerting_every`-th alerting, every `dormant_every`-th dormant, the rest online. The
    licence covers every device but `over_license` switches.
    """
    org = Org(org_id, name)
    network_example, = example("networks")
    for index in range(networks):
        network = copy.deepcopy(network_example)
        network.update(id=f"N_{org_id}_{index:04d}", organizationId=org_id, name=f"Site {index:04d}",
                       productTypes=["appliance", "switch", "wireless", "camera", "cellularGateway", "sensor",
                                     "wirelessController", "campusGateway", "secureConnect"])
        org.networks.append(network)
    device_example, = example("devices")
    for index in range(devices):
        kind = "appliance" if index < networks else CYCLE[index % len(CYCLE)]
        model, _ = MODELS[kind]
        device = copy.deepcopy(device_example)
        serial = f"Q{int(org_id) % 1000:03d}-{index // 10000:04d}-{index % 10000:04d}"
        device.update(name=f"{kind}-{index:05d}", serial=serial,
                      mac=f"00:18:0a:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}",
                      networkId=org.networks[index % networks]["id"], productType=kind, model=model,
                      status=("offline" if index % offline_every == offline_every - 1 else
                              "alerting" if index % alerting_every == alerting_every - 1 else
                              "dormant" if index % dormant_every == dormant_every - 1 else "online"))
        org.devices.append(device)
    org.devices.sort(key=lambda device: device["serial"])
    counts: dict[str, int] = {}
    for device in org.devices:
        key = MODELS[device["productType"]][1]
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if "MS" in counts:
        counts["MS"] = max(0, counts["MS"] - over_license)
    org.license = {**example("licenses_overview"), "expirationDate": expiration, "licensedDeviceCounts": counts}
    alert, = example("assurance_alerts")
    for index, severity in enumerate(("critical", "warning", "warning", "informational")):
        org.alerts.append({**copy.deepcopy(alert), "id": f"{org_id}-alert-{index}", "severity": severity,
                           "title": f"Generated alert {index}", "network": {"id": org.networks[0]["id"],
                                                                            "name": org.networks[0]["name"]}})
    return org


class Bucket:
    """The service's per-organization token bucket."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, time.monotonic()

    def take(self) -> float:
        """0 when the request may go, else the seconds until a token is there."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering (a hung server)


@dataclass
class Endless:
    """A list's pages that do not end: its first page's items over and over, the next link the same page or
    one more, until `pages` pages (then it ends, so that a client without bounds ends too)."""

    page_bytes: int
    repeat: bool
    pages: int
    served: int = 0
    value: bytes = b""  # one page's items, made from the first page the fake would have answered

    def page(self, answer: Answer, url: str, query: dict[str, list[str]]) -> Answer:
        if not self.value:
            items = json.loads(answer.body)
            one = sum(len(json.dumps(item)) + 2 for item in items) / len(items)
            self.value = json.dumps([items[n % len(items)] for n in range(max(1, int(self.page_bytes / one)))]).encode()
        self.served += 1
        if self.served >= self.pages:
            return Answer(200, self.value)
        token = query.get("startingAfter", ["page-0"])[0]
        if not self.repeat:
            token = f"page-{int(token.removeprefix('page-')) + 1}"
        link = f"<{url}?{urlencode({**query, 'startingAfter': [token]}, doseq=True)}>; rel=next"
        return Answer(200, self.value, (("Link", link),))


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when it arrived
    org: str | None
    path: str  # after /api/v1, with the organization id as {org}
    query: dict[str, list[str]]
    status: int


@dataclass(frozen=True)
class _Canned:
    answer: Answer
    path: str | None  # only a request to this (templated) path takes it; None: any


class MerakiFake(Served):
    """The fake server; use it as a context manager. `url` is https://127.0.0.1:<port>/api/v1."""

    def __init__(self, pki: PKI, orgs: list[Org], keys: dict[str, list[str]] | None = None, *,
                 rate: float = 10.0, burst: float = 10.0, retry_after: int = 1, port: int = 0):
        self.orgs = {org.id: org for org in orgs}
        self.keys = keys if keys is not None else {"test-key": list(self.orgs)}
        self.rate, self.burst, self.retry_after = rate, burst, retry_after
        self.requests: list[Seen] = []
        self._buckets = {org.id: Bucket(rate, burst) for org in orgs}
        self._canned: list[_Canned] = []
        self._switches: dict[str, list[dict]] = {}  # org id -> its switches' port statuses
        self._hostile: dict[str, Streamed] = {}  # templated path -> what every request to it gets
        self._endless: dict[str, Endless] = {}  # templated path -> its pages that do not end
        self._lock = threading.Lock()
        port = self._serve(_handler_for(self), pki, "meraki-fake", port)
        self.origin = f"https://127.0.0.1:{port}"
        self.url = self.origin + BASE

    def __enter__(self) -> MerakiFake:
        return super().__enter__()

    # --- test hooks -------------------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, path: str | None = None, retry_after: int | None = None,
                  errors: tuple[str, ...] = ("Injected failure",)) -> None:
        """The next `count` requests (to `path`, e.g. "/organizations/{org}/licenses/overview") get `status`."""
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        self._can(Answer(status, json.dumps({"errors": list(errors)}).encode(), headers), count, path)

    def hang_next(self, seconds: float, count: int = 1, path: str | None = None) -> None:
        """The next `count` requests wait `seconds` before answering (past a client's timeout)."""
        self._can(Answer(200, b"[]", delay=seconds), count, path)

    def malformed_next(self, body: bytes = b'{"counts": {"byStatus": ', count: int = 1,
                       path: str | None = None) -> None:
        """The next `count` requests get 200 with this body, labelled JSON."""
        self._can(Answer(200, body), count, path)

    def hostile(self, path: str, answer: Streamed) -> None:
        """Every request to `path` (templated, e.g. "/organizations") gets `answer`."""
        with self._lock:
            self._hostile[path] = answer

    def endless(self, path: str, page_bytes: int, *, repeat: bool, pages: int = 2000) -> None:
        """The list at `path` (templated) pages for ever, about `page_bytes` a page (see `Endless`)."""
        with self._lock:
            self._endless[path] = Endless(page_bytes, repeat, pages)

    def calls(self, status: int | None = None) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if status is None or seen.status == status]

    def peak_rate(self, org: str, window: float = 1.0) -> int:
        """The most requests for `org` that arrived within any `window` seconds (429s included)."""
        times = sorted(seen.at for seen in self.calls() if seen.org == org)
        peak, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            peak = max(peak, end - start + 1)
        return peak

    def _can(self, answer: Answer, count: int, path: str | None) -> None:
        with self._lock:
            self._canned += [_Canned(answer, path)] * count

    # --- the API ----------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Any) -> Answer | Streamed:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path.removeprefix(BASE)
        parts = path.strip("/").split("/")
        org_id = parts[1] if len(parts) > 1 and parts[0] == "organizations" else None
        template = "/".join(["", "organizations", "{org}", *parts[2:]]) if org_id else path
        answer = self._answer(method, url.path, template, org_id, query, headers)
        with self._lock:
            self.requests.append(Seen(time.monotonic(), org_id, template, query, answer.status))
        return answer

    def _answer(self, method: str, raw_path: str, template: str, org_id: str | None,
                query: dict[str, list[str]], headers: Any) -> Answer | Streamed:
        if not raw_path.startswith(BASE + "/"):
            return _error(404, "Not found")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        key = token if scheme.lower() == "bearer" else headers.get("x-cisco-meraki-api-key", "")
        if key not in self.keys:
            return _error(401, "Invalid API key")
        if org_id is not None and (org_id not in self.orgs or org_id not in self.keys[key]):
            return _error(404, "Not found")
        if org_id is not None and not self.orgs[org_id].api_enabled:
            return _error(404, "API access is not enabled for this organization")
        with self._lock:
            if org_id is not None:
                wait = self._buckets[org_id].take()
                if wait:
                    return Answer(429, json.dumps(RATE_LIMITED).encode(),
                                  (("Retry-After", str(max(self.retry_after, round(wait)))),))
            canned = next((c for c in self._canned if c.path in (None, template)), None)
            if canned is not None:
                self._canned.remove(canned)
                return canned.answer
            if template in self._hostile:
                return self._hostile[template]
            endless = self._endless.get(template)
        if method != "GET" or template not in ROUTES:
            return _error(404, "Not found")
        handler, name = ROUTES[template]
        undocumented = sorted(set(query) - documented(name)[0])
        if undocumented:
            return _error(400, f"Unrecognized query parameter(s) {', '.join(undocumented)} for this operation")
        if org_id is None:
            orgs = [self.orgs[id] for id in self.keys[key] if id in self.orgs]
            answer = handler(self, orgs, raw_path, query)
        else:
            answer = handler(self, self.orgs[org_id], raw_path, query)
        if endless is not None and answer.status == 200:
            return endless.page(answer, self.origin + raw_path, query)
        return answer

    # --- endpoints ----------------------------------------------------------------------------------

    def organizations(self, orgs: list[Org], path: str, query: dict) -> Answer:
        base, = example("organizations")
        items = [{**copy.deepcopy(base), "id": org.id, "name": org.name,
                  "url": f"https://dashboard.meraki.com/o/{org.id}/manage/organization/overview",
                  "licensing": {"model": org.licensing}, "api": {"enabled": org.api_enabled}} for org in orgs]
        return self._page(items, "id", path, query, "organizations")

    def networks(self, org: Org, path: str, query: dict) -> Answer:
        return self._page(org.networks, "id", path, query, "networks")

    def devices(self, org: Org, path: str, query: dict) -> Answer:
        """getOrganizationDevices: the inventory of devices in networks, with names and models."""
        items = [{key: value for key, value in device.items() if key != "status"} for device in org.devices]
        items = _filtered(items, query, {"networkIds[]": "networkId", "serials[]": "serial",
                                         "productTypes[]": "productType", "models[]": "model"})
        return self._page(items, "serial", path, query, "devices")

    def availabilities(self, org: Org, path: str, query: dict) -> Answer:
        """getOrganizationDevicesAvailabilities: status by device, its network as `network.id`, no model."""
        base, = example("devices_availabilities")
        items = [{**copy.deepcopy(base), "mac": device["mac"], "name": device["name"],
                  "network": {"id": device["networkId"]}, "productType": device["productType"],
                  "serial": device["serial"], "status": device["status"], "tags": device["tags"]}
                 for device in org.devices]
        items = _filtered(items, query, {"serials[]": "serial", "statuses[]": "status",
                                         "productTypes[]": "productType"})
        return self._page(items, "serial", path, query, "devices_availabilities")

    def uplink_statuses(self, org: Org, path: str, query: dict) -> Answer:
        base, = example("uplinks_statuses")
        wan, = base["uplinks"]
        items = []
        for device in org.devices:
            if device["productType"] not in ("appliance", "cellularGateway"):
                continue
            if device["productType"] == "cellularGateway":
                uplinks = [{**wan, "interface": "cellular", "status": "ready" if device["status"] == "online"
                            else "not connected"}]
            else:
                down = device["status"] == "offline"
                uplinks = [{**wan, "interface": "wan1", "status": "failed" if down else "active"},
                           {**wan, "interface": "wan2", "status": "not connected" if down else "ready"}]
            items.append({**copy.deepcopy(base), "networkId": device["networkId"], "serial": device["serial"],
                          "model": device["model"], "uplinks": uplinks})
        items = _filtered(items, query, {"networkIds[]": "networkId", "serials[]": "serial"})
        return self._page(items, "serial", path, query, "uplinks_statuses")

    def loss_and_latency(self, org: Org, path: str, query: dict) -> Answer:
        try:
            timespan = float(query.get("timespan", ["300"])[0])
        except ValueError:
            return _error(400, "'timespan' must be a number")
        if not 0 < timespan <= 300:
            return _error(400, "'timespan' must be less than or equal to 300 seconds")
        base, = example("devices_uplinks_loss_and_latency")
        items = []
        now = int(time.time()) // 60 * 60 - 120
        for index, device in enumerate(org.devices):
            if device["productType"] != "appliance" or device["status"] == "offline":
                continue
            for uplink, loss, latency in (("wan1", index % 4 * 0.5, 20.0 + index % 7), ("wan2", 0.0, 35.0)):
                series = [{"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 * n)),
                           "lossPercent": loss, "latencyMs": latency + n} for n in range(int(timespan // 60))]
                items.append({**copy.deepcopy(base), "networkId": device["networkId"], "serial": device["serial"],
                              "uplink": uplink, "ip": "8.8.8.8", "timeSeries": series})
        return _json(items)

    def licenses_overview(self, org: Org, path: str, query: dict) -> Answer:
        if org.licensing != "co-term":
            return _error(400, "Organization does not support co-termination licensing")
        return _json(org.license)

    def channel_utilization(self, org: Org, path: str, query: dict) -> Answer:
        base, = example("wireless_channel_utilization_by_device")
        band, = base["byBand"]
        items = [{**copy.deepcopy(base), "serial": device["serial"], "mac": device["mac"],
                  "network": {"id": device["networkId"]},
                  "byBand": [{**band, "band": "2.4", "total": {"percentage": 61.5}}, band]}
                 for device in org.devices if device["productType"] == "wireless"]
        return self._page(items, "serial", path, query, "wireless_channel_utilization_by_device")

    def switch_ports(self, org: Org, path: str, query: dict) -> Answer:
        with self._lock:
            items = self._switches.get(org.id)
        if items is None:  # made once: the bench reads 250 switches a page at 5,000 devices
            items = self._make_switches(org)
            with self._lock:
                self._switches[org.id] = items
        answer = self._page(items, "serial", path, query, "switch_ports_statuses_by_switch")
        if answer.status != 200:
            return answer
        page = json.loads(answer.body)
        body = {"items": page, "meta": {"counts": {"items": {"total": len(items), "remaining": 0}}}}
        return Answer(200, json.dumps(body).encode(), answer.headers)

    @staticmethod
    def _make_switches(org: Org) -> list[dict]:
        base, = example("switch_ports_statuses_by_switch")["items"]
        port, = base["ports"]
        names = {network["id"]: network["name"] for network in org.networks}
        items = []
        for device in org.devices:
            if device["productType"] != "switch":
                continue
            ports = [{**copy.deepcopy(port), "portId": str(number), "enabled": number != 8,
                      "status": "Disabled" if number == 8 else "Connected" if number <= 5 else "Disconnected"}
                     for number in range(1, 9)]
            items.append({**copy.deepcopy(base), "serial": device["serial"], "name": device["name"],
                          "mac": device["mac"], "model": device["model"],
                          "network": {"id": device["networkId"], "name": names[device["networkId"]]},
                          "ports": ports})
        return items

    def assurance_alerts(self, org: Org, path: str, query: dict) -> Answer:
        return self._page(org.alerts, "id", path, query, "assurance_alerts")

    # --- paging -------------------------------------------------------------------------------------

    def _page(self, items: list[dict], key: str, path: str, query: dict, name: str) -> Answer:
        """One page of `items` (sorted by `key`, the token) with its Link header, as operation `name` pages."""
        low, high, default = documented(name)[1]
        try:
            per_page = int(query.get("perPage", [str(default)])[0])
        except ValueError:
            return _error(400, "'perPage' must be an integer")
        if not low <= per_page <= high:
            return _error(400, f"'perPage' must be between {low} and {high}")
        items = sorted(items, key=lambda item: item[key])
        after, before = query.get("startingAfter", [None])[0], query.get("endingBefore", [None])[0]
        if after is not None:
            items_left = [item for item in items if item[key] > after]
            page = items_left[:per_page]
        elif before is not None:
            page = [item for item in items if item[key] < before][-per_page:]
        else:
            page = items[:per_page]
        keep = {name: values for name, values in query.items() if name not in ("startingAfter", "endingBefore")}
        keep["perPage"] = [str(per_page)]

        def link(rel: str, **token: str) -> str:
            return f"<{self.origin}{path}?{urlencode({**keep, **token}, doseq=True)}>; rel={rel}"

        links = [link("first")]
        if page and items and page[0][key] > items[0][key]:
            links.append(link("prev", endingBefore=page[0][key]))
        if page and page[-1][key] < items[-1][key]:
            links.append(link("next", startingAfter=page[-1][key]))
        links.append(link("last", endingBefore="z" * 16))
        body = [{name: value for name, value in item.items() if not name.startswith("_")} for item in page]
        return _json(body, (("Link", ", ".join(links)),))


def _filtered(items: list[dict], query: dict, filters: dict[str, str]) -> list[dict]:
    for name, field_name in filters.items():
        if name in query:
            wanted = set(query[name])
            items = [item for item in items if item[field_name] in wanted]
    return items


def _json(body: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(200, json.dumps(body).encode(), headers)


def _error(status: int, message: str) -> Answer:
    return Answer(status, json.dumps({"errors": [message]}).encode())


@functools.cache
def documented(name: str) -> tuple[frozenset[str], tuple[int, int, int]]:
    """Operation `name`'s documented query parameters and perPage range (min, max, default)."""
    described = operation(name)
    per_page = described.get("perPage", {"min": 0, "max": 0, "default": 0})
    return frozenset(described["parameters"]), (per_page["min"], per_page["max"], per_page["default"])


Route = Callable[[MerakiFake, Any, str, dict], Answer]
ROUTES: dict[str, tuple[Route, str]] = {  # path -> its handler and the fixture documenting it
    "/organizations": (MerakiFake.organizations, "organizations"),
    "/organizations/{org}/networks": (MerakiFake.networks, "networks"),
    "/organizations/{org}/devices": (MerakiFake.devices, "devices"),
    "/organizations/{org}/devices/availabilities": (MerakiFake.availabilities, "devices_availabilities"),
    "/organizations/{org}/uplinks/statuses": (MerakiFake.uplink_statuses, "uplinks_statuses"),
    "/organizations/{org}/devices/uplinksLossAndLatency": (MerakiFake.loss_and_latency,
                                                           "devices_uplinks_loss_and_latency"),
    "/organizations/{org}/licenses/overview": (MerakiFake.licenses_overview, "licenses_overview"),
    "/organizations/{org}/wireless/devices/channelUtilization/byDevice": (MerakiFake.channel_utilization,
                                                                          "wireless_channel_utilization_by_device"),
    "/organizations/{org}/switch/ports/statuses/bySwitch": (MerakiFake.switch_ports,
                                                            "switch_ports_statuses_by_switch"),
    "/organizations/{org}/assurance/alerts": (MerakiFake.assurance_alerts, "assurance_alerts"),
}


def _handler_for(fake: MerakiFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of an API server
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            answer = fake.answer("GET", self.path, self.headers)
            if isinstance(answer, Streamed):
                answer.write(self)
                return
            if answer.delay:
                time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("content-type", "application/json")
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            try:
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
