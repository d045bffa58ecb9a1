"""The endpoint: TLS and basic auth from a web-config.yml, pages, health and readiness."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from datetime import UTC, datetime

import bcrypt
import pytest

from agent import __version__
from agent.collector import describe
from agent.config import ConfigError
from agent.model import ApiCounters, JobState, Result, Sample, Verdict
from agent.statedb import StateDB
from agent.store import Store
from exporters import web, webauth
from exporters.web import Site, WebServer
from exporters.webauth import BUSY_RETRY, LOCKOUT_WINDOW, MAX_FAILURES, MAX_WAITING, BasicAuth, Login
from exporters.webconfig import WebConfig, WebConfigError, load_web_config
from exporters.webpassword import hash_password
from tests.clocks import FakeClock
from tests.conftest import ROOT, vigil_argv
from tests.lab.flood import USER, Scraper, flood, guess
from tests.lab.harness import Peer, free_port, wait_until
from tests.lab.pki import make_pki
from tests.skeleton.metrics import TICKS

PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(tmp_path):
    store = Store(StateDB(tmp_path / "state"))
    store.publish(JobState("nas", "counting", 60, (TICKS,), result=Result("nas", "counting", True, 1.0, 0.2,
                                                                   (Sample(TICKS.name, 3),)), last_success=1.2))
    store.publish(JobState("ups", "counting", 60, (TICKS,), result=Result("ups", "counting", False, 1.0, 5.0,
                                                                   error="timed out after 5s")))
    site = Site(store, {"config": "test.yaml", "started": "2026-12-02T01:00:00+00:00"})
    yield site
    store.close()


@pytest.fixture
def serve(site):
    servers = []

    def start(web: WebConfig | None = None, ready: bool = True) -> str:
        server = WebServer(f"127.0.0.1:{free_port()}", site, web or WebConfig())
        server.start()
        servers.append(server)
        if ready:
            site.ready.set()
        return server.url

    yield start
    for server in servers:
        server.stop()


def get(url, context=None, user=None, password=None):
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def test_pages_show_every_job(serve):
    url = serve()
    status, body, headers = get(url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'vigil_test_ticks{target="nas"} 3.0' in body
    assert 'vigil_up{kind="counting",target="ups"} 0.0' in body
    assert 'target="ups"} ' not in body.split("vigil_test_ticks", 1)[1], "a failed job has no data series"
    status, body, _ = get(url)
    assert status == 200 and "nas" in body and "timed out after 5s" in body
    document = json.loads(get(url + "status.json")[1])
    assert [(j["name"], j["state"]) for j in document["jobs"]] == [("nas", "ok"), ("ups", "failed")]
    assert get(url + "-/healthy")[0] == 200
    assert get(url + "nope")[0] == 404


def test_ready_only_after_the_first_config_load(serve, site):
    url = serve(ready=False)
    assert get(url + "-/ready")[0] == 503
    site.ready.set()
    assert get(url + "-/ready")[0] == 200


def test_basic_auth_guards_every_path(serve):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    url = serve(WebConfig(basic_auth_users={"prometheus": hashed},
                          http_server_config={"headers": {"X-Frame-Options": "DENY"}}))
    for path in ("metrics", "", "status.json", "-/healthy"):
        status, _, headers = get(url + path)
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="vigil"'
    assert get(url + "metrics", user="prometheus", password="wrong")[0] == 401
    assert get(url + "metrics", user="nobody", password=PASSWORD)[0] == 401
    status, body, headers = get(url + "metrics", user="prometheus", password=PASSWORD)
    assert status == 200 and "vigil_up" in body and headers["X-Frame-Options"] == "DENY"
    assert get(url + "metrics", user="prometheus", password=PASSWORD)[0] == 200  # from the cache


def test_tls_with_client_certificates(serve, tmp_path):
    pki = make_pki(tmp_path / "pki")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
                   f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n")
    url = serve(load_web_config(web))
    assert url.startswith("https://127.0.0.1:")
    client = ssl.create_default_context(cafile=pki.ca)
    client.load_cert_chain(pki.client_cert, pki.client_key)
    assert get(url + "metrics", context=client)[0] == 200
    anonymous = ssl.create_default_context(cafile=pki.ca)
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        get(url + "metrics", context=anonymous)
    with pytest.raises(urllib.error.URLError):  # our CA is not trusted by default
        get(url + "metrics")
    status, body, _ = get(url.replace("https", "http") + "metrics")
    assert status == 400 and f"use {url}" in body


def test_web_config_errors_name_the_line(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  admin: plaintext\ntls_server_config:\n  cert_file: a\n  keyfile: b\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(web)
    errors = [str(issue) for issue in caught.value.issues]
    assert any(e.startswith(f"{web}:2: basic_auth_users.admin: must be a bcrypt hash") for e in errors), errors
    assert f"{web}:5: tls_server_config.keyfile: unknown key `keyfile`; did you mean `key_file`?" in errors
    assert "plaintext" not in "".join(errors)


def test_the_landing_page_has_a_backup_board(site, serve):
    deadline = datetime(2026, 11, 22, 5, tzinfo=UTC).timestamp()
    verdict = Verdict("missed", "no backup <since> 01:00", {"next deadline": deadline}, {"off-site lag": "3h"})
    site.store.publish(JobState("nightly", "backup", 300, label="backup", board="Backups", result=Result(
        "nightly", "backup", True, 1.0, 0.5, verdict=verdict)))
    url = serve()
    page = get(url)[1]
    assert "<h2>Backups</h2>" in page and "no backup &lt;since&gt; 01:00" in page
    (board,) = json.loads(get(url + "status.json")[1])["boards"]["Backups"]
    assert board["status"] == "missed" and board["times"]["next deadline"] == "2026-11-22T05:00:00+00:00"
    assert board["notes"] == {"off-site lag": "3h"}
    assert "<th>Off-site lag</th>" in page  # a column's label starts with a capital


def test_a_label_written_in_capitals_keeps_them_as_a_column(site, serve):
    verdict = Verdict("ok", "", notes={"TLS": "the server still accepts TLS 1.0"})
    site.store.publish(JobState("legacy", "http", 60, board="Services", result=Result(
        "legacy", "http", True, 1.0, 0.5, verdict=verdict)))
    page = get(serve())[1]
    assert "<th>TLS</th>" in page and "Tls" not in page


def test_the_status_page_and_json_never_show_credentials(site, serve):
    """The error as the agent makes it of an exception (agent.collector.describe, which redacts)."""
    failure = RuntimeError("Remote: ssh://backup:hunter2@nas/./repo: refused; GET /c?comp=list&sig=S1GNATURE failed")
    site.store.publish(JobState("borg", "counting", 60, (TICKS,), result=Result(
        "borg", "counting", False, 1.0, 0.5, error=describe(failure))))
    url = serve()
    for page in (get(url)[1], get(url + "status.json")[1]):
        assert "hunter2" not in page and "S1GNATURE" not in page
        assert "ssh://backup:***@nas/./repo" in page and "sig=***" in page


def served_serial(url: str, client: ssl.SSLContext) -> str:
    host, port = url.removeprefix("https://").strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            client.wrap_socket(raw, server_hostname=host) as tls:
        return tls.getpeercert()["serialNumber"]


def openssl_serial(cert) -> str:
    done = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(cert)], capture_output=True,
                          text=True, check=True)
    return done.stdout.strip().removeprefix("serial=")


def web_yml(path, pki, users: dict[str, str]) -> WebConfig:
    lines = [f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n",
             "basic_auth_users:\n", *(f"  {user}: '{hashed}'\n" for user, hashed in users.items())]
    path.write_text("".join(lines))
    return load_web_config(path)


def test_reconfigure_swaps_certificate_and_users_at_once_or_keeps_both(site, tmp_path):
    old_pki, new_pki = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
    client = ssl.create_default_context(cafile=old_pki.ca)
    client.load_verify_locations(cafile=new_pki.ca)
    old_hash = bcrypt.hashpw(b"old password", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(b"new password", bcrypt.gensalt(rounds=4)).decode()
    server = WebServer(f"127.0.0.1:{free_port()}", site, web_yml(tmp_path / "web.yml", old_pki, {"p": old_hash}))
    server.start()
    try:
        url = server.url
        assert get(url + "metrics", client, "p", "old password")[0] == 200
        assert served_serial(url, client) == openssl_serial(old_pki.server_cert)

        server.reconfigure(web_yml(tmp_path / "web.yml", new_pki, {"p": new_hash}))
        assert get(url + "metrics", client, "p", "old password")[0] == 401  # a leaked password is revoked
        assert get(url + "metrics", client, "p", "new password")[0] == 200
        assert served_serial(url, client) == openssl_serial(new_pki.server_cert)

        broken = WebConfig(tls_server_config={"cert_file": tmp_path / "gone.pem", "key_file": new_pki.server_key},
                           basic_auth_users={"p": old_hash})
        with pytest.raises(WebConfigError, match=rf"^tls_server_config.cert_file: cannot read {tmp_path}/gone.pem "
                                                 r"\(No such file or directory\)$"):
            server.reconfigure(broken)
        assert get(url + "metrics", client, "p", "new password")[0] == 200  # neither users nor cert changed
        assert served_serial(url, client) == openssl_serial(new_pki.server_cert)
    finally:
        server.stop()


def test_a_web_config_with_unusable_tls_files_names_the_key_line_and_file(tmp_path):
    pki = make_pki(tmp_path / "pki")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {tmp_path}/nope.key\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(web)
    assert str(caught.value) == (f"{web}:3: tls_server_config.key_file: cannot read {tmp_path}/nope.key "
                                 "(No such file or directory)")
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n")
    with pytest.raises(ConfigError, match=rf"^{web}:2: tls_server_config.cert_file: {pki.server_cert} with "
                                          rf"key_file {pki.client_key} is not a PEM certificate and its private "
                                          r"key \(KEY_VALUES_MISMATCH\)$"):
        load_web_config(web)


class CountedBcrypt:
    """bcrypt.checkpw, counted: each call's hash and the most that ran at once. After `hold()` each
    call waits before the real bcrypt until `release()`, as behind a long one on a slow machine."""

    def __init__(self):
        self.calls: list[bytes] = []
        self.most = 0
        self._running = 0
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._go.set()
        self._real = bcrypt.checkpw

    def checkpw(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls.append(hashed)
            self._running += 1
            self.most = max(self.most, self._running)
        try:
            self._go.wait(30)
            return self._real(password, hashed)
        finally:
            with self._lock:
                self._running -= 1

    def hold(self) -> None:
        self._go.clear()

    def release(self) -> None:
        self._go.set()


@pytest.fixture
def bcrypt_calls(monkeypatch):
    counted = CountedBcrypt()
    monkeypatch.setattr(bcrypt, "checkpw", counted.checkpw)
    yield counted
    counted.release()


def test_failures_are_cached_like_successes_and_unknown_users_cost_the_same(bcrypt_calls):
    calls = bcrypt_calls.calls
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    auth = BasicAuth({"prometheus": hashed})
    assert [auth.check("prometheus", "wrong") for _ in range(20)] == [Login(False)] * 20
    assert len(calls) == 1, "a repeated wrong password costs one bcrypt"
    assert auth.check("nobody", PASSWORD) == auth.check("nobody", PASSWORD) == Login(False)
    assert len(calls) == 2 and calls[1] != hashed.encode() and calls[1][:7] == b"$2b$05$", \
        "an unknown user costs one bcrypt of the same cost, against another hash"
    assert auth.check("prometheus", PASSWORD) == auth.check("prometheus", PASSWORD) == Login(True)
    assert len(calls) == 3


def test_the_cache_is_bounded_and_bcrypt_runs_one_at_a_time(bcrypt_calls, monkeypatch):
    calls = bcrypt_calls.calls
    monkeypatch.setattr(BasicAuth, "CACHE", 4)
    monkeypatch.setattr(webauth, "MAX_FAILURES", 100)  # the lockout apart
    auth = BasicAuth({"p": bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=6)).decode()})
    threads = [threading.Thread(target=auth.check, args=("p", f"guess {n}")) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 8 and bcrypt_calls.most == 1, "a storm of wrong passwords keeps to one core"
    for password in ("a", "b", "c", "d", "e", "e", "b"):
        auth.check("p", password)
    assert len(calls) == 13, "the four most recent are remembered"
    auth.check("p", "a")
    assert len(calls) == 14, "the oldest was forgotten"


def test_wrong_passwords_lock_out_the_user_and_the_address_for_a_window_without_bcrypt(bcrypt_calls):
    """Grafana's brute-force protection: MAX_FAILURES checked wrong passwords lock the user name out
    from every address and the address out for every user, until the first leaves the window.
    Remembered answers are given all the same: a good scraper keeps its access."""
    clock = FakeClock()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuth({USER: hashed, "grafana": hashed}, clock)
    assert auth.check(USER, PASSWORD, "10.0.0.9") == Login(True)
    for n in range(MAX_FAILURES):
        clock.advance(10)
        assert auth.check(USER, f"guess {n}", "10.0.0.1") == Login(False)
    calls = len(bcrypt_calls.calls)
    locked = auth.check(USER, "guess x", "10.0.0.1")
    assert not locked.granted and locked.retry_after == LOCKOUT_WINDOW - 40
    assert auth.check(USER, "guess y", "10.0.0.2").retry_after, "the user, from any address"
    assert auth.check("grafana", PASSWORD, "10.0.0.1").retry_after, "the address, for any user"
    assert auth.check("nobody", "guess", "10.0.0.1").retry_after
    assert auth.check(USER, "guess 0", "10.0.0.1") == Login(False), "a remembered wrong password: a 401"
    assert auth.check(USER, PASSWORD, "10.0.0.1") == Login(True), "remembered good credentials pass"
    assert len(bcrypt_calls.calls) == calls, "no bcrypt while locked out"
    assert auth.check("grafana", PASSWORD, "10.0.0.2") == Login(True)
    clock.advance(LOCKOUT_WINDOW - 40 - 1)
    assert auth.check(USER, "guess z", "10.0.0.3").retry_after == 1
    clock.advance(1)
    assert auth.check(USER, "guess z", "10.0.0.3") == Login(False), "the first failure left the window"
    assert auth.check(USER, "guess w", "10.0.0.3").retry_after == 10, "the next one holds it for 10 s more"


def test_a_reload_keeps_good_scrapers_and_lockouts_but_checks_a_replaced_hash_anew(site, bcrypt_calls):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    server = WebServer(f"127.0.0.1:{free_port()}", site, WebConfig(basic_auth_users={USER: hashed}))
    server.start()
    url, tries = server.url, [f"guess {n}" for n in range(MAX_FAILURES + 1)]
    try:
        assert get(url + "metrics", user=USER, password=PASSWORD)[0] == 200
        assert [get(url + "metrics", user=USER, password=wrong)[0] for wrong in tries] == [401] * MAX_FAILURES + [429]
        calls = len(bcrypt_calls.calls)
        server.reconfigure(WebConfig(basic_auth_users={USER: hashed}))
        assert get(url + "metrics", user=USER, password=PASSWORD)[0] == 200, "the scraper is still known good"
        assert get(url + "metrics", user=USER, password="guess x")[0] == 429, "the lockout holds"
        assert len(bcrypt_calls.calls) == calls
        server.reconfigure(WebConfig(basic_auth_users={USER: bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()}))
        assert get(url + "metrics", user=USER, password=PASSWORD)[0] != 200, "a replaced hash revokes the old password"
    finally:
        server.stop()


def test_a_check_that_cannot_start_before_its_deadline_never_runs_bcrypt(bcrypt_calls):
    auth = BasicAuth({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()})
    bcrypt_calls.hold()  # the first check's bcrypt takes long
    first = threading.Thread(target=auth.check, args=(USER, "guess", "10.0.0.1"))
    first.start()
    wait_until(lambda: len(bcrypt_calls.calls) == 1, 5, "the first check's bcrypt")
    late = auth.check("grafana", "guess", "10.0.0.2", deadline=time.monotonic() + 0.2)
    bcrypt_calls.release()
    first.join()
    assert late == Login(False, BUSY_RETRY, "too many logins waiting for a check")
    assert len(bcrypt_calls.calls) == 1, "no bcrypt for a client whose request is past its deadline"
    assert auth.check("grafana", "guess", "10.0.0.2", deadline=time.monotonic() - 1) == late


def test_the_queue_for_bcrypt_is_bounded_and_the_rest_refused_at_once(bcrypt_calls):
    auth = BasicAuth({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()})
    assert auth.check(USER, PASSWORD) == Login(True)
    bcrypt_calls.hold()
    answers: dict[int, Login] = {}
    threads = [threading.Thread(target=lambda n=n: answers.update({n: auth.check(f"user{n}", "x", f"10.0.1.{n}")}))
               for n in range(1 + MAX_WAITING + 5)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) == 5, 10, "five checks refused while one runs and MAX_WAITING wait")
    assert auth.check(USER, PASSWORD) == Login(True), "remembered credentials wait for nothing"
    bcrypt_calls.release()
    for thread in threads:
        thread.join()
    refused = [login for login in answers.values() if login.retry_after]
    assert len(refused) == 5 and len(bcrypt_calls.calls) == 2 + MAX_WAITING


def test_failed_logins_are_logged_rate_limited_without_the_password(serve, caplog):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    url = serve(WebConfig(basic_auth_users={"prometheus": hashed}))
    caplog.set_level(logging.WARNING, logger="exporters.web")
    assert get(url + "metrics")[0] == 401  # no credentials yet: a challenge, not a failed login
    for _ in range(5):
        assert get(url + "metrics?x=1", user="prometheus", password="Wr0ngPassw0rd")[0] == 401
    assert get(url + "metrics", user="Wr0ngPassw0rd", password="x")[0] == 401
    lines = [r.getMessage() for r in caplog.records if "basic auth failed" in r.getMessage()]
    assert lines == ["basic auth failed client=127.0.0.1 user=prometheus path=/metrics"]
    assert "Wr0ngPassw0rd" not in caplog.text


@pytest.fixture
def guarded(site):
    """An endpoint whose one user has a hash of `vigil web hash-password`'s cost, and its port."""
    server = WebServer(f"127.0.0.1:{free_port()}", site, WebConfig(basic_auth_users={USER: hash_password(PASSWORD)}))
    server.start()
    site.ready.set()
    yield server._httpd.server_address[1]
    server.stop()


