"""A Veeam Backup & Replication job, read through the VBR REST API (1.1-rev0, port 9419).

One location is one Veeam job: a backup job for the primary, a backup copy job for the
off-site copy. Each finished session of the job is one backup: `id` is the session id,
`completed_at` its endTime, `ok` its result (Success; Warning, with the message in
`detail`; Failed). A session still running is not a backup yet and is left out. The API
gives no size or file count per session, so those stay None.

`name` is how an off-site copy is matched to its primary. A session names neither the
restore points it made nor, for a copy job, the session it copied, but a restore point
keeps what it is a copy of: Veeam gives a copied restore point the object (VM) name and
the point in time (creationTime) of its source. So `name` is `<object>@<creationTime in
UTC>` of the newest restore point in the job's backups created by the time the session
ended: the newest point in time the location held once that session was done. A copy
session that copied last night's backup gets the same name as the backup session that
made it; the checks compare names. (Restore points are read from the same window as the
sessions, so a copy whose newest point is older than that has no name; it is stale anyway.)

Each poll reads the job states (to find the job's id by its name), the job's sessions
created in the last `HISTORY` seconds, then the job's backups and their restore points
from the same window: a handful of requests, whatever the server's size.
"""

from __future__ import annotations

import difflib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import sleep
from typing import Any, Literal, TypeVar

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from agent.secrets import Secret
from checks.model import BackupSnapshot, LocationConfig

PAGE_SIZE = 100
HISTORY = 40 * 86400.0  # a monthly job's last run with room to spare; older runs are in the agent's history
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRIES = 2
RETRY_WAIT = 1.0  # seconds, when the server does not say (Retry-After)
MAX_RETRY_WAIT = 10.0  # a server asking for longer fails this poll instead of holding a worker thread
RENEW_AT = 0.9  # of a token's lifetime: 90 s early for VBR's 15 minutes, so it never expires mid-listing
TOKEN_PATH = "/api/oauth2/token"


class VeeamError(Exception):
    """The Veeam server could not be read; one line, never a password or a token."""


class LoginRefused(VeeamError):
    """The token endpoint said no: a wrong user or password, or a refresh token already used."""


class _Shape(BaseModel):
    """The fields of an answer that are read here, checked; anything else is ignored.

    Only what is used is required: the spec's own `required` lists are wrong in places.
    """

    model_config = ConfigDict(extra="ignore")


class _Pagination(_Shape):
    total: int


class _Page(_Shape):
    data: list[dict[str, Any]]
    pagination: _Pagination


class _TokenGrant(_Shape):
    access_token: str
    refresh_token: str
    expires_in: PositiveFloat


class _JobState(_Shape):
    id: str
    name: str


class _SessionResult(_Shape):
    result: str
    message: str | None = None


class _Session(_Shape):
    id: str
    state: str
    created: AwareDatetime | None = Field(None, alias="creationTime")
    ended: AwareDatetime | None = Field(None, alias="endTime")
    result: _SessionResult | None = None


class _Backup(_Shape):
    id: str


class _RestorePoint(_Shape):
    name: str
    created: AwareDatetime = Field(alias="creationTime")


Shape = TypeVar("Shape", bound=_Shape)


@dataclass
class _Token:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    renew_at: float  # on the context clock's monotonic time


