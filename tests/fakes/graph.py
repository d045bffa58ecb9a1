"""A contract fake of the Microsoft identity platform token endpoint and of Microsoft Graph v1.0.

Neither runs outside Microsoft's cloud, so this serves what the official documents say
(tests/fixtures/graph: the documented examples and msal's authority contract), over
HTTPS on loopback with the test CA, on one port for all three hosts (authority, Graph,
report downloads), so that a national-cloud-like custom authority is what every test uses:

- `GET /<tenant>/v2.0/.well-known/openid-configuration` (msal reads it in its constructor);
- `POST /<tenant>/oauth2/v2.0/token`, form-encoded `client_credentials` with either the
  client secret or a client assertion: an RS256/PS256 JWT signed by the app's
  certificate key, whose `x5t` is the certificate's SHA-1 thumbprint and whose claims
  are aud = the token endpoint, iss = sub = the client id, exp in the future, and a jti;
- Graph under `/v1.0/` needs `Authorization: Bearer <token>` (401
  InvalidAuthenticationToken when unknown or expired), pages with `@odata.nextLink`
  (`page_size` items, or `$top` up to the endpoint's maximum, or the
  `Prefer: odata.maxpagesize` header where the endpoint documents that instead), honours
  `$select`, and answers 400 with Graph's `error` object to a query parameter the
  endpoint's v1.0 page does not document (each fixture's `_source.query_parameters`):
  `Request_UnsupportedQuery` for directory objects, `BadRequest` for the others;
- report functions answer 302 to a pre-authenticated download URL, which refuses a
  request that carries an Authorization header, and serves CSV with a UTF-8 BOM.

Test hooks deny a permission (403 Authorization_RequestDenied on its endpoints), throttle
(429 with or without Retry-After), answer malformed JSON, expire the tokens issued, and
fill a large tenant for the benchmark. Hostile ones (tests/fakes/hostile.py) answer a path
with a gzip bomb, a body too large or a drip, and page a list for ever.
"""

from __future__ import annotations

import base64
import copy
import csv
import functools
import hashlib
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from secrets import token_urlsafe
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fakes.hostile import Streamed
from tests.fakes.server import Served
from tests.lab.pki import PKI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
GRAPH_SCOPE = ".default"
DENIED = {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@functools.cache
def documented(name: str) -> frozenset[str]:
    """The query options the v1.0 page of fixture `name`'s endpoint documents."""
    return frozenset(fixture(name)["_source"]["query_parameters"])


@dataclass(frozen=True)
class Endpoint:
    attribute: str  # the fake's attribute holding the items (a list) or the entity (a dict)
    permission: str  # the application permission Graph requires
    documented_by: str  # the fixture whose `_source.query_parameters` are the options its v1.0 page documents
    unsupported: str = "BadRequest"  # the error code Graph gives an undocumented query option
    max_top: int | None = None  # the largest $top, when the page documents $top
    max_page_size: int | None = None  # the largest `Prefer: odata.maxpagesize`, when the page documents it

    @property
    def params(self) -> frozenset[str]:
        return documented(self.documented_by)


DIRECTORY = "Request_UnsupportedQuery"  # what Graph's directory objects answer an unsupported query with
LISTS = {
    "/v1.0/admin/serviceAnnouncement/healthOverviews": Endpoint("health", "ServiceHealth.Read.All",
                                                                "healthOverviews.list"),
    "/v1.0/admin/serviceAnnouncement/issues": Endpoint("issues", "ServiceHealth.Read.All", "issues.list",
                                                       max_page_size=1000),
    "/v1.0/organization": Endpoint("organization", "Organization.Read.All", "organization.get", DIRECTORY),
    "/v1.0/subscribedSkus": Endpoint("skus", "Organization.Read.All", "subscribedSkus.list", DIRECTORY),
    "/v1.0/applications": Endpoint("applications", "Application.Read.All", "applications.list", DIRECTORY,
                                   max_top=999),
    "/v1.0/security/secureScores": Endpoint("secure_scores", "SecurityEvents.Read.All", "secureScores.list",
                                            max_top=1000),
}
ENTITIES = {
    "/v1.0/deviceManagement/deviceCompliancePolicyDeviceStateSummary":
        Endpoint("compliance_summary", "DeviceManagementConfiguration.Read.All",
                 "deviceCompliancePolicyDeviceStateSummary.get"),
}
REPORTS = {
    "/v1.0/reports/getMailboxUsageDetail": ("mailboxes", "reports.getMailboxUsageDetail"),
    "/v1.0/reports/getSharePointSiteUsageDetail": ("sites", "reports.getSharePointSiteUsageDetail"),
}
REPORT_PATH = re.compile(r"^(/v1\.0/reports/\w+)\(period='(D7|D30|D90|D180)'\)$")
FILTERS = {"isResolved eq false": lambda item: not item.get("isResolved")}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def _json(status: int, body: object, *headers: tuple[str, str]) -> Answer:
    return Answer(status, json.dumps(body).encode(), (("content-type", "application/json"), *headers))


def _error(status: int, code: str, message: str, *headers: tuple[str, str]) -> Answer:
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}
    return _json(status, {"error": {"code": code, "message": message, "innerError": inner}}, *headers)


