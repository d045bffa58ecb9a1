"""The Veeam location against the contract fake of the VBR REST API, over HTTPS with a private CA."""

from __future__ import annotations

import ssl
from dataclasses import replace

import httpx
import pytest

from agent.clock import Clock
from agent.ratelimit import RateLimits
from checks.sources import veeam
from checks.sources.veeam import VeeamError, VeeamLocation
from tests.fakes.veeam import VeeamFake
from tests.lab.harness import free_port
from tests.lab.pki import make_pki

NOW = 1_800_000_000.0
HOUR, DAY = 3600.0, 86400.0
PASSWORD = "correct-horse-battery-staple"
SYSTEM_CAS = ssl.get_default_verify_paths().openssl_cafile  # a real bundle, without the fake's CA


class SteppedClock(Clock):
    """Time that moves only when a test says so, shared by the location and the fake's tokens."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.waits: list[float] = []  # what the location waited before retrying, without waiting it

    def time(self) -> float:
        return NOW + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("veeam-pki"))


@pytest.fixture
def clock():
    return SteppedClock()


@pytest.fixture
def fake(pki, clock):
    with VeeamFake(pki, password=PASSWORD, clock=clock.monotonic) as fake:
        yield fake


@pytest.fixture
def make_location(fake, pki, clock, context, monkeypatch):
    """A location as the config makes it: the password by reference, the fake's CA as ca_file."""

    def make(job: str = "Fileserver Backup", password: str = PASSWORD, url: str | None = None,
             ca_file=pki.ca) -> VeeamLocation:
        monkeypatch.setenv("VIGIL_TEST_VEEAM_PASSWORD", password)
        config = VeeamLocation.Config.model_validate({
            "kind": "veeam", "url": url or fake.url, "user": "vigil", "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
            "job": job, "ca_file": ca_file, "timeout": "5s"})
        return VeeamLocation(config, replace(context, clock=clock, rate_limits=RateLimits(clock)))

    return make


@pytest.fixture
def waits(clock):
    """The retry waits the location asked for, recorded by the clock instead of slept."""
    return clock.waits


def one_success(fake: VeeamFake, name: str = "Fileserver Backup") -> str:
    job = fake.add_job(name)
    fake.add_session(job, "Success", NOW - DAY, NOW - DAY + 900)
    return job


def requests_to(fake: VeeamFake, path: str) -> list[dict[str, str]]:
    return [query for _, request_path, query in fake.requests if request_path == path]


def test_finished_sessions_newest_first_with_veeam_s_verdict(fake, make_location):
    job = fake.add_job("Fileserver Backup")
    other = fake.add_job("Mail Backup")
    fake.add_session(other, "Success", NOW - 3 * HOUR, NOW - 2 * HOUR)
    warning = fake.add_session(job, "Warning", NOW - 2 * DAY, NOW - 2 * DAY + 1800, "1 of 3 VMs has no guest tools")
    success = fake.add_session(job, "Success", NOW - 3 * DAY, NOW - 3 * DAY + 1200)
    failed = fake.add_session(job, "Failed", NOW - DAY, NOW - DAY + 600, "Repository is out of space")
    fake.add_session(job, None, NOW - 600)  # still running: not a backup yet
    fake.add_session(job, "Success", NOW - 60 * DAY, NOW - 60 * DAY + 900)  # before the window

    snapshots = make_location().backups()

    assert [(s.id, s.ok, s.detail) for s in snapshots] == [
        (failed, False, "Failed: Repository is out of space"),
        (warning, True, "Warning: 1 of 3 VMs has no guest tools"),
        (success, True, ""),
    ]
    assert [s.completed_at for s in snapshots] == [NOW - DAY + 600, NOW - 2 * DAY + 1800, NOW - 3 * DAY + 1200]
    assert [s.duration for s in snapshots] == [600, 1800, 1200]
    assert {(s.size_bytes, s.file_count) for s in snapshots} == {(None, None)}


