"""The endpoint: TLS and basic auth from a web-config.yml, pages, health and readiness."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime

import bcrypt
import pytest

from agent.config import ConfigError
from agent.model import JobState, Result, Sample, Verdict
from agent.statedb import StateDB
from agent.store import Store
from exporters.web import Site, WebServer
from exporters.webconfig import WebConfig, load_web_config
from tests.fake_collectors import TICKS
from tests.lab.harness import free_port
from tests.lab.pki import make_pki

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
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        get(url.replace("https", "http") + "metrics")


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
