"""A contract fake of the Veeam Backup & Replication REST API 1.1-rev0, over HTTPS on loopback.

VBR runs only on Windows with a licence, so this serves what the official spec documents,
with records made from its example bodies (tests/fixtures/veeam; restore_points.json is
the backupObjects/{id}/restorePoints example, which has the objectRestorePoints schema):

- every request, the token request too, needs `x-api-version: 1.1-rev0` (else 400);
- `POST /api/oauth2/token`, form-encoded: grant_type password or refresh_token; access
  tokens expire after `token_lifetime` seconds on `clock`; refresh tokens work once;
- lists need `Authorization: Bearer <token>` (401 AccessDenied, InvalidToken or
  ExpiredToken) and are paged by skip/limit with at most `page_size` items a page; a query
  parameter the swagger does not document for the operation (tests/fixtures/veeam/
  operations.json) is a 400 InvalidURI, one it documents but the fake does not filter by a
  400 NotImplemented, so neither a misspelt filter nor a filter silently ignored passes;
- errors are the documented `{errorCode, message}`.

Test hooks add jobs, sessions and restore points, expire or forget the tokens, and make
the next answers fail or come back malformed. Hostile ones (tests/fakes/hostile.py)
answer a path with a gzip bomb, a body too large or a drip, and page a list for ever.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from secrets import token_urlsafe
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.hostile import Streamed
from tests.fakes.server import Served
from tests.lab.pki import PKI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "veeam"
API_VERSIONS = {"1.1-rev0"}
SERVER_ZONE = timezone(timedelta(hours=1))  # VBR answers in its local time, with the offset
ERROR_CODES = {400: "UnexpectedContent", 401: "AccessDenied", 404: "NotFound", 429: "ServiceUnavailable",
               503: "ServiceUnavailable"}


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


DOCUMENTED = {path: frozenset(operation["query_parameters"])  # as the VBR swagger documents them
              for path, operation in _fixture("operations")["operations"].items()}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, SERVER_ZONE).isoformat(timespec="milliseconds")


def _same(key: str) -> Callable[[dict, str], bool]:
    return lambda item, value: item.get(key) == value


def _after(key: str) -> Callable[[dict, str], bool]:
    return lambda item, value: datetime.fromisoformat(item[key]) > datetime.fromisoformat(value)


# path -> (the fake's attribute holding the items, the filters implemented for it)
LISTS: dict[str, tuple[str, dict[str, Callable[[dict, str], bool]]]] = {
    "/api/v1/jobs/states": ("job_states", {}),
    "/api/v1/sessions": ("sessions", {"jobIdFilter": _same("_jobId"), "createdAfterFilter": _after("creationTime")}),
    "/api/v1/backups": ("backups", {"jobIdFilter": _same("jobId")}),
    "/api/v1/objectRestorePoints": ("restore_points", {"backupIdFilter": _same("backupId"),
                                                       "createdAfterFilter": _after("creationTime")}),
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


@dataclass(frozen=True)
class _Canned:
    answer: Answer
    path: str | None  # only a request to this path takes it; None: the next request, whatever it is


class VeeamFake(Served):
    """The fake server; use it as a context manager. `url` is https://127.0.0.1:<free port>."""

    def __init__(self, pki: PKI, *, user: str = "vigil", password: str = "fake-password", page_size: int = 2,
                 token_lifetime: float = 900, clock: Callable[[], float] = time.monotonic, port: int = 0):
        self.user, self.password, self.page_size, self.token_lifetime = user, password, page_size, token_lifetime
        self._clock = clock
        self.job_states: list[dict] = copy.deepcopy(_fixture("job_states")["data"])
        self.backups: list[dict] = copy.deepcopy(_fixture("backups")["data"])
        self.sessions: list[dict] = []
        self.restore_points: list[dict] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query of every request
        self.token_requests: list[str] = []  # the grant_type of every token request, in order
        self.errors: list[str] = []  # the errorCode of every error answered, in order
        self.issued: list[str] = []  # every access and refresh token handed out
        self._access: dict[str, float] = {}  # access token -> when it expires, on `clock`
        self._refresh: set[str] = set()  # refresh tokens not used yet
        self._canned: list[_Canned] = []
        self._hostile: dict[str, Streamed] = {}  # path -> what every request to it gets
        self._endless: dict[str, list] = {}  # list path -> [the page it answers whatever the skip, pages left]
        self._lock = threading.Lock()
        port = self._serve(_handler_for(self), pki, "veeam-fake", port)
        self.url = f"https://127.0.0.1:{port}"

    def __enter__(self) -> VeeamFake:
        return super().__enter__()

    # --- test hooks -------------------------------------------------------------------------------

    def add_job(self, name: str) -> str:
        """A backup job (or copy job) with its backup; returns the job id."""
        job_id, backup_id = str(uuid.uuid4()), str(uuid.uuid4())
        job = copy.deepcopy(self.job_states[0])
        job.update(id=job_id, name=name, status="inactive", lastResult="None", lastRun=None, sessionId=None)
        backup = copy.deepcopy(self.backups[0])
        backup.update(id=backup_id, jobId=job_id, name=name, creationTime=_iso(time.time()))
        with self._lock:
            self.job_states.append(job)
            self.backups.append(backup)
        return job_id

    def add_session(self, job_id: str, result: str | None, created: float, ended: float | None = None,
                    message: str = "") -> str:
        """A finished session (result Success, Warning or Failed), or with result None one still running."""
        job, backup = self._job(job_id), self._backup(job_id)
        session = copy.deepcopy(_fixture("sessions")["data"][0])
        session.update(id=str(uuid.uuid4()), name=job["name"], activityId=str(uuid.uuid4()), _jobId=job_id,
                       creationTime=_iso(created), resourceId=backup["id"],
                       resourceReference=f"/api/v1/backups/{backup['id']}", usn=len(self.sessions))
        if result is None:
            session.update(state="Working", progressPercent=40, result={"result": "None", "isCanceled": False})
            del session["endTime"]
        else:
            session.update(state="Stopped", progressPercent=100, endTime=_iso(ended),
                           result={"result": result, "message": message, "isCanceled": False})
        with self._lock:
            self.sessions.append(session)
            job.update(status="running" if result is None else "inactive", lastResult=result or "None",
                       lastRun=session["creationTime"], sessionId=session["id"])
        return session["id"]

    def add_restore_point(self, job_id: str, object_name: str, created: float) -> str:
        """A restore point of one object (VM) in the job's backup."""
        point = copy.deepcopy(_fixture("restore_points")["data"][0])
        point.update(id=str(uuid.uuid4()), name=object_name, creationTime=_iso(created),
                     backupId=self._backup(job_id)["id"])
        with self._lock:
            self.restore_points.append(point)
        return point["id"]

    def expire_tokens(self) -> None:
        """Every access token issued so far is past its lifetime (as if 15 minutes went by)."""
        with self._lock:
            self._access = dict.fromkeys(self._access, self._clock())

    def forget_tokens(self) -> None:
        """Every token issued so far becomes unknown, as after a restart of the VBR service."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def fail_next(self, status: int, count: int = 1, retry_after: int | None = None, path: str | None = None) -> None:
        """The next `count` requests (to `path`, if given) get this error status."""
        body = {"errorCode": ERROR_CODES.get(status, "UnknownError"), "message": f"Injected HTTP {status}"}
        headers = (("content-type", "application/json"),) + ((("retry-after", str(retry_after)),)
                                                             if retry_after is not None else ())
        with self._lock:
            self._canned += [_Canned(Answer(status, json.dumps(body).encode(), headers), path)] * count

    def malformed_next(self, body: bytes, path: str | None = None) -> None:
        """The next request (to `path`, if given) gets 200 with this body, labelled JSON."""
        with self._lock:
            self._canned.append(_Canned(Answer(200, body), path))

    def hostile(self, path: str, answer: Streamed) -> None:
        """Every request to `path` (the token endpoint too) gets `answer`."""
        with self._lock:
            self._hostile[path] = answer

    def endless(self, path: str, page_bytes: int, pages: int = 2000) -> None:
        """The list at `path` does not end: every page, whatever its skip, is about `page_bytes` of its items
        and a total of a billion, so a client that reads until the total does not stop; after `pages` pages
        come empty ones, so that a client without bounds ends too (with everything it kept)."""
        attribute, _ = LISTS[path]
        items = [{key: value for key, value in item.items() if not key.startswith("_")}
                 for item in getattr(self, attribute)]
        one = sum(len(json.dumps(item)) + 2 for item in items) / len(items)
        data = [items[n % len(items)] for n in range(max(1, int(page_bytes / one)))]
        pagination = {"total": 10**9, "count": len(data), "skip": 0, "limit": len(data)}
        with self._lock:
            self._endless[path] = [json.dumps({"data": data, "pagination": pagination}).encode(), pages]

    # --- the API ----------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Any, body: bytes) -> Answer | Streamed:
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        with self._lock:
            self.requests.append((method, url.path, query))
            if headers.get("x-api-version") not in API_VERSIONS:
                return self._error(400, "The x-api-version header is missing or names an unsupported version.")
            canned = next((c for c in self._canned if c.path in (None, url.path)), None)
            if canned is not None:
                self._canned.remove(canned)
                return canned.answer
            if url.path in self._hostile:
                return self._hostile[url.path]
            if (method, url.path) == ("POST", "/api/oauth2/token"):
                if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                    return self._error(400, "The token request must be form-encoded.")
                return self._token(dict(parse_qsl(body.decode())))
            if method != "GET" or url.path not in LISTS:
                return self._error(404, f"No such resource: {method} {url.path}")
            unauthorized = self._unauthorized(headers.get("authorization", ""))
            endless = self._endless.get(url.path)
            if unauthorized is None and endless is not None:
                endless[1] -= 1
                return Answer(200, endless[0] if endless[1] >= 0 else b'{"data": [], "pagination": {"total": 0}}')
            return unauthorized or self._page(url.path, query)

    def _token(self, form: dict[str, str]) -> Answer:
        grant = form.get("grant_type", "")
        self.token_requests.append(grant)
        if grant == "password":
            if (form.get("username"), form.get("password")) != (self.user, self.password):
                return self._error(401, "The user name or password is incorrect.")
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self._refresh:
                return self._error(401, "The refresh token is invalid, expired or already used.", "InvalidToken")
            self._refresh.remove(form["refresh_token"])
        else:
            return self._error(400, f"Unsupported grant_type `{grant}`.")
        access, refresh = token_urlsafe(32), token_urlsafe(32)
        self._access[access] = self._clock() + self.token_lifetime
        self._refresh.add(refresh)
        self.issued += [access, refresh]
        now = time.time()
        token = {**_fixture("token"), "access_token": access, "refresh_token": refresh,
                 "expires_in": self.token_lifetime, ".issued": _iso(now), ".expires": _iso(now + self.token_lifetime)}
        return Answer(200, json.dumps(token).encode())

    def _unauthorized(self, authorization: str) -> Answer | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._error(401, "The Authorization header is missing.")
        if token not in self._access:
            return self._error(401, "The access token is invalid.", "InvalidToken")
        if self._clock() >= self._access[token]:
            return self._error(401, "The access token has expired.", "ExpiredToken")
        return None

    def _page(self, path: str, query: dict[str, str]) -> Answer:
        attribute, filters = LISTS[path]
        undocumented = sorted(set(query) - DOCUMENTED[path])
        if undocumented:
            return self._error(400, f"Unknown query parameter(s) {', '.join(undocumented)} for GET {path}.",
                               "InvalidURI")
        unimplemented = sorted(set(query) - set(filters) - {"skip", "limit"})
        if unimplemented:
            return self._error(400, f"The fake does not filter by {', '.join(unimplemented)} of GET {path}.",
                               "NotImplemented")
        try:
            skip = int(query.get("skip", 0))
            limit = min(int(query.get("limit", self.page_size)), self.page_size)
            items = [item for item in getattr(self, attribute)
                     if all(filters[name](item, value) for name, value in query.items() if name in filters)]
        except ValueError as exc:
            return self._error(400, f"Invalid query: {exc}")
        page = [{key: value for key, value in item.items() if not key.startswith("_")}
                for item in items[skip:skip + limit]]
        pagination = {"total": len(items), "count": len(page), "skip": skip, "limit": limit}
        return Answer(200, json.dumps({"data": page, "pagination": pagination}).encode())

    def _error(self, status: int, message: str, code: str | None = None) -> Answer:
        code = code or ERROR_CODES.get(status, "UnknownError")
        self.errors.append(code)
        return Answer(status, json.dumps({"errorCode": code, "message": message}).encode())

    def _job(self, job_id: str) -> dict:
        return next(job for job in self.job_states if job["id"] == job_id)

    def _backup(self, job_id: str) -> dict:
        return next(backup for backup in self.backups if backup.get("jobId") == job_id)


def _handler_for(fake: VeeamFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of an API server
        disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def _reply(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            answer = fake.answer(method, self.path, self.headers, body)
            if isinstance(answer, Streamed):
                answer.write(self)
                return
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:  # the test output stays readable
            pass

    return Handler