def test_a_password_flood_is_locked_out_while_a_scraper_with_good_credentials_is_served(guarded, bcrypt_calls,
                                                                                     fault_report):
    """1,200 requests with random passwords in about a second, then 40 a second, from the scraper's own
    address: after MAX_FAILURES wrong passwords the user and the address are locked out (429, no
    bcrypt), while the scraper, whose credentials were checked before, gets every scrape."""
    scraper = Scraper(guarded, PASSWORD)
    assert scraper.scrape() == 200  # its credentials are known good from now on: one bcrypt
    scraper.start()
    try:
        burst = flood(guarded, 1200)
        steady = flood(guarded, 120, per_second=40)
    finally:
        answers = scraper.stop()
    print(f"\nburst {dict(burst)}, then 40/s {dict(steady)}; the scraper meanwhile {Counter(answers)}; "
          f"bcrypt ran {len(bcrypt_calls.calls)} times")
    fault_report("1,200 basic-auth requests with random passwords in about 1 s, then 40 a second for 3 s",
                 f"locked out after {MAX_FAILURES} wrong passwords (429, no bcrypt); a scraper with good "
                 "credentials served throughout",
                 f"flood answers {dict(burst + steady)}; the scraper {dict(Counter(answers))}; bcrypt ran "
                 f"{len(bcrypt_calls.calls)} times")
    assert set(answers) == {200}, answers
    assert set(burst + steady) <= {"401", "429"} and burst["429"] > 1100 and steady["429"] == 120, (burst, steady)
    assert len(bcrypt_calls.calls) <= 1 + MAX_FAILURES, "no bcrypt once the user and the address are locked out"