class VeeamLocation:
    kind = "veeam"

    class Config(LocationConfig):
        kind: Literal["veeam"]
        url: str  # https://vbr.example.org:9419
        user: str
        password: Secret
        job: str  # the job's name: a backup job, or for an off-site location a backup copy job
        ca_file: Path | None = None  # a private CA; wins over SSL_CERT_FILE and REQUESTS_CA_BUNDLE
        api_version: str = "1.1-rev0"

    def __init__(self, config: Config, context):
        self.config = config
        self._clock = context.clock
        self._token: _Token | None = None  # kept between polls: one login per token lifetime, not per poll

    def backups(self) -> list[BackupSnapshot]:
        with self._client() as client:
            job_id = self._job_id(client)
            window = {"createdAfterFilter": _iso(self._clock.time() - HISTORY)}
            sessions = [session for session in self._list(client, "/api/v1/sessions", _Session,
                                                          jobIdFilter=job_id, **window)
                        if session.state == "Stopped" and session.ended and session.result]
            if not sessions:
                return []
            points = [point for backup in self._list(client, "/api/v1/backups", _Backup, jobIdFilter=job_id)
                      for point in self._list(client, "/api/v1/objectRestorePoints", _RestorePoint,
                                              backupIdFilter=backup.id, **window)]
        snapshots = [_snapshot(session, points) for session in sessions]
        return sorted(snapshots, key=lambda snapshot: snapshot.completed_at, reverse=True)

    def _client(self) -> httpx.Client:
        """A client for one poll; the CA file is read each time, so a renewed CA needs no restart.

        An SSLContext, not a path, so that SSL_CERT_FILE in the environment cannot replace the CA.
        """
        verify: ssl.SSLContext | bool = True
        if self.config.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(self.config.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise VeeamError(f"cannot use ca_file {self.config.ca_file}: {exc.strerror or exc}") from None
        return httpx.Client(base_url=self.config.url, timeout=self.config.timeout, verify=verify,
                            headers={"x-api-version": self.config.api_version, "accept": "application/json"})

    def _job_id(self, client: httpx.Client) -> str:
        jobs = self._list(client, "/api/v1/jobs/states", _JobState)
        for job in jobs:
            if job.name == self.config.job:
                return job.id
        close = difflib.get_close_matches(self.config.job, [job.name for job in jobs], n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"it has {len(jobs)} jobs, none with a similar name"
        raise VeeamError(f"Veeam job `{self.config.job}` not found on {self.config.url}; {hint}")

    def _list(self, client: httpx.Client, path: str, shape: type[Shape], **filters: str) -> list[Shape]:
        """Every item of a paged list; the server may send fewer than the limit asked."""
        items: list[Shape] = []
        while True:
            answer = self._get(client, path, {**filters, "skip": len(items), "limit": PAGE_SIZE})
            page = _parse(_Page, answer, f"GET {client.base_url.join(path)}")
            items += [_parse(shape, item, f"GET {client.base_url.join(path)}") for item in page.data]
            if not page.data or len(items) >= page.pagination.total:
                return items

    def _get(self, client: httpx.Client, path: str, params: dict[str, Any]) -> Any:
        """GET with the bearer token; a token the server no longer takes earns one new login."""
        response = self._send(client, "GET", path, params=params, headers=self._bearer(client))
        if response.status_code == 401 and _error_body(response)[0] in ("ExpiredToken", "InvalidToken"):
            self._token = None  # the server restarted or forgot it: its refresh token is gone too
            response = self._send(client, "GET", path, params=params, headers=self._bearer(client))
        return _json(_checked(response))

    def _bearer(self, client: httpx.Client) -> dict[str, str]:
        """The Authorization header: log in on first use, refresh before the token expires."""
        if self._token is not None and self._clock.monotonic() >= self._token.renew_at:
            try:
                self._token = self._grant(client, grant_type="refresh_token", refresh_token=self._token.refresh)
            except LoginRefused:  # expired or already used: a password login still works
                self._token = None
        if self._token is None:
            self._token = self._grant(client, grant_type="password", username=self.config.user,
                                      password=self.config.password.get_secret_value())
        return {"authorization": f"Bearer {self._token.access}"}

    def _grant(self, client: httpx.Client, **form: str) -> _Token:
        asked_at = self._clock.monotonic()
        response = self._send(client, "POST", TOKEN_PATH, data=form)
        if response.status_code in (400, 401, 403):
            raise LoginRefused(f"Veeam at {self.config.url} refused the login of user `{self.config.user}` "
                               f"({_error_text(response)}); check user: and password:")
        grant = _parse(_TokenGrant, _json(_checked(response)), _request_name(response))
        return _Token(grant.access_token, grant.refresh_token, asked_at + grant.expires_in * RENEW_AT)

    def _send(self, client: httpx.Client, method: str, path: str, **request: Any) -> httpx.Response:
        """One request; rate limits and gateway errors are retried a little, as Retry-After asks."""
        attempt = 0
        while True:
            try:
                response = client.request(method, path, **request)
            except httpx.TransportError as exc:
                raise VeeamError(f"cannot reach Veeam at {self.config.url}: {self._transport_reason(exc)}") from exc
            wait = _retry_after(response)
            if response.status_code not in RETRY_STATUSES or attempt == RETRIES or wait > MAX_RETRY_WAIT:
                return response
            sleep(wait)
            attempt += 1

    def _transport_reason(self, exc: httpx.TransportError) -> str:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return (f"its TLS certificate is not trusted ({cause.verify_message}); "
                        "set ca_file: to the CA that signed it")
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer within {self.config.timeout:g}s"
        return str(exc) or type(exc).__name__


def _snapshot(session: _Session, points: list[_RestorePoint]) -> BackupSnapshot:
    """A finished session (it has an end and a result) as a backup."""
    result, message = session.result.result, session.result.message
    held = [point for point in points if point.created <= session.ended]
    newest = max(held, key=lambda point: (point.created, point.name), default=None)
    return BackupSnapshot(
        id=session.id,
        completed_at=session.ended.timestamp(),
        ok=result in ("Success", "Warning"),
        detail="" if result == "Success" else f"{result}: {message}" if message else result,
        name=f"{newest.name}@{_iso(newest.created.timestamp(), 'milliseconds')}" if newest else "",
        duration=(session.ended - session.created).total_seconds() if session.created else None,
    )


def _iso(epoch: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds (the HTTP-date form is rare for APIs and gets the default wait)."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.strip().isdigit() else RETRY_WAIT


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    error = _error_text(response)
    raise VeeamError(f"Veeam {_request_name(response)}: HTTP {response.status_code} {response.reason_phrase}"
                     + (f" ({error})" if error else ""))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise VeeamError(f"Veeam {_request_name(response)}: the answer is not JSON ({kind})") from None


def _parse(shape: type[Shape], answer: Any, what: str) -> Shape:
    """The answer in its documented shape; a clear error (without the answer's values) if not."""
    try:
        return shape.model_validate(answer)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        raise VeeamError(f"Veeam {what}: unexpected answer ({where}: {error['msg']})") from None


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """The documented error body's (errorCode, message), or empty strings if it is not one."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    message = str(body.get("message") or "").strip().splitlines()
    return str(body.get("errorCode") or ""), message[0][:200] if message else ""


def _error_text(response: httpx.Response) -> str:
    return ": ".join(part for part in _error_body(response) if part)


def _request_name(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.copy_with(query=None)}"