def test_every_page_is_read(fake, make_location):
    job = fake.add_job("Fileserver Backup")
    for day in range(1, 8):
        fake.add_session(job, "Success", NOW - day * DAY, NOW - day * DAY + 900)
        fake.add_restore_point(job, "files01", NOW - day * DAY + 5)

    snapshots = make_location().backups()

    assert len(snapshots) == 7
    assert [query["skip"] for query in requests_to(fake, "/api/v1/sessions")] == ["0", "2", "4", "6"]
    assert len(requests_to(fake, "/api/v1/objectRestorePoints")) == 4
    assert snapshots[-1].name == "files01@2027-01-08T08:00:05.000Z"  # its own point, read from the last page


def test_token_is_refreshed_before_it_expires_and_each_refresh_token_used_once(fake, make_location, clock):
    one_success(fake)
    location = make_location()
    location.backups()
    for _ in range(2):
        clock.advance(850)  # past 90% of the 900 s lifetime: the fake has not expired it yet
        location.backups()
    clock.advance(1000)  # past the whole lifetime: the fake would answer ExpiredToken
    location.backups()

    assert fake.token_requests == ["password", "refresh_token", "refresh_token", "refresh_token"]
    assert fake.errors == []
    assert not any(token in repr(vars(location)) for token in fake.issued)


def test_refused_refresh_token_falls_back_to_a_password_login(fake, make_location, clock):
    one_success(fake)
    location = make_location()
    location.backups()
    fake.forget_tokens()
    clock.advance(850)

    assert len(location.backups()) == 1
    assert fake.token_requests == ["password", "refresh_token", "password"]


@pytest.mark.parametrize("server_side, code", [(VeeamFake.expire_tokens, "ExpiredToken"),
                                               (VeeamFake.forget_tokens, "InvalidToken")])
def test_a_token_the_server_rejects_earns_one_new_login(fake, make_location, server_side, code):
    one_success(fake)
    location = make_location()
    location.backups()
    server_side(fake)

    assert len(location.backups()) == 1
    assert fake.errors == [code]
    assert fake.token_requests == ["password", "password"]


def test_wrong_password_is_a_clear_error_without_the_password(fake, make_location):
    one_success(fake)

    with pytest.raises(VeeamError) as caught:
        make_location(password="not-the-right-one").backups()

    message = str(caught.value)
    assert f"Veeam at {fake.url} refused the login of user `vigil`" in message
    assert "AccessDenied" in message and "check user: and password:" in message
    assert "not-the-right-one" not in message and PASSWORD not in message
    assert fake.token_requests == ["password"]


def test_unknown_job_names_the_nearest_one(fake, make_location):
    one_success(fake)

    with pytest.raises(VeeamError) as caught:
        make_location(job="Fileserver Bakup").backups()

    assert str(caught.value) == (f"Veeam job `Fileserver Bakup` not found on {fake.url}; "
                                 "did you mean `Fileserver Backup`?")


def test_rate_limit_waits_what_retry_after_asks_then_succeeds(fake, make_location, waits, context):
    one_success(fake)
    fake.fail_next(429, retry_after=3, path="/api/v1/sessions")

    assert len(make_location().backups()) == 1
    assert len(waits) == 1 and 3.0 <= waits[0] <= 3.3  # what Retry-After asks, and a little jitter
    counted = context.api.requests()  # every attempt, for vigil_api_requests_total
    assert counted == {("veeam", "429"): 1, ("veeam", "200"): len(fake.requests) - 1}
    assert len(requests_to(fake, "/api/v1/sessions")) == 2


def test_gateway_errors_are_retried_a_bounded_number_of_times(fake, make_location, waits):
    one_success(fake)
    fake.fail_next(503, count=5, path="/api/v1/sessions")

    with pytest.raises(VeeamError, match=r"GET https://127\.0\.0\.1:\d+/api/v1/sessions: HTTP 503 "
                                         r"Service Unavailable \(ServiceUnavailable: Injected HTTP 503\)$"):
        make_location().backups()
    assert len(waits) == veeam.RETRIES and 0.5 <= waits[0] <= 1 <= waits[1] <= 2  # backing off, with jitter
    assert len(requests_to(fake, "/api/v1/sessions")) == 3


def test_a_retry_after_too_long_to_wait_fails_at_once(fake, make_location, waits):
    one_success(fake)
    fake.fail_next(429, retry_after=3600)

    with pytest.raises(VeeamError, match="HTTP 429 Too Many Requests"):
        make_location().backups()
    assert waits == []


def test_server_error_is_clear_and_carries_no_token(fake, make_location, waits):
    one_success(fake)
    fake.fail_next(500, path="/api/v1/backups")

    with pytest.raises(VeeamError) as caught:
        make_location().backups()

    message = str(caught.value)
    assert message.endswith("/api/v1/backups: HTTP 500 Internal Server Error (UnknownError: Injected HTTP 500)")
    assert fake.issued and not any(token in message for token in fake.issued)
    assert waits == []  # a 500 is the server's own error, not worth a retry


@pytest.mark.parametrize("path, body, reason", [
    ("/api/v1/sessions", b"<html>Service is starting</html>", "the answer is not JSON"),
    ("/api/v1/jobs/states", b'{"data": {"name": "x"}, "pagination": {"total": 1}}',
     "unexpected answer (data: Input should be a valid list)"),
    ("/api/v1/sessions", b'{"data": [{"id": "x", "state": "Stopped", "endTime": "yesterday"}], "pagination": '
                         b'{"total": 1}}', "unexpected answer (endTime: Input should be a valid datetime"),
    ("/api/oauth2/token", b'{"access_token": "tok-123", "refresh_token": "ref-456", "expires_in": "soon"}',
     "unexpected answer (expires_in: Input should be a valid number"),
])
def test_malformed_answers_are_clear_errors(fake, make_location, path, body, reason):
    one_success(fake)
    fake.malformed_next(body, path=path)

    with pytest.raises(VeeamError) as caught:
        make_location().backups()

    assert f"{fake.url}{path}" in str(caught.value) and reason in str(caught.value)
    assert "tok-123" not in str(caught.value) and caught.value.__cause__ is None


def test_ca_file_wins_over_the_environment(fake, make_location, monkeypatch):
    one_success(fake)
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, SYSTEM_CAS)  # the system CAs, which do not include the fake's

    assert len(make_location().backups()) == 1


def test_without_ca_file_the_private_ca_is_not_trusted(fake, make_location):
    one_success(fake)

    with pytest.raises(VeeamError, match=r"its TLS certificate is not trusted \(.+\); set ca_file:"):
        make_location(ca_file=None).backups()
    assert fake.requests == []


def test_unreachable_server_is_a_clear_error(make_location):
    url = f"https://127.0.0.1:{free_port()}"

    with pytest.raises(VeeamError, match=f"cannot reach Veeam at {url}: .*refused"):
        make_location(url=url).backups()


def test_offsite_copy_matches_the_primary_backup_it_copied(fake, make_location):
    primary, offsite = fake.add_job("Fileserver Backup"), fake.add_job("Fileserver Offsite Copy")
    for start in (NOW - 2 * DAY, NOW - DAY):  # two nightly backups of two VMs
        fake.add_session(primary, "Success", start, start + 1800)
        fake.add_restore_point(primary, "files01", start + 5)
        fake.add_restore_point(primary, "db01", start + 600)
    for start in (NOW - 2 * DAY + HOUR, NOW - DAY + HOUR):  # each copied an hour later, keeping the point in time
        fake.add_restore_point(offsite, "files01", start - HOUR + 5)
        fake.add_restore_point(offsite, "db01", start - HOUR + 600)
        fake.add_session(offsite, "Success", start, start + 1200)
    fake.add_session(primary, "Success", NOW - HOUR, NOW - HOUR + 1800)  # tonight's: not copied yet
    fake.add_restore_point(primary, "files01", NOW - HOUR + 5)
    fake.add_restore_point(primary, "db01", NOW - HOUR + 600)

    backups = make_location("Fileserver Backup").backups()
    copies = make_location("Fileserver Offsite Copy").backups()

    assert [b.name for b in backups] == ["db01@2027-01-15T07:10:00.000Z", "db01@2027-01-14T08:10:00.000Z",
                                         "db01@2027-01-13T08:10:00.000Z"]
    assert [c.name for c in copies] == [b.name for b in backups[1:]]
    assert copies[0].id != backups[1].id