def test_a_flood_from_many_addresses_runs_bcrypt_only_for_answers_it_gives(guarded, bcrypt_calls, fault_report):
    """Random user names from 200 addresses defeat the lockout: the bounded queue is what holds. A
    check that cannot start in time is refused at once (429), every bcrypt run ends in an answer
    the client gets, and the scraper is served throughout."""
    scraper = Scraper(guarded, PASSWORD)
    assert scraper.scrape() == 200
    first = len(bcrypt_calls.calls)
    scraper.start()
    try:
        answers = flood(guarded, 1200, sources=[f"127.0.1.{n}" for n in range(1, 201)],
                        request=lambda n: guess(n, user=f"nobody{n}"))
    finally:
        scraped = scraper.stop()
    checked = len(bcrypt_calls.calls) - first
    print(f"\nflood from 200 addresses {dict(answers)}; the scraper {Counter(scraped)}; bcrypt ran {checked} times")
    fault_report("1,200 basic-auth requests in about 1 s from 200 addresses, each with another user name",
                 "bcrypt only for checks that can answer in time, the rest refused at once (429); a scraper "
                 "with good credentials served throughout",
                 f"flood answers {dict(answers)}; the scraper {dict(Counter(scraped))}; bcrypt ran {checked} times")
    assert set(scraped) == {200}, scraped
    assert set(answers) <= {"401", "429"} and answers["429"] > 0, answers
    assert checked == answers["401"], "every bcrypt run answered a client that was still there"


def raw_exchange(port: int, request: bytes) -> bytes:
    """What the server answers on a plain socket, up to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_plain_http_to_the_tls_port_gets_a_400_that_says_https(serve, tmp_path):
    pki = make_pki(tmp_path / "pki")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n")
    url = serve(load_web_config(web))
    port = int(url.rsplit(":", 1)[1].strip("/"))
    answer = raw_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and f"use {url}".encode() in body
    assert int(dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"Content-Length"]) == len(body)
    client = ssl.create_default_context(cafile=pki.ca)
    assert get(url + "metrics", context=client)[0] == 200, "TLS clients are served as before"


def test_a_request_line_it_cannot_serve_gets_a_status_line(serve, fault_report):
    """HTTP/2.0 in a request line: a 505, not a bare body as HTTP/0.9 would get; garbage: a 400."""
    port = int(serve().rsplit(":", 1)[1].strip("/"))
    seen = []
    for line, status in ((b"GET /-/healthy HTTP/2.0", b"505"), (b"GET /-/healthy HTTP/1.x", b"400"),
                         (b"\x16\x03\x01 hello", b"400")):
        answer = raw_exchange(port, line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        seen.append(head.partition(b"\r\n")[0].decode())
        assert head.startswith(b"HTTP/1.1 " + status + b" ") and b"Connection: close" in head, answer
        assert head.count(b"Content-Type: text/plain") == 1 and body.startswith(status), answer
    fault_report("`GET /-/healthy HTTP/2.0`, `HTTP/1.x` and a TLS hello as request lines",
                 "505 / 400 with a status line", "; ".join(seen))


HOSTILE_PATHS = ("/metrics,target=x,kind=ssh", "/metrics\x1b[2J\x1b[31m job=forged", "/runbooks/a\x9b31m")


def test_request_data_forges_no_log_field_and_sends_no_terminal_escape(write_config, tmp_path, fault_report):
    """What a client sends (path, request line) reaches the log only as a quoted value: no field of
    its own in the JSON log, no raw control character in the text log, at any level."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    port = free_port()
    config = write_config(f"listen: 127.0.0.1:{port}\nstate_dir: {{state}}\nweb_config: {tmp_path / 'web.yml'}\n"
                          "targets: []\n", port=port)
    wrong = base64.b64encode(f"{USER}:wrong".encode())
    logs = {}
    for form in ("json", "text"):
        agent = Peer(vigil_argv("--log-level", "debug", "--log-format", form, "run", "-c", str(config)),
                     tmp_path / f"agent-{form}.log", cwd=ROOT)
        try:
            wait_until(lambda: raw_exchange(port, b"GET /-/ready HTTP/1.1\r\nConnection: close\r\n\r\n"), 20,
                       "the agent to answer")
            for path in HOSTILE_PATHS:
                raw_exchange(port, b"GET %s HTTP/1.1\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n"
                             % (path.encode("latin-1"), wrong))
            raw_exchange(port, b"GET /\x1b[31m HTTP/2.0\r\n\r\n")
        finally:
            agent.stop()
        logs[form] = agent.log.read_bytes()
    records = [json.loads(line) for line in logs["json"].splitlines() if line.startswith(b"{")]
    web_records = [record for record in records if record["logger"] == "exporters.web"]
    assert any(record["level"] == "warning" and record.get("path") == HOSTILE_PATHS[0] for record in web_records)
    for record in web_records:
        assert not {"target", "kind", "job"} & set(record), record
    assert not any(byte in logs["text"] for byte in (b"\x1b", b"\xc2\x9b")), "a raw control character"
    assert b"\\x1b[2J" in logs["text"] and b"\\x9b31m" in logs["text"]
    fault_report("paths such as /metrics,target=x,kind=ssh and ESC / C1 bytes in a request, logged at debug",
                 "quoted values: no field of the client's in the JSON log, control characters escaped in the text",
                 f"exporters.web JSON fields {sorted(set().union(*web_records) - {'time', 'level', 'logger'})}; "
                 "no raw control character in the text log")


