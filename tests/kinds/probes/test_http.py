"""`kind: http` against the lab's nginx (tests/lab/nginx.py): each check, each certificate case and each
failure mode gives its verdict with a reason in words, and the run itself stays good (`vigil_up 1`).

A probe that finds the service down is a good run: kit.collect raises when the run fails, so
each `probe()` here is also the assertion that it did not.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl

import pytest
from cryptography import x509

from agent.collector import Emitter
from collectors.probes import tls
from collectors.probes.collector import HttpProbe
from tests import collector_kit as kit
from tests.lab import nginx as web
from tests.lab.blackhole import UNRESOLVABLE, syn_dropped, tcp_blackhole
from tests.lab.forward_proxy import forward_proxy
from tests.lab.harness import free_port
from tests.lab.http_peer import http_peer
from tests.lab.pki import faulty_server, make_pki

NOT_AFTER = "vigil_tls_certificate_not_after_timestamp_seconds"


def probe(context, url: str, **options):
    """One probe of `url`: (the verdict's status, its detail), and the run's samples."""
    out = kit.collect({"name": "web", "kind": "http", "url": url, **options}, context)
    assert not out.errors
    return (out.verdict.status, out.verdict.detail), out


def success(out) -> float:
    return kit.values(out, "vigil_probe_success")[()]


def leaf_date(path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def leaf_dates(out) -> list[float]:
    return [value for labels, value in kit.values(out, NOT_AFTER).items() if ("position", "leaf") in labels]


# --- what a good answer gives ---------------------------------------------------------------

def test_plain_http_answers_with_its_status_and_each_phase_timed(nginx, context):
    verdict, out = probe(context, nginx.url())
    assert verdict == ("ok", "") and success(out) == 1
    assert kit.values(out, "vigil_http_status_code") == {(): 200}
    phases = {labels[0][1] for labels in kit.values(out, "vigil_probe_duration_seconds")}
    assert phases == {"resolve", "connect", "processing", "transfer", "total"}
    assert kit.values(out, NOT_AFTER) == {}  # no TLS, no certificate


def test_https_reports_the_served_chain_the_versions_and_the_tls_phase(nginx, context):
    verdict, out = probe(context, nginx.url("good"), ca_file=str(nginx.ca))
    assert verdict == ("ok", "")
    leaf, intermediate = nginx.served["good"]
    positions = {dict(labels)["position"]: value for labels, value in kit.values(out, NOT_AFTER).items()}
    assert positions == {"leaf": leaf_date(leaf), "intermediate": leaf_date(intermediate)}
    assert kit.values(out, "vigil_tls_negotiated_version") == {(): 1.3}
    assert kit.values(out, "vigil_tls_oldest_version_accepted") == {(): 1.2}
    assert ("phase", "tls") in {labels[0] for labels in kit.values(out, "vigil_probe_duration_seconds")}
    kit.assert_conforms(out, HttpProbe)


def test_an_intermediate_expiring_before_its_leaf_is_reported_as_the_intermediate(nginx, context):
    _, out = probe(context, nginx.url("intermediate expires first"), ca_file=str(nginx.ca))
    leaf, intermediate = nginx.served["intermediate expires first"]
    positions = {dict(labels)["position"]: value for labels, value in kit.values(out, NOT_AFTER).items()}
    assert positions == {"leaf": leaf_date(leaf), "intermediate": leaf_date(intermediate)}
    assert positions["intermediate"] < positions["leaf"]


# --- every certificate case: named, and the chain still reported ------------------------------

CERTIFICATES = {
    "expired": r"^its TLS certificate has expired \(leaf CN=vigil test server\\, expired, on \d{4}-\d\d-\d\d "
               r"\d\d:\d\d UTC\); renew the certificate on the server$",
    "wrong host": r"^its TLS certificate is not for 127\.0\.0\.1; connect by a name the certificate lists, or give "
                  r"the server a certificate for this name$",
    "no intermediate": r"^the server does not send the intermediate certificate that issued its TLS certificate "
                       r"\(CN=vigil test intermediate CA\\, 365 days\), and this host does not trust that issuer; "
                       r"configure the server to send its full chain \(leaf, then intermediates\), or set ca_file: "
                       r"to that issuer if it is your own CA$",
    "self-signed": r"^its TLS certificate is self-signed, and not trusted; set ca_file: to that certificate, or give "
                   r"the server one from your CA$",
}


@pytest.mark.parametrize("case", CERTIFICATES)
def test_each_certificate_fault_is_named_and_the_leaf_still_shows_its_date(nginx, context, case):
    (status, reason), out = probe(context, nginx.url(case), ca_file=str(nginx.ca))
    assert status == "down" and success(out) == 0
    assert re.search(CERTIFICATES[case], reason), reason
    assert leaf_dates(out) == [leaf_date(nginx.served[case][0])]


def test_a_certificate_not_valid_yet_is_named(context, tmp_path):
    pki = make_pki(tmp_path / "pki")
    with http_peer(faulty_server(pki, tmp_path / "early", "not yet valid")) as server:
        (status, reason), out = probe(context, f"{server.url}/error", ca_file=str(pki.ca))
    assert (status, reason) == ("down", "its TLS certificate is not valid yet; check the clocks of this host and "
                                        "of the server")
    assert len(leaf_dates(out)) == 1


def test_a_ca_this_host_does_not_trust_is_named_with_the_ca(nginx, context):
    (status, reason), _ = probe(context, nginx.url("good"))  # the system's store: not the lab's CA
    assert (status, reason) == ("down", "its TLS certificate is not trusted: the chain the server sends was issued "
                                        "by CN=vigil test CA, a CA this host does not trust; set ca_file: to that CA")


def test_server_name_checks_the_certificate_for_that_name(nginx, context):
    (status, reason), _ = probe(context, nginx.url("good"), ca_file=str(nginx.ca), server_name="erp.example.org")
    assert (status, reason) == ("down", "its TLS certificate is not for erp.example.org; connect by a name the "
                                        "certificate lists, or give the server a certificate for this name")
    verdict, _ = probe(context, nginx.url("good"), ca_file=str(nginx.ca), server_name="localhost")
    assert verdict == ("ok", "")


def test_tls_1_0_still_offered_is_a_note_not_a_failure(nginx, context):
    verdict, out = probe(context, nginx.url("tls1.0"), ca_file=str(nginx.ca))
    assert verdict == ("ok", "") and success(out) == 1
    assert out.verdict.notes == {"TLS": "the server still accepts TLS 1.0, which is broken and deprecated: allow only "
                                        "TLS 1.2 and 1.3 on it"}
    assert kit.values(out, "vigil_tls_oldest_version_accepted") == {(): 1.0}


def test_the_oldest_version_is_not_checked_again_on_every_probe(nginx, context, monkeypatch):
    """One instance probes twice: the versions are tried on the first probe only (RECHECK is an hour),
    and the second still shows the finding."""
    tried: list[object] = []
    unverified = tls.unverified_context
    monkeypatch.setattr(tls, "unverified_context", lambda version=None: tried.append(version) or unverified(version))
    collector = kit.build({"name": "web", "kind": "http", "url": nginx.url("good"), "ca_file": str(nginx.ca)},
                          context)
    collector.open()

    def run() -> Emitter:
        out = Emitter(HttpProbe.METRICS, strict=True)
        asyncio.run(collector.collect(out, frozenset({"main"})))
        return out

    run()
    assert tried == [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2]
    second = run()
    assert len(tried) == 3
    assert kit.values(second, "vigil_tls_oldest_version_accepted") == {(): 1.2}


# --- the service down, in each way ------------------------------------------------------------

def test_a_host_name_that_does_not_resolve_says_so(context):
    verdict, out = probe(context, f"http://{UNRESOLVABLE}/health")
    assert verdict == ("down", f"the host name {UNRESOLVABLE} does not resolve (Name or service not known); "
                               "check the name in the URL, and DNS")
    assert success(out) == 0


def test_a_refused_connection_says_so(context):
    verdict, _ = probe(context, f"http://127.0.0.1:{free_port()}/health")
    assert verdict == ("down", "connection refused; check the host and port, and that the service runs")


def test_a_slow_answer_is_a_timeout_named_with_its_phase(nginx, context):
    verdict, out = probe(context, nginx.url(path="/slow?seconds=5"), timeout="2s")
    assert verdict == ("down", "no answer within 1.8s, during processing")
    assert success(out) == 0


def test_a_silent_tls_server_times_out_during_tls_and_holds_no_socket_after(context):
    probe(context, f"http://127.0.0.1:{free_port()}/")  # what the first probe opens for good (the state database)
    before = len(os.listdir("/proc/self/fd"))
    with tcp_blackhole() as hole:
        verdict, _ = probe(context, f"https://127.0.0.1:{hole.port}/", timeout="1s")
        assert verdict == ("down", "no answer within 0.9s, during tls")
        assert len(os.listdir("/proc/self/fd")) == before + 1 + hole.accepted  # the hole's own sockets only


def test_a_host_that_drops_the_connection_times_out_during_connect(context):
    with syn_dropped() as port:
        verdict, _ = probe(context, f"http://127.0.0.1:{port}/", timeout="1s")
    assert verdict == ("down", "no answer within 0.9s, during connect")


def test_plain_http_on_a_tls_port_is_named(nginx, context):
    verdict, _ = probe(context, f"https://127.0.0.1:{nginx.http_port}/health")
    assert verdict == ("down", "the TLS handshake failed (WRONG_VERSION_NUMBER); check that the port speaks HTTPS")


# --- what the answer must be ------------------------------------------------------------------

def test_a_wrong_status_says_which_and_what_was_expected(nginx, context):
    assert probe(context, nginx.url(path="/error"))[0] == ("down", "HTTP 500 Internal Server Error, expected 2xx")
    assert probe(context, nginx.url(path="/nothing"), expect_status=[200, 204])[0] == (
        "down", "HTTP 404 Not Found, expected 200 or 204")
    verdict, out = probe(context, nginx.url(path="/error"), expect_status=[500])
    assert verdict == ("ok", "") and kit.values(out, "vigil_http_status_code") == {(): 500}


def test_the_body_must_match_and_must_not_match(nginx, context):
    assert probe(context, nginx.url(), body_matches=r'"status":\s*"ok"')[0] == ("ok", "")
    assert probe(context, nginx.url(), body_matches="maintenance")[0] == (
        "down", "the body does not match 'maintenance'")
    assert probe(context, nginx.url(), body_not_matches=r"queue.{4}up")[0] == (
        "down", """the body matches 'queue.{4}up' ('queue": "up'), which it must not""")


def test_a_json_field_must_equal(nginx, context):
    assert probe(context, nginx.url(), json_equals={"checks.database": "up", "version": "4.2.1"})[0] == ("ok", "")
    assert probe(context, nginx.url(), json_equals={"checks.queue": "down"})[0] == (
        "down", 'the JSON field checks.queue is "up", expected "down"')
    assert probe(context, nginx.url(), json_equals={"checks.cache": "up"})[0] == (
        "down", "the JSON has no field checks.cache")
    assert probe(context, nginx.url(path="/error"), expect_status=[500], json_equals={"status": "ok"})[0] == (
        "down", "the body is not JSON, and json_equals expects it")


def test_a_body_longer_than_max_body_cannot_be_matched(nginx, context):
    assert probe(context, nginx.url(), max_body=16)[0] == ("ok", "")  # nothing to match: read as far as needed
    assert probe(context, nginx.url(), max_body=16, body_matches="ok")[0] == (
        "down", "the body is longer than 16 bytes, the most max_body lets vigil read to match it; raise max_body or "
                "probe a smaller page")


def test_redirects_followed_or_not(nginx, context):
    verdict, out = probe(context, nginx.url(path="/redirect"), json_equals={"status": "ok"})
    assert verdict == ("ok", "") and kit.values(out, "vigil_http_status_code") == {(): 200}
    assert probe(context, nginx.url(path="/redirect"), follow_redirects=False)[0] == (
        "down", "HTTP 302 Moved Temporarily, expected 2xx")
    assert probe(context, nginx.url(path="/redirect"), follow_redirects=False, expect_status=[302])[0] == ("ok", "")


def test_a_redirect_loop_ends_with_its_reason(nginx, context):
    assert probe(context, nginx.url(path="/loop"))[0] == (
        "down", f"more than 10 redirects; the last to {nginx.url(path='/loop')}")


def test_basic_and_bearer_auth_by_secret_reference(nginx, context, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_WEB_PASSWORD", web.PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_WEB_TOKEN", web.TOKEN)
    monkeypatch.setenv("VIGIL_TEST_WEB_AUTHORIZATION", f"Bearer {web.TOKEN}")
    assert probe(context, nginx.url(path="/auth"))[0] == ("down", "HTTP 401 Unauthorized, expected 2xx")
    basic = {"user": web.USER, "password": "${env:VIGIL_TEST_WEB_PASSWORD}"}
    assert probe(context, nginx.url(path="/auth"), basic_auth=basic)[0] == ("ok", "")
    assert probe(context, nginx.url(path="/bearer"), bearer_token="${env:VIGIL_TEST_WEB_TOKEN}")[0] == ("ok", "")
    assert probe(context, nginx.url(path="/bearer"),
                 headers={"Authorization": "${env:VIGIL_TEST_WEB_AUTHORIZATION}"})[0] == ("ok", "")


def test_the_authorization_is_not_sent_on_after_a_redirect_to_another_host(context, tmp_path, monkeypatch):
    """The peer's /redirect leads to 127.0.0.1: asked as localhost, that is another host."""
    monkeypatch.setenv("VIGIL_TEST_WEB_TOKEN", web.TOKEN)
    pki = make_pki(tmp_path / "pki")
    with http_peer(pki) as server:
        verdict, _ = probe(context, f"https://localhost:{server.server_port}/redirect", ca_file=str(pki.ca),
                           bearer_token="${env:VIGIL_TEST_WEB_TOKEN}")
        (_, first, asked), (_, second, then) = server.seen[-2:]
    assert verdict == ("ok", "")
    sent = [{name.lower(): value for name, value in headers.items()}.get("authorization") for headers in (asked, then)]
    assert (first, second, sent) == ("/redirect", "/echo", [f"Bearer {web.TOKEN}", None])


def test_the_method_and_headers_are_sent(context, tmp_path):
    pki = make_pki(tmp_path / "pki")
    with http_peer(pki) as server:
        verdict, _ = probe(context, f"{server.url}/ok", ca_file=str(pki.ca), method="POST",
                           headers={"X-Probe": "vigil"}, expect_status=[200, 404])
        method, path, headers = server.seen[-1]
    assert verdict == ("ok", "")
    assert (method, path, headers.get("X-Probe")) == ("POST", "/ok", "vigil")


def test_a_proxy_carries_every_connection_of_a_probe(nginx, context):
    """The request, and for https the handshakes of the TLS checks too: the chain read again when refused, and
    the oldest version (TLS 1.0, 1.1 refused, 1.2 accepted)."""
    with forward_proxy() as proxy:
        assert probe(context, nginx.url(), proxy=proxy.url)[0] == ("ok", "")
        verdict, out = probe(context, nginx.url("good"), ca_file=str(nginx.ca), proxy=proxy.url)
        (status, reason), refused = probe(context, nginx.url("expired"), ca_file=str(nginx.ca), proxy=proxy.url)
        seen = list(proxy.seen)
    assert verdict == ("ok", "") and leaf_dates(out) == [leaf_date(nginx.served["good"][0])]
    assert kit.values(out, "vigil_tls_oldest_version_accepted") == {(): 1.2}
    assert status == "down" and reason.startswith("its TLS certificate has expired")
    assert leaf_dates(refused) == [leaf_date(nginx.served["expired"][0])]
    assert seen == [f"GET {nginx.url()} HTTP/1.1", *[f"CONNECT 127.0.0.1:{nginx.ports['good']} HTTP/1.1"] * 4,
                    *[f"CONNECT 127.0.0.1:{nginx.ports['expired']} HTTP/1.1"] * 5]


def test_ip_version_picks_the_family_or_fails_without_fallback(nginx, context):
    url = f"http://localhost:{nginx.http_port}/health"
    assert probe(context, url, ip_version="ipv4", ip_fallback=False)[0] == ("ok", "")
    assert probe(context, url, ip_version="ipv6")[0] == ("ok", "")  # localhost has no IPv6 address here: falls back
    assert probe(context, url, ip_version="ipv6", ip_fallback=False)[0] == (
        "down", "the host name localhost has no ipv6 address; set ip_fallback: true to use the other family")


def test_the_example_config_web_probe_is_valid_once_enabled():
    """The commented http target of deploy/vigil.example.yaml, enabled as its comment says."""
    import yaml

    from agent.config import AgentConfig
    from tests.conftest import ROOT

    lines = (ROOT / "deploy" / "vigil.example.yaml").read_text().splitlines()
    block = []
    for line in lines[lines.index("  # - name: erp-web"):]:
        if not line.startswith("  # "):
            break
        block.append(line.replace("  # ", "  ", 1))
    targets = AgentConfig.model_validate({"targets": yaml.safe_load("\n".join(block))}).targets
    assert [(t.kind, t.name, str(t.url)) for t in targets] == [("http", "erp-web", "https://erp.example.org/health")]