def test_the_fake_holds_clients_to_the_contract(fake, pki):
    tls = ssl.create_default_context(cafile=str(pki.ca))
    version = {"x-api-version": "1.1-rev0"}
    with httpx.Client(base_url=fake.url, verify=tls) as client:
        assert client.get("/api/v1/jobs/states").json()["errorCode"] == "UnexpectedContent"
        assert client.get("/api/v1/jobs/states", headers=version).status_code == 401
        login = {"grant_type": "password", "username": "vigil", "password": PASSWORD}
        refresh = client.post("/api/oauth2/token", data=login, headers=version).json()["refresh_token"]
        again = {"grant_type": "refresh_token", "refresh_token": refresh}
        assert client.post("/api/oauth2/token", data=again, headers=version).status_code == 200
        reused = client.post("/api/oauth2/token", data=again, headers=version)
        assert (reused.status_code, reused.json()["errorCode"]) == (401, "InvalidToken")
        token = client.post("/api/oauth2/token", data=login, headers=version).json()["access_token"]
        misspelt = client.get("/api/v1/sessions", params={"jobIDFilter": "x"},
                              headers={**version, "authorization": f"Bearer {token}"})
        assert misspelt.status_code == 400


@pytest.mark.parametrize("path, query, code", [
    ("/api/v1/sessions", {"jobIDFilter": "x"}, "InvalidURI"),  # misspelt: not in the spec
    ("/api/v1/objectRestorePoints", {"jobIdFilter": "x"}, "InvalidURI"),  # sessions and backups take it; this not
    ("/api/v1/jobs/states", {"$top": "1"}, "InvalidURI"),
    ("/api/v1/sessions", {"orderColumn": "CreationTime"}, "NotImplemented"),  # documented, not filtered by here
])
def test_the_fake_refuses_query_parameters_the_swagger_does_not_document(fake, pki, path, query, code):
    tls = ssl.create_default_context(cafile=str(pki.ca))
    version = {"x-api-version": "1.1-rev0"}
    with httpx.Client(base_url=fake.url, verify=tls, headers=version) as client:
        login = {"grant_type": "password", "username": "vigil", "password": PASSWORD}
        token = client.post("/api/oauth2/token", data=login).json()["access_token"]
        answer = client.get(path, params=query, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == code and next(iter(query)) in answer.json()["message"]


def test_the_locations_calls_send_only_documented_parameters(fake, make_location):
    job = one_success(fake)
    fake.add_restore_point(job, "files01", NOW - DAY + 5)
    assert make_location().backups()
    assert fake.errors == []
    assert {path for _, path, _ in fake.requests} == {"/api/oauth2/token", "/api/v1/jobs/states", "/api/v1/sessions",
                                                      "/api/v1/backups", "/api/v1/objectRestorePoints"}


def test_a_session_that_ends_before_it_began_has_no_duration(fake, make_location, fault_report):
    """A server whose clock jumped back: the backup stands, its duration is unknown (never negative)."""
    job = fake.add_job("Fileserver Backup")
    session = fake.add_session(job, "Success", NOW - DAY + 900, NOW - DAY)
    (backup,) = make_location().backups()
    fault_report(fault="Veeam session ending before it began", expected="the backup seen, duration unknown",
                 observed=f"backup {backup.id[:8]}, duration {backup.duration}")
    assert (backup.id, backup.ok, backup.duration) == (session, True, None)