def test_the_server_header_names_vigil_but_not_python(serve):
    _, _, headers = get(serve() + "-/healthy")
    assert headers["Server"] == f"vigil/{__version__}"


def scrape(url: str, encoding: str | None) -> tuple[bytes, dict]:
    request = urllib.request.Request(url + "metrics", headers={"Accept-Encoding": encoding} if encoding else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read(), response.headers


def steady(body: bytes) -> list[bytes]:
    """The lines that do not move between two scrapes (the process's own CPU and memory do)."""
    return [line for line in body.splitlines() if not line.startswith((b"process_", b"# HELP process_",
                                                                        b"# TYPE process_"))]


def one_gzip_member(packed: bytes) -> bytes:
    """The text of a body that is exactly one gzip member (what every client decodes)."""
    inflater = zlib.decompressobj(31)
    text = inflater.decompress(packed)
    assert inflater.eof and inflater.unused_data == b""
    return text


def test_metrics_are_gzipped_when_asked_and_each_piece_compressed_once(site, serve, monkeypatch):
    calls = []
    real = zlib.compressobj
    monkeypatch.setattr(zlib, "compressobj", lambda *a, **k: calls.append(a) or real(*a, **k))
    for n in range(6):
        site.store.publish(JobState(f"web{n}", "counting", 60, (TICKS,), result=Result(
            f"web{n}", "counting", True, 1.0, 0.2, (Sample(TICKS.name, n),)), last_success=1.2))
    url = serve()
    plain, headers = scrape(url, None)
    assert "Content-Encoding" not in headers and headers["Vary"] == "Accept-Encoding" and calls == []
    packed, headers = scrape(url, "gzip")
    assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(packed)
    assert steady(one_gzip_member(packed)) == steady(plain) and len(packed) < len(plain)
    first = len(calls)
    assert scrape(url, "gzip")[1]["Content-Encoding"] == "gzip"
    assert len(calls) == first + 1, "only the agent's live tail (process CPU, memory) is compressed again"
    assert "Content-Encoding" not in scrape(url, "gzip;q=0, identity")[1]

    site.store.publish(JobState("nas", "counting", 60, (TICKS,), result=Result("nas", "counting", True, 2.0, 0.2,
                                                                        (Sample(TICKS.name, 4),)), last_success=2.2))
    before = len(calls)
    body = one_gzip_member(scrape(url, "deflate, gzip")[0])
    assert b'vigil_test_ticks{target="nas"} 4.0' in body and steady(body) != steady(plain)
    assert 1 < len(calls) - before < first / 2, "the pieces of the job that published, the next ones, the tail"
    assert body.count(b"# TYPE vigil_up ") == 1 and body.count(b"# TYPE vigil_build_info ") == 1
    assert steady(body) == steady(scrape(url, None)[0])


def test_request_counters_are_compressed_again_only_when_they_move(site, serve, monkeypatch):
    """Counters are read on every scrape, but a job whose counters stood still costs no compression."""
    calls = []
    real = zlib.compressobj
    monkeypatch.setattr(zlib, "compressobj", lambda *a, **k: calls.append(a) or real(*a, **k))
    counters = [ApiCounters() for _ in range(6)]
    for n, api in enumerate(counters):
        api.request("snmp", "ok")
        site.store.publish(JobState(f"ups{n}", "counting", 60, (TICKS,), api=api, result=Result(
            f"ups{n}", "counting", True, 1.0, 0.2, (Sample(TICKS.name, n),)), last_success=1.2))
    url = serve()
    first = scrape(url, "gzip")
    compressed = len(calls)
    assert scrape(url, "gzip")[1]["Content-Encoding"] == "gzip"
    assert len(calls) == compressed + 1, "only the agent's live tail (process CPU, memory) is compressed again"

    counters[5].request("snmp", "timeout")
    before = len(calls)
    body = one_gzip_member(scrape(url, "gzip")[0])
    assert b'vigil_api_requests_total{api="snmp",code="timeout",kind="counting",target="ups5"} 1.0' in body
    assert 1 < len(calls) - before < compressed / 2, "the moved counters' pieces, the next ones, the tail"
    assert steady(body) != steady(one_gzip_member(first[0])) and steady(body) == steady(scrape(url, None)[0])


def test_runbooks_are_served_by_alert_name(serve, monkeypatch, fault_report):
    # where install.sh puts them (tests/test_install.py); an installed wheel has no docs/ beside it
    monkeypatch.setattr(web, "RUNBOOK_DIRS", (ROOT / "docs" / "runbooks",))
    url = serve()
    status, body, headers = get(url + "runbooks/VigilDown")
    assert status == 200 and body.startswith("# VigilDown\n") and headers["Content-Type"] == "text/plain; charset=utf-8"
    for wrong in ("runbooks/NoSuchAlert", "runbooks/..%2F..%2Fpyproject", "runbooks/../README", "runbooks/",
                  "runbooks/" + "A" * 256):  # longer than a file name may be (ENAMETOOLONG)
        assert get(url + wrong)[0] == 404, wrong
    fault_report("GET /runbooks/ and 256 letters (a name longer than a file name may be)", "404",
                 f"{get(url + 'runbooks/' + 'A' * 256)[0]}")


def test_the_certificate_expiry_is_read_from_cert_file(tmp_path):
    from agent.net.certificate import certificate_expiry

    pki = make_pki(tmp_path / "pki")
    expected = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(pki.server_cert)],
                              capture_output=True, text=True, check=True).stdout.strip().removeprefix("notAfter=")
    assert certificate_expiry(pki.server_cert) == ssl.cert_time_to_seconds(expected)
    with pytest.raises(ValueError):
        certificate_expiry(pki.server_key)