def thumbprint(cert_pem: bytes) -> bytes:
    """SHA-1 of the certificate's DER form: what `x5t` carries and msal's `thumbprint` names in hex."""
    return hashlib.sha1(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)).digest()


class GraphFake(Served):
    """The fake server; use it as a context manager. `url` is https://127.0.0.1:<free port>."""

    def __init__(self, pki: PKI, *, tenant: str, client_id: str, client_secret: str | None = None,
                 certificate: bytes | None = None, page_size: int = 100, token_lifetime: int = 3599,
                 port: int = 0):
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.certificate = certificate  # the PEM of the certificate registered for the app
        self.page_size, self.token_lifetime = page_size, token_lifetime
        self.health: list[dict] = fixture("healthOverviews.list")["response"]["value"]
        self.issues: list[dict] = fixture("issues.list")["response"]["value"]
        self.organization: list[dict] = [fixture("organization.get")["response"]]
        self.skus: list[dict] = fixture("subscribedSkus.list")["response"]["value"]
        self.applications: list[dict] = fixture("applications.list")["response"]["value"]
        self.secure_scores: list[dict] = fixture("secureScores.list")["response"]["value"]
        self.compliance_summary: dict = fixture("deviceCompliancePolicyDeviceStateSummary.get")["response"]["value"]
        self.wrap_summary = False  # serve the summary wrapped in "value", as the doc example does
        self.mailboxes: list[dict] = []  # report rows, by documented column name
        self.sites: list[dict] = []
        self.denied: set[str] = set()  # permissions the app was not granted
        self.requests: list[tuple[str, str, dict[str, str], bool]] = []  # method, path, query, had Authorization
        self.request_times: list[float] = []  # time.monotonic() of each request, for the benchmark
        self.token_requests: list[str] = []  # "secret" or "assertion", for every token granted
        self.token_errors: list[str] = []
        self._tokens: dict[str, float] = {}  # access token -> expiry (time.time)
        self._downloads: dict[str, str] = {}  # download id -> report path
        self._canned: list[tuple[str | None, Answer]] = []
        self._token_canned: list[Answer] = []
        self._hostile: dict[str, Streamed] = {}  # path -> what every request to it gets
        self._endless: dict[str, Endless] = {}  # list path -> its pages that do not end
        self._lock = threading.Lock()
        port = self._serve(_handler_for(self), pki, "graph-fake", port)
        self.url = f"https://127.0.0.1:{port}"

    def __enter__(self) -> GraphFake:
        return super().__enter__()

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    # --- test hooks -------------------------------------------------------------------------------

    def throttle_next(self, path: str | None = None, count: int = 1, retry_after: int | None = None,
                      status: int = 429) -> None:
        """The next `count` Graph requests (to `path`, if given) get 429 (or 503), with Retry-After if given."""
        headers = (("retry-after", str(retry_after)),) if retry_after is not None else ()
        code = "TooManyRequests" if status == 429 else "ServiceNotAvailable"
        answer = _error(status, code, "Too many requests." if status == 429 else "Service unavailable.", *headers)
        with self._lock:
            self._canned += [(path, answer)] * count

    def malformed_next(self, path: str | None = None, body: bytes = b'{"value": [{"service": ') -> None:
        with self._lock:
            self._canned.append((path, Answer(200, body)))

    def token_answer_next(self, body: bytes, status: int = 200) -> None:
        """The next token request gets this answer instead of a token: an authority gone wrong."""
        with self._lock:
            self._token_canned.append(Answer(status, body))

    def hostile(self, path: str, answer: Streamed) -> None:
        """Every request to `path` (the discovery document, the token endpoint, a list) gets `answer`."""
        with self._lock:
            self._hostile[path] = answer

    def endless(self, path: str, page_bytes: int, *, repeat: bool, pages: int = 2000) -> None:
        """The list at `path` pages for ever: about `page_bytes` a page, its items over and over, each page's
        next link naming that page again (`repeat`) or one more; after `pages` pages it ends, so that a
        client without bounds ends too (with everything it kept)."""
        items = getattr(self, LISTS[path].attribute)
        one = sum(len(json.dumps(item)) + 2 for item in items) / len(items)
        value = json.dumps([items[n % len(items)] for n in range(max(1, int(page_bytes / one)))])
        with self._lock:
            self._endless[path] = Endless(value, repeat, pages)

    def expire_tokens(self) -> None:
        """Every access token issued so far has expired (Graph says so; msal's cache does not know)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def graph_requests(self, path: str | None = None) -> list[tuple[str, str, dict[str, str], bool]]:
        with self._lock:
            return [r for r in self.requests if r[1].startswith("/v1.0/") and path in (None, r[1])]

    def populate(self, applications: int, skus: int, devices: int) -> None:
        """A large tenant: apps with a secret and a certificate each, SKUs, and the devices' summary."""
        app, sku = self.applications[0], self.skus[0]
        self.applications = [{**copy.deepcopy(app), "id": str(uuid.uuid4()), "appId": str(uuid.uuid4()),
                              "displayName": f"app-{n:05d}"} for n in range(applications)]
        self.skus = [{**copy.deepcopy(sku), "skuId": str(uuid.uuid4()), "skuPartNumber": f"SKU_{n:03d}"}
                     for n in range(skus)]
        counts = {"compliantDeviceCount": 0.8, "nonCompliantDeviceCount": 0.1, "inGracePeriodCount": 0.05,
                  "unknownDeviceCount": 0.05}
        self.compliance_summary = {**{key: 0 for key in self.compliance_summary if key.endswith("Count")},
                                   **{key: int(devices * share) for key, share in counts.items()},
                                   "id": self.compliance_summary["id"]}

    # --- the API ----------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Any, body: bytes) -> Answer | Streamed:
        url = urlsplit(target)
        path, query = unquote(url.path), dict(parse_qsl(url.query, keep_blank_values=True))
        authorization = headers.get("authorization", "")
        with self._lock:
            self.requests.append((method, path, query, bool(authorization)))
            self.request_times.append(time.monotonic())
            if path in self._hostile:
                return self._hostile[path]
            if path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
                return self._discovery()
            if (method, path) == ("POST", f"/{self.tenant}/oauth2/v2.0/token"):
                if self._token_canned:
                    return self._token_canned.pop(0)
                return self._token(dict(parse_qsl(body.decode())))
            if path.startswith("/download/"):
                return self._download(path.removeprefix("/download/"), authorization)
            canned = next((c for c in self._canned if c[0] in (None, path)), None)
            if canned is not None:
                self._canned.remove(canned)
                return canned[1]
            if not self._authorized(authorization):
                return _error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
            if method != "GET":
                return _error(405, "Request_BadRequest", f"{method} is not supported here.")
            if path in LISTS:
                return self._list(path, LISTS[path], query, headers.get("prefer", ""))
            if path in ENTITIES:
                return self._entity(ENTITIES[path], query)
            if match := REPORT_PATH.match(path):
                return self._report(match.group(1), query)
            return _error(404, "Request_ResourceNotFound", f"Resource not found for the segment '{path}'.")

    def _discovery(self) -> Answer:
        base = f"{self.url}/{self.tenant}"
        return _json(200, {"authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                           "token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                           "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]})

    def _token(self, form: dict[str, str]) -> Answer:
        if form.get("grant_type") != "client_credentials" or not form.get("scope", "").endswith(GRAPH_SCOPE):
            return self._token_error(400, "unsupported_grant_type", "AADSTS70003: client_credentials with a "
                                     "/.default scope is the only grant here.")
        if form.get("client_id") != self.client_id:
            return self._token_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                     f"'{form.get('client_id')}' was not found in the directory.")
        if "client_secret" in form:
            if self.client_secret is None or form["client_secret"] != self.client_secret:
                return self._token_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            kind = "secret"
        elif form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            problem = self._assertion_problem(form.get("client_assertion", ""))
            if problem:
                return self._token_error(401, "invalid_client", problem)
            kind = "assertion"
        else:
            return self._token_error(401, "invalid_client", "AADSTS7000216: 'client_assertion', "
                                     "'client_secret' or 'request' is required.")
        token = token_urlsafe(32)
        self._tokens[token] = time.time() + self.token_lifetime
        self.token_requests.append(kind)
        return _json(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                           "ext_expires_in": self.token_lifetime, "access_token": token})

    def _assertion_problem(self, assertion: str) -> str:
        """Why the client assertion is refused, or "" when it is good."""
        if self.certificate is None:
            return "AADSTS700027: no certificate is registered for the application."
        try:
            header = jwt.get_unverified_header(assertion)
            expected = base64.urlsafe_b64encode(thumbprint(self.certificate)).rstrip(b"=").decode()
            if header.get("x5t", header.get("x5t#S256")) is None:
                return "AADSTS700027: the client assertion has no x5t header."
            if "x5t" in header and header["x5t"].rstrip("=") != expected:
                return "AADSTS700027: the client assertion names a certificate that is not registered."
            key = x509.load_pem_x509_certificate(self.certificate).public_key()
            claims = jwt.decode(assertion, key, algorithms=["RS256", "PS256"], audience=self.token_endpoint,
                                issuer=self.client_id, options={"require": ["exp", "iat", "jti", "sub"]})
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: client assertion failed signature or claim validation ({exc})."
        if claims["sub"] != self.client_id:
            return "AADSTS700023: the client assertion's sub is not the client id."
        return ""

    def _token_error(self, status: int, error: str, description: str) -> Answer:
        self.token_errors.append(error)
        return _json(status, {"error": error, "error_description": description})

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and self._tokens.get(token, 0.0) > time.time()

    def _unsupported(self, endpoint: Endpoint, query: dict[str, str]) -> Answer | None:
        unknown = sorted(set(query) - endpoint.params - {"$skiptoken"})  # $skiptoken: the fake's own next links
        if unknown:
            option = unknown[0].removeprefix("$")
            return _error(400, endpoint.unsupported, f"Query option '{option[:1].upper() + option[1:]}' is not "
                          "allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute "
                          "or QueryValidationSettings." if endpoint.unsupported == "BadRequest" else
                          f"Unsupported query option '{unknown[0]}'.")
        if "$filter" in query and query["$filter"] not in FILTERS:
            return _error(400, "BadRequest", f"Invalid filter clause: {query['$filter']}")
        if endpoint.attribute in self.denied or endpoint.permission in self.denied:
            return _error(403, **DENIED)
        return None

    def _list(self, path: str, endpoint: Endpoint, query: dict[str, str], prefer: str) -> Answer:
        if problem := self._unsupported(endpoint, query):
            return problem
        if path in self._endless:
            return self._endless[path].page(f"{self.url}{path}", query)
        items = getattr(self, endpoint.attribute)
        if "$filter" in query:
            items = [item for item in items if FILTERS[query["$filter"]](item)]
        size = self.page_size
        wanted = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        if wanted and endpoint.max_page_size:  # a preference Graph does not document here is ignored
            size = min(int(wanted.group(1)), endpoint.max_page_size) or size
        if "$top" in query:
            top = int(query["$top"]) if query["$top"].isdigit() else 0
            if not 1 <= top <= (endpoint.max_top or 0):
                return _error(400, "BadRequest", f"Invalid page size specified: '{query['$top']}'.")
            size = top
        skip = int(query.get("$skiptoken", "0"))
        page = [_select(item, query.get("$select")) for item in items[skip:skip + size]]
        body: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#{path.removeprefix('/v1.0/')}",
                                "value": page}
        if skip + size < len(items):
            body["@odata.nextLink"] = f"{self.url}{path}?" + urlencode({**query, "$skiptoken": skip + size})
        return _json(200, body)

    def _entity(self, endpoint: Endpoint, query: dict[str, str]) -> Answer:
        if problem := self._unsupported(endpoint, query):
            return problem
        entity = _select(getattr(self, endpoint.attribute), query.get("$select"))
        return _json(200, {"value": entity} if self.wrap_summary else
                     {"@odata.context": f"{self.url}/v1.0/$metadata#deviceManagement/$entity", **entity})

    def _report(self, path: str, query: dict[str, str]) -> Answer:
        if query:
            return _error(400, "BadRequest", f"Query option(s) {sorted(query)} are not supported here.")
        if "Reports.Read.All" in self.denied:
            return _error(403, **DENIED)
        download = token_urlsafe(16)
        self._downloads[download] = path
        return Answer(302, b"", (("content-type", "text/plain"), ("location", f"{self.url}/download/{download}")))

    def _download(self, download: str, authorization: str) -> Answer:
        if authorization:
            return Answer(400, b"The download URL is pre-authenticated: send no Authorization header.",
                          (("content-type", "text/plain"),))
        if download not in self._downloads:
            return Answer(404, b"The download URL has expired.", (("content-type", "text/plain"),))
        attribute, name = REPORTS[self._downloads.pop(download)]
        columns = fixture(name)["response_step2"]
        columns = columns.get("csv_columns_documented") or columns["csv_header_line"].split(",")
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(getattr(self, attribute))
        return Answer(200, ("\ufeff" + text.getvalue()).encode(), (("content-type", "application/octet-stream"),))


@dataclass
class Endless:
    """A list's pages that do not end: the same items each page, the next link the same page or one more."""

    value: str  # the JSON of one page's items
    repeat: bool
    pages: int
    served: int = 0

    def page(self, url: str, query: dict[str, str]) -> Answer:
        self.served += 1
        body = '{"value": ' + self.value
        if self.served < self.pages:
            token = query.get("$skiptoken", "0") if self.repeat else str(int(query.get("$skiptoken", "0")) + 1)
            body += ', "@odata.nextLink": ' + json.dumps(f"{url}?" + urlencode({**query, "$skiptoken": token}))
        return Answer(200, (body + "}").encode())


def _select(item: dict, select: str | None) -> dict:
    if not select:
        return copy.deepcopy(item)
    fields = {name.strip() for name in select.split(",")} | {"id"}
    return {key: copy.deepcopy(value) for key, value in item.items() if key in fields}


def _handler_for(fake: GraphFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            answer = fake.answer(self.command, self.path, self.headers, self.rfile.read(length))
            if isinstance(answer, Streamed):
                answer.write(self)
                return
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler
