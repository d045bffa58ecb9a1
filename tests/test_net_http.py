"""The HTTP transport against a real local HTTPS server of the tests' own (tests/lab/http_peer.py).

Every behaviour is checked on both clients: AsyncApi (event loop) and SyncApi (threads).
Retry waits go through a FakeClock, so they are asserted without being slept.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest

from agent.clock import Clock
from agent.net.http import AsyncApi, CaFileError, HttpError, SyncApi, safe_url, ssl_context
from agent.ratelimit import RateLimits
from tests.clocks import FakeClock
from tests.lab.blackhole import syn_dropped
from tests.lab.harness import wait_until
from tests.lab.http_peer import http_peer
from tests.lab.pki import faulty_server, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("http-pki"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that did not sign the server's certificate, for the environment's bundles."""
    return make_pki(tmp_path_factory.mktemp("other-pki")).ca


@pytest.fixture
def server(pki):
    with http_peer(pki) as running:
        yield running


@pytest.fixture(autouse=True)
def hostile_environment(monkeypatch, other_ca):
    """The environment names another CA, as on this machine and in CI: ca_file must win."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(other_ca))


class Client:
    """One way of calling the transport: `style` async runs each call in its own event loop."""

    def __init__(self, style: str, base_url: str, ctx, **options):
        self.style, self.base_url, self.ctx, self.options = style, base_url, ctx, options

    def request(self, method: str, url: str, **kwargs):
        return self._call("request", method, url, **kwargs)

    def get_json(self, url: str, **kwargs):
        return self._call("get_json", url, **kwargs)

    def _call(self, name: str, *args, **kwargs):
        kwargs.setdefault("api", "test")
        if self.style == "sync":
            with SyncApi(self.base_url, self.ctx, **self.options) as api:
                return getattr(api, name)(*args, **kwargs)

        async def once():
            api = AsyncApi(self.base_url, self.ctx, **self.options)
            try:
                return await getattr(api, name)(*args, **kwargs)
            finally:
                await api.aclose()

        return asyncio.run(once())


@pytest.fixture(params=["async", "sync"])
def style(request):
    return request.param


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ctx(context, clock):
    return replace(context, clock=clock, rate_limits=RateLimits(clock))


@pytest.fixture
def client(style, server, pki, ctx):
    def make(**options) -> Client:
        return Client(style, server.url, ctx, **{"ca_file": pki.ca, "timeout": 5.0, **options})

    return make


def test_json_over_tls_with_the_ca_file_and_headers(client, ctx):
    body = client(headers={"Authorization": "Bearer t0k3n"}).get_json("/things", params={"page": "2"})

    assert body["path"] == "/things" and body["query"] == {"page": "2"}
    assert body["headers"]["authorization"] == "Bearer t0k3n"
    assert body["headers"]["user-agent"].startswith("vigil/")
    assert ctx.api.requests() == {("test", "200"): 1}


def test_requests_are_logged_at_debug_without_their_query(client, caplog):
    with caplog.at_level("DEBUG", logger="agent.net.http"):
        client().get_json("/page?$skiptoken=s3cret")

    [line] = [record.getMessage() for record in caplog.records if record.name == "agent.net.http"]
    assert line.startswith("http request api=test method=GET url=https://127.0.0.1:") and line.endswith("code=200")
    assert "s3cret" not in line


def test_without_ca_file_the_private_ca_is_not_trusted(client, server, ctx):
    with pytest.raises(HttpError, match=r"^GET https://127\.0\.0\.1:\d+/x: its TLS certificate is not trusted "
                                        r"\(.+\); set ca_file: to the CA that signed it$"):
        client(ca_file=None, retries=0).get_json("/x?token=secret")
    assert server.hits["/x"] == 0
    assert ctx.api.requests() == {("test", "error"): 1}


def test_a_wrong_ca_file_is_refused_too(client, other_ca):
    with pytest.raises(HttpError, match="its TLS certificate is not trusted"):
        client(ca_file=other_ca, retries=0).get_json("/x")


CERTIFICATE_FAULTS = {  # what the server's certificate has wrong, with the right CA in ca_file: the words
    "expired": "its TLS certificate has expired; renew the certificate on the server",
    "not yet valid": "its TLS certificate is not valid yet; check the clocks of this host and of the server",
    "wrong host": "its TLS certificate is not for 127.0.0.1; connect by a name the certificate lists, or give "
                  "the server a certificate for this name",
    "self-signed": "its TLS certificate is self-signed, and not trusted; set ca_file: to that certificate, or "
                   "give the server one from your CA",
}


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
def test_a_refused_certificate_names_what_is_wrong_with_it(style, pki, ctx, tmp_path, fault, fault_report):
    """"Set ca_file" only where a CA is what is missing: not for an expired certificate, one not
    valid yet or one for another host, which the right CA does not mend."""
    with http_peer(faulty_server(pki, tmp_path, fault)) as server:
        with pytest.raises(HttpError) as failure:
            Client(style, server.url, ctx, ca_file=pki.ca, timeout=5.0, retries=0).get_json("/x")
    assert str(failure.value) == f"GET {server.url}/x: {CERTIFICATE_FAULTS[fault]}"
    fault_report(f"a server certificate {fault} ({style} HTTP client, its CA in ca_file)",
                 "the reason names the fault and its fix", str(failure.value).partition(": ")[2])


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(CaFileError, match=f"^cannot use ca_file {tmp_path}/none.pem: No such file"):
        ssl_context(tmp_path / "none.pem")
    assert ssl_context(None).verify_mode.name == "CERT_REQUIRED"


def test_429_waits_what_retry_after_asks_plus_a_little_jitter(client, server, clock, ctx):
    body = client().get_json("/limited?fail=2&after=3")

    assert body["path"] == "/limited"
    assert len(clock.waits) == 2 and all(3.0 <= wait <= 3.3 for wait in clock.waits)
    assert ctx.api.requests() == {("test", "429"): 2, ("test", "200"): 1}
    assert ctx.api.waits() == {"test": pytest.approx(sum(clock.waits))}


def test_retry_after_as_an_http_date(client, clock):
    at = clock.time() + 20
    client().get_json(f"/dated?fail=1&at={at:.0f}")

    assert len(clock.waits) == 1 and 19.0 <= clock.waits[0] <= 22.1


def test_gateway_errors_back_off_exponentially_then_the_last_answer_is_returned(client, server, clock):
    response = client(retries=3).request("GET", "/busy?fail=9")

    assert response.status_code == 503 and server.hits["/busy"] == 4
    assert len(clock.waits) == 3
    assert all(0.5 * 2 ** n <= wait <= 2 ** n for n, wait in enumerate(clock.waits))


def test_get_json_raises_with_the_apis_own_message(client):
    with pytest.raises(HttpError) as caught:
        client(retries=1).get_json("/busy?fail=9&secret=hidden")

    assert str(caught.value).endswith("/busy: HTTP 503 Service Unavailable (ServiceUnavailable: try later)")
    assert caught.value.status == 503 and "hidden" not in str(caught.value)


def test_a_retry_after_longer_than_max_retry_wait_fails_at_once(client, server, clock):
    with pytest.raises(HttpError, match=r"HTTP 429 Too Many Requests; the server asks to retry after 3600s, "
                                        r"more than the 60s vigil waits"):
        client().get_json("/limited?fail=1&after=3600")
    assert clock.waits == [] and server.hits["/limited"] == 1


def test_non_retryable_errors_are_returned_for_the_caller_to_map(client, server, ctx):
    response = client().request("GET", "/error?code=403")

    assert response.status_code == 403 and server.hits["/error"] == 1
    with pytest.raises(HttpError, match=r"HTTP 403 Forbidden \(Forbidden: Missing role Reports\.Read\.All\)$"):
        client().get_json("/error?code=403")


def test_an_answer_that_is_not_json(client):
    with pytest.raises(HttpError, match=r"/html: the answer is not JSON \(text/html\)$"):
        client().get_json("/html")


@pytest.mark.parametrize("path", ["/huge?size=2000000", "/chunked?chunks=40"])
def test_a_body_over_max_bytes_is_refused(client, path, ctx):
    with pytest.raises(HttpError, match=r"the answer is larger than 1000000 bytes; check the URL"):
        client(max_bytes=1_000_000).get_json(path)
    assert ctx.api.requests() == {("test", "200"): 1}


def test_a_body_within_max_bytes_is_read(client):
    response = client(max_bytes=1_000_000).request("GET", "/chunked?chunks=10")
    assert len(response.content) == 655360


def test_a_host_that_never_accepts_is_told_from_a_service_that_never_answers(style, ctx):
    """A dropped SYN is a host or firewall problem; silence after the connection is the service's."""
    with syn_dropped() as port:
        api = Client(style, f"http://127.0.0.1:{port}", ctx, timeout=0.5, retries=0)
        with pytest.raises(HttpError, match=r"no connection within 0.5s; check that the host is up and no firewall"):
            api.get_json("/anything")


