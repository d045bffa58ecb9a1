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
from the same window: a handful of requests, whatever the server's size. Each list is
read until its `total`, within the bounds of one listing (agent/net/paging.py), so a
server whose total is never reached stops with that reason. The requests go
through the shared transport (agent.net.http.SyncApi: the CA file over the environment's
bundles, retries of 429 and gateway errors as Retry-After asks, a size cap, counting);
the token logic is Veeam's own and stays here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.net.http import CaFileError, HttpError, SyncApi, api_message, json_of, raise_for_status, safe_url
from agent.net.paging import Listing, ListingError
from agent.ondisk import CaFile
from agent.redact import userinfo_in_url
from agent.secrets import Secret
from checks.model import BackupSnapshot, Location, LocationConfig

PAGE_SIZE = 100
HISTORY = 40 * 86400.0  # a monthly job's last run with room to spare; older runs are in the agent's history
RETRIES = 2
MAX_RETRY_WAIT = 10.0  # a server asking for longer fails this poll instead of holding a worker thread
RENEW_AT = 0.9  # of a token's lifetime: 90 s early for VBR's 15 minutes, so it never expires mid-listing
TOKEN_PATH = "/api/oauth2/token"  # noqa: S105 — a URL path, not a password
API = "veeam"  # the api label of vigil_api_requests_total


class VeeamError(Exception):
    """The Veeam server could not be read; one line, never a password or a token."""


class LoginRefused(VeeamError):
    """The token endpoint said no: a wrong user or password, or a refresh token already used."""


def _in_utc(moment: datetime) -> datetime:
    """A time that exists in UTC: year 9999 at -14:00 is year 10000 there, and cannot be named or shown."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time beyond the years 1 to 9999 in UTC") from None


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]


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
    expires_in: float = Field(gt=0, allow_inf_nan=False)


class _JobState(_Shape):
    id: str
    name: str


class _SessionResult(_Shape):
    result: str
    message: str | None = None


class _Session(_Shape):
    id: str
    state: str
    created: Moment | None = Field(None, alias="creationTime")
    ended: Moment | None = Field(None, alias="endTime")
    result: _SessionResult | None = None


class _Backup(_Shape):
    id: str


class _RestorePoint(_Shape):
    name: str
    created: Moment = Field(alias="creationTime")


Shape = TypeVar("Shape", bound=_Shape)


@dataclass
class _Token:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    renew_at: float  # on the context clock's monotonic time


class VeeamLocation(Location):
    kind = "veeam"

    class Config(LocationConfig):
        kind: Literal["veeam"]
        url: str = Field(description="the VBR REST API, such as https://vbr.example.org:9419")
        user: str = Field(description="a Veeam user with the Backup Viewer role")
        password: Secret = Field(description="its password")
        job: str = Field(description="the job's name: a backup job, or for an off-site location a backup copy job")
        ca_file: CaFile | None = Field(None, description="a private CA; wins over SSL_CERT_FILE and "
                                                         "REQUESTS_CA_BUNDLE")
        api_version: str = Field("1.1-rev0", description="the x-api-version header")

        @field_validator("url")
        @classmethod
        def _no_credentials_in_url(cls, url: str) -> str:
            if userinfo_in_url(url):
                raise ValueError("must not hold credentials (user:password@): set `user` and `password`")
            return url

    def __init__(self, config: Config, context):
        self.config = config
        self.where = config.url
        self._context = context
        self._clock = context.clock
        self._token: _Token | None = None  # kept between polls: one login per token lifetime, not per poll

    def backups(self) -> list[BackupSnapshot]:
        with self._translated(), self._client() as client:
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

    def _client(self) -> SyncApi:
        """A client for one poll; the CA file is read each time, so a renewed CA needs no restart."""
        return SyncApi(self.config.url, self._context, ca_file=self.config.ca_file, timeout=self.config.timeout,
                       retries=RETRIES, max_retry_wait=MAX_RETRY_WAIT,
                       headers={"x-api-version": self.config.api_version, "accept": "application/json"})

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The transport's errors in this location's words."""
        try:
            yield
        except CaFileError as exc:
            raise VeeamError(str(exc)) from None
        except HttpError as exc:
            if exc.status is None:
                raise VeeamError(f"cannot reach Veeam at {safe_url(self.config.url)}: {exc.detail}") from None
            raise VeeamError(f"Veeam {exc}") from None

    def _job_id(self, client: SyncApi) -> str:
        jobs = self._list(client, "/api/v1/jobs/states", _JobState)
        for job in jobs:
            if job.name == self.config.job:
                return job.id
        close = difflib.get_close_matches(self.config.job, [job.name for job in jobs], n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"it has {len(jobs)} jobs, none with a similar name"
        raise VeeamError(f"Veeam job `{self.config.job}` not found on {self.config.url}; {hint}")

    def _list(self, client: SyncApi, path: str, shape: type[Shape], **filters: str) -> list[Shape]:
        """Every item of a paged list, within the bounds of one listing; the server may send fewer than asked."""
        items: list[Shape] = []
        listing = Listing()
        what = f"GET {safe_url(self.config.url.rstrip('/') + path)}"
        while True:
            response = self._get(client, path, {**filters, "skip": len(items), "limit": PAGE_SIZE})
            page = _parse(_Page, json_of(response), what)
            try:
                listing.add(len(page.data), len(response.content))
            except ListingError as exc:
                raise VeeamError(f"Veeam {what}: {exc}") from None
            items += [_parse(shape, item, what) for item in page.data]
            if not page.data or len(items) >= page.pagination.total:
                return items

    def _get(self, client: SyncApi, path: str, params: dict[str, Any]) -> httpx.Response:
        """GET with the bearer token, a 2xx answer; a token the server no longer takes earns one new login."""
        response = client.request("GET", path, api=API, params=params, headers=self._bearer(client))
        if response.status_code == 401 and _error_code(response) in ("ExpiredToken", "InvalidToken"):
            self._token = None  # the server restarted or forgot it: its refresh token is gone too
            response = client.request("GET", path, api=API, params=params, headers=self._bearer(client))
        return raise_for_status(response)

    def _bearer(self, client: SyncApi) -> dict[str, str]:
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

    def _grant(self, client: SyncApi, **form: str) -> _Token:
        asked_at = self._clock.monotonic()
        response = client.request("POST", TOKEN_PATH, api=API, data=form)
        if response.status_code in (400, 401, 403):
            raise LoginRefused(f"Veeam at {safe_url(self.config.url)} refused the login of user "
                               f"`{self.config.user}` ({api_message(response)}); check user: and password:")
        grant = _parse(_TokenGrant, json_of(raise_for_status(response)),
                       f"POST {safe_url(response.request.url)}")
        return _Token(grant.access_token, grant.refresh_token, asked_at + grant.expires_in * RENEW_AT)


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
        duration=_seconds_between(session.created, session.ended),
    )


def _seconds_between(start: datetime | None, end: datetime) -> float | None:
    """How long the session ran; None without a start, or when it ended before it began (a server's clock jump)."""
    seconds = (end - start).total_seconds() if start is not None else None
    return seconds if seconds is not None and seconds >= 0 else None


def _iso(epoch: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _parse(shape: type[Shape], answer: Any, what: str) -> Shape:
    """The answer in its documented shape; a clear error (without the answer's values) if not."""
    try:
        return shape.model_validate(answer)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        raise VeeamError(f"Veeam {what}: unexpected answer ({where}: {error['msg']})") from None


def _error_code(response: httpx.Response) -> str:
    """The documented error body's errorCode, or "" if it is not one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("errorCode") or "") if isinstance(body, dict) else ""