def test_a_rejected_reload_turns_the_summary_red_until_a_good_one(site, serve):
    url = serve()
    site.info["reload_error"] = "vigil.yaml:3: targets[0].intervl: unknown key `intervl`"
    page = get(url)[1]
    assert "summary bad" in page and "the last reload was rejected" in page and "intervl" in page
    del site.info["reload_error"]
    assert "the last reload was rejected" not in get(url)[1]


def test_the_summary_counts_in_words_and_names_what_was_never_checked(tmp_path):
    from agent.metrics import CERT_EXPIRY
    from exporters.status import landing_html

    store = Store(StateDB(tmp_path / "state"))
    store.publish(JobState("nas", "counting", 60, (TICKS,), result=Result("nas", "counting", True, 1.0, 0.2)))
    first_due = datetime(2026, 11, 20, 5, tzinfo=UTC).timestamp()
    store.publish(JobState("nightly", "backup_verify", 300, label="backup", board="Integrity checks", result=Result(
        "nightly", "backup_verify", True, 1.0, 0.5, verdict=Verdict(
            "not_checked", "primary: never checked, first due 2026-11-20 06:00 CET", {"next due": first_due},
            timezone="Europe/Brussels"))))
    site = Site(store, {"config": "test.yaml"})
    site.facts[CERT_EXPIRY] = time.time() + 20 * 86400
    page = landing_html(site.status())
    store.close()
    assert ("<p class='summary warn' id='summary'>1 target up · 0 of 1 integrity check ok, 1 not checked yet "
            "(nightly) · the agent&#x27;s TLS certificate expires in 20 d</p>") in page
    assert "<span class='badge waiting'>not checked</span>" in page
    assert "primary: never checked, first due 2026-11-20 06:00 CET" in page
    assert ">2026-11-20 06:00 CET</small>" in page, "the time beside its age"