@pytest.mark.parametrize("slow", ["", "&head=1"], ids=["body", "headers-too"])
def test_a_slow_answer_is_bounded_as_a_whole_not_per_read(slow, style, server, pki, context):
    """One byte every 0.2 s never trips a per-read timeout; the whole request has 1 s: the client hangs up
    after a few bytes, not after the 70 of the status line and headers (httpx's blocking client waited for
    those as long as they came, then counted 1 s from the body) nor the 100 of the body."""
    api = Client(style, server.url, replace(context, clock=Clock()), ca_file=pki.ca, timeout=1.0, retries=0)
    with pytest.raises(HttpError, match=r"/slow: no answer within 1s; the service accepted the connection but did not"):
        api.get_json(f"/slow?size=100&every=0.2{slow}")
    assert server.dripped < 20, f"{server.dripped} bytes dripped before the client gave up"


def test_a_sync_client_closed_by_another_thread_mid_request_closes_when_the_request_ends(server, pki, context):
    """A job closed (a reload) while its location's call still runs: close() must not fail for the loop
    running in the other thread; the call ends at its deadline, and the client is closed after it."""
    api = SyncApi(server.url, replace(context, clock=Clock()), ca_file=pki.ca, timeout=1.0, retries=0)
    failures: list[HttpError] = []

    def call() -> None:
        try:
            api.get_json("/slow?size=100&every=0.2&head=1", api="test")
        except HttpError as exc:
            failures.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: server.hits["/slow"], 10, "the request to arrive")
    api.close()
    caller.join(10)
    assert [failure.reason for failure in failures] == ["no answer within 1s"]
    with pytest.raises(RuntimeError, match="the client is closed"):
        api.get_json("/echo", api="test")


def test_timeouts_are_counted_and_retried(style, server, pki, context):
    clock = Clock()
    ctx = replace(context, clock=clock)
    body = Client(style, server.url, ctx, ca_file=pki.ca, timeout=0.5, retries=1).get_json("/stall?fail=1&for=2")

    assert body["path"] == "/stall"  # the second attempt, after the first timed out
    assert ctx.api.requests() == {("test", "timeout"): 1, ("test", "200"): 1}


def test_a_refused_connection_is_retried_then_named(style, pki, ctx, clock):
    from tests.lab.harness import free_port

    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(HttpError, match=r"^GET https://127\.0\.0\.1:\d+/x: connection refused "
                                        r"\(after 3 attempts\); check the host and port"):
        Client(style, url, ctx, ca_file=pki.ca, retries=2).get_json("/x")
    assert len(clock.waits) == 2
    assert ctx.api.requests() == {("test", "error"): 3}


def test_the_rate_bucket_paces_requests_and_its_waits_are_counted(client, ctx, clock):
    bucket = ctx.rate_limits.bucket("test-api", rate=2)
    api = client()
    for _ in range(6):
        api.get_json("/paced", bucket=bucket)

    assert clock.elapsed == pytest.approx(2.0)  # 6 calls at 2/s with a burst of 2
    assert ctx.api.waits() == {"test": pytest.approx(2.0)}


def test_a_redirect_is_not_followed_unless_asked_and_can_drop_the_token(client, server):
    headers = {"Authorization": "Bearer t0k3n"}
    first = client(headers=headers).request("GET", "/redirect")
    assert first.status_code == 302

    followed = client(headers=headers).request("GET", first.headers["location"], auth_header=False)
    assert "authorization" not in followed.json()["headers"]


def test_redirects_are_followed_when_asked(client):
    assert client(follow_redirects=True).get_json("/redirect")["path"] == "/echo"


def test_post_bodies_are_resent_on_retry(client, server):
    response = client().request("POST", "/limited?fail=1&after=1", data={"grant_type": "password"})

    assert response.status_code == 200 and server.hits["/limited"] == 2


def test_urls_in_errors_lose_userinfo_and_query():
    assert safe_url("https://user:pw@example.org:8443/a/b?sig=s3cret#x") == "https://example.org:8443/a/b"
