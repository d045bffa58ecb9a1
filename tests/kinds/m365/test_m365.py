"""kind: m365 against the Graph and token contract fake (tests/fakes/graph.py), msal included."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import sys
from dataclasses import replace

import httpx
import pytest
from pydantic import ValidationError

from agent.collector import Emitter, run_once
from agent.config import AgentConfig
from agent.ratelimit import RateLimits
from collectors.m365.collector import M365Collector
from tests import collector_kit as kit
from tests.clocks import FakeClock
from tests.conftest import ROOT
from tests.fakes.graph import ENTITIES, LISTS
from tests.kinds.m365.fixtures import CLIENT_ID, SECRET

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the fake clock's start
DAY = 86400


@pytest.fixture
def fake_time(context):
    """The context on a clock that moves only when slept on: retries and backoff cost no real time."""
    clock = FakeClock(NOW)
    return replace(context, clock=clock, rate_limits=RateLimits(clock))


def samples(out: Emitter, name: str) -> dict[tuple, float]:
    return kit.values(out, name)


def one(out: Emitter, name: str, **labels: str) -> float:
    return samples(out, name)[tuple(sorted(labels.items()))]


def twice(target: dict, context, between=lambda: None) -> tuple[Emitter, Emitter]:
    """Two collections by one instance (one session, one token cache), as the agent runs a job.

    Each call is its own event loop, so it gets its own rate buckets (an asyncio lock is bound to one loop).
    """
    collector = kit.build(target, replace(context, rate_limits=RateLimits(context.clock)))

    async def run() -> tuple[Emitter, Emitter]:
        await collector.open()
        try:
            first = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
            await collector.collect(first, frozenset(collector.signals()))
            between()
            second = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
            await collector.collect(second, frozenset(collector.signals()))
            return first, second
        finally:
            await collector.close()

    return asyncio.run(run())


def test_the_conformance_target_shows_every_family_with_the_tenants_figures(m365_conformance, context, graph_fake):
    out = kit.collect(m365_conformance, context)
    kit.assert_conforms(out, M365Collector)
    status = samples(out, "vigil_m365_service_status")
    teams = {dict(key)["status"]: value for key, value in status.items() if dict(key)["service"] == "Microsoft Teams"}
    assert sum(teams.values()) == 1 and teams["serviceDegradation"] == 1
    exchange = {dict(k)["status"]: v for k, v in status.items() if dict(k)["service"] == "Exchange Online"}
    assert exchange["serviceOperational"] == 1, "PascalCase `ServiceOperational` of the doc example"
    assert one(out, "vigil_m365_service_issues", service="Microsoft Teams", classification="incident") == 1
    assert one(out, "vigil_m365_service_issues", service="Exchange Online", classification="incident") == 0, \
        "a resolved issue is not open"
    assert one(out, "vigil_m365_directory_sync_enabled") == 1
    assert one(out, "vigil_m365_directory_last_sync_timestamp_seconds") == 1796173200  # 2026-12-02T01:00:00Z
    assert one(out, "vigil_m365_license_units", sku="ENTERPRISEPREMIUM", state="enabled") == 25
    assert one(out, "vigil_m365_license_units", sku="CRMSTANDARD", state="suspended") == 25
    assert one(out, "vigil_m365_license_consumed_units", sku="CRMSTANDARD") == 14
    assert one(out, "vigil_m365_secure_score") == 387 and one(out, "vigil_m365_secure_score_max") == 697
    assert one(out, "vigil_m365_devices", compliance="noncompliant") == 7
    assert one(out, "vigil_m365_devices", compliance="inGracePeriod") == 2
    assert one(out, "vigil_m365_mailboxes") == 2, "the deleted mailbox is left out"
    assert one(out, "vigil_m365_mailboxes_over_quota", quota="issue_warning") == 1
    assert one(out, "vigil_m365_mailboxes_over_quota", quota="prohibit_send") == 0
    assert one(out, "vigil_m365_sharepoint_sites_near_quota") == 1
    assert set(samples(out, "vigil_m365_permission_missing").values()) == {0}
    assert len(samples(out, "vigil_m365_permission_missing")) == 7


def test_graph_is_read_with_the_documented_options_and_every_page(m365_conformance, context, graph_fake):
    graph_fake.issues = [*graph_fake.issues, *(issue for issue in graph_fake.issues if not issue["isResolved"])] * 2
    out = kit.collect(m365_conformance, context)
    assert not out.errors
    health = graph_fake.graph_requests("/v1.0/admin/serviceAnnouncement/healthOverviews")
    assert len(health) == 2, "4 services at 2 a page"
    assert health[0][2] == {"$select": "service,status"} and "$skiptoken" in health[1][2]
    (apps,) = graph_fake.graph_requests("/v1.0/applications")
    assert apps[2]["$top"] == "999" and "passwordCredentials" in apps[2]["$select"]
    (scores,) = graph_fake.graph_requests("/v1.0/security/secureScores")
    assert scores[2] == {"$top": "1"}, "secureScores documents $count $filter $skip $top: no $select"
    (issues,) = graph_fake.graph_requests("/v1.0/admin/serviceAnnouncement/issues")
    assert "$top" not in issues[2], "issues set their page size with Prefer: odata.maxpagesize"
    assert sum(not issue["isResolved"] for issue in graph_fake.issues) > graph_fake.page_size, \
        "one page only because the Prefer header asked for up to 1000"
    for _, path, query, _ in graph_fake.graph_requests():
        endpoint = LISTS.get(path) or ENTITIES.get(path)
        documented = endpoint.params if endpoint else frozenset()  # reports take none
        assert set(query) - {"$skiptoken"} <= documented, (path, query)
    downloads = [r for r in graph_fake.requests if r[1].startswith("/download/")]
    assert len(downloads) == 2 and not any(had_auth for *_, had_auth in downloads), \
        "report downloads go without the Authorization header"


def graph_token(graph_fake, tls: ssl.SSLContext) -> str:
    """An access token from the fake, asked for as any client would."""
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default"}
    return httpx.post(graph_fake.token_endpoint, data=form, verify=tls).json()["access_token"]


@pytest.mark.parametrize("path, query, code", [
    ("/v1.0/security/secureScores", {"$top": "1", "$select": "currentScore"}, "BadRequest"),
    ("/v1.0/admin/serviceAnnouncement/issues", {"$top": "1000"}, "BadRequest"),
    ("/v1.0/organization", {"$top": "1"}, "Request_UnsupportedQuery"),
    ("/v1.0/subscribedSkus", {"$filter": "isResolved eq false"}, "Request_UnsupportedQuery"),
    ("/v1.0/reports/getMailboxUsageDetail(period='D7')", {"$format": "text/csv"}, "BadRequest"),
])
def test_the_fake_refuses_a_query_option_the_v1_page_does_not_document(graph_fake, graph_pki, path, query, code):
    tls = ssl.create_default_context(cafile=graph_pki.ca)
    token = graph_token(graph_fake, tls)
    response = httpx.get(graph_fake.url + path, params=query, headers={"Authorization": f"Bearer {token}"},
                         verify=tls, follow_redirects=False)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_the_issues_page_size_is_the_prefer_header(graph_fake, graph_pki):
    tls = ssl.create_default_context(cafile=graph_pki.ca)
    token = graph_token(graph_fake, tls)

    def page(prefer: str) -> dict:
        return httpx.get(graph_fake.url + "/v1.0/admin/serviceAnnouncement/issues", verify=tls,
                         headers={"Authorization": f"Bearer {token}", "Prefer": prefer}).json()

    graph_fake.issues = graph_fake.issues * 3
    assert len(page("")["value"]) == graph_fake.page_size and "@odata.nextLink" in page("")
    whole = page("odata.maxpagesize=1000")
    assert len(whole["value"]) == len(graph_fake.issues) > graph_fake.page_size and "@odata.nextLink" not in whole


def test_the_client_secret_works_and_the_token_is_reused_until_graph_says_it_expired(m365_target, context,
                                                                                       graph_fake):
    twice(m365_target("secret"), context)
    assert graph_fake.token_requests == ["secret"], "one token for both runs: msal's cache"

    graph_fake.token_requests.clear()
    first, second = twice(m365_target("secret"), context, graph_fake.expire_tokens)
    assert not first.errors and not second.errors
    assert graph_fake.token_requests == ["secret", "secret"], "a 401 drops the cached token and gets a new one"
    assert context.api.requests()[("healthOverviews", "401")] >= 1
    assert context.api.requests()[("token", "200")] == 3


def test_the_certificate_assertion_is_checked(m365_target, context, graph_fake, graph_pki):
    out = kit.collect(m365_target(), context)
    assert not out.errors and graph_fake.token_requests == ["assertion"]

    graph_fake.certificate = graph_pki.client_cert.read_bytes()  # another certificate is registered
    with pytest.raises(Exception, match=r"refused the token \(invalid_client: AADSTS700027") as failure:
        kit.collect(m365_target(), context)
    assert "m365 tenant" in str(failure.value) and "BEGIN" not in str(failure.value)


def test_a_wrong_secret_fails_the_run_without_showing_it(m365_target, context, graph_fake):
    graph_fake.client_secret = "another secret"
    with pytest.raises(Exception, match="invalid_client: AADSTS7000215") as failure:
        kit.collect(m365_target("secret"), context)
    assert SECRET not in str(failure.value) and CLIENT_ID in str(failure.value)


def test_a_missing_permission_fails_its_signal_only_with_a_metric_and_a_log_line(m365_target, context, graph_fake,
                                                                                 caplog):
    graph_fake.denied = {"Application.Read.All"}
    with caplog.at_level(logging.WARNING, "collectors.m365"):
        out = kit.collect(m365_target(), context)
    assert set(out.errors) == {"app_credentials"}
    assert "Application.Read.All" in out.errors["app_credentials"]
    assert one(out, "vigil_m365_permission_missing", signal="app_credentials", permission="Application.Read.All") == 1
    assert one(out, "vigil_m365_permission_missing", signal="licenses", permission="Organization.Read.All") == 0
    assert samples(out, "vigil_m365_license_units") and not samples(out, "vigil_m365_app_credential_expiry_"
                                                                         "timestamp_seconds")
    (line,) = [r.getMessage() for r in caplog.records if "permission missing" in r.getMessage()]
    assert "signal=app_credentials" in line and "grant the application permission Application.Read.All" in line


@pytest.mark.parametrize("status, retry_after", [(429, 1), (429, None), (503, 2)],
                         ids=["429-retry-after", "429-backoff", "503-retry-after"])
def test_throttling_is_waited_out(m365_target, fake_time, graph_fake, status, retry_after):
    graph_fake.throttle_next("/v1.0/subscribedSkus", count=2, retry_after=retry_after, status=status)
    out = kit.collect(m365_target(), fake_time)
    assert not out.errors
    assert fake_time.api.requests()[("subscribedSkus", str(status))] == 2
    assert fake_time.api.requests()[("subscribedSkus", "200")] == 1
    if retry_after:
        assert fake_time.clock.monotonic() >= 2 * retry_after


def test_malformed_json_fails_its_signal(m365_target, context, graph_fake):
    graph_fake.malformed_next("/v1.0/organization")
    out = kit.collect(m365_target(), context)
    assert set(out.errors) == {"directory_sync"} and "malformed JSON" in out.errors["directory_sync"]


def test_enums_are_matched_whatever_their_case_and_an_unknown_one_is_other(m365_target, context, graph_fake):
    graph_fake.health = [{"service": "Exchange Online", "status": "SERVICEINTERRUPTION", "id": "Exchange"},
                         {"service": "Microsoft Intune", "status": "somethingNew", "id": "Intune"}]
    graph_fake.issues = [{**graph_fake.issues[0], "isResolved": False, "classification": "ADVISORY"}]
    out = kit.collect(m365_target(), context)
    assert one(out, "vigil_m365_service_status", service="Exchange Online", status="serviceInterruption") == 1
    assert one(out, "vigil_m365_service_status", service="Microsoft Intune", status="other") == 1
    assert one(out, "vigil_m365_service_issues", service="Exchange Online", classification="advisory") == 1


def test_the_compliance_summary_is_read_bare_or_wrapped(m365_target, context, graph_fake):
    graph_fake.wrap_summary = True
    out = kit.collect(m365_target(), context)
    assert one(out, "vigil_m365_devices", compliance="compliant") == 4


def test_credential_expiry_is_the_earliest_still_valid_or_the_last_expired(m365_target, fake_time, graph_fake):
    app = graph_fake.applications[0]
    app["passwordCredentials"] = [{"endDateTime": "2027-01-01T00:00:00Z"},  # expired: replaced already
                                  {"endDateTime": "2027-02-01T00:00:00Z"}, {"endDateTime": "2027-06-01T00:00:00Z"}]
    app["keyCredentials"] = [{"endDateTime": "2026-01-01T00:00:00Z"}, {"endDateTime": "2027-01-10T00:00:00Z"}]
    graph_fake.applications.append({"appId": CLIENT_ID, "displayName": "vigil", "keyCredentials": [
        {"endDateTime": "2027-03-01T00:00:00.1234567+01:00"}], "passwordCredentials": []})
    out = kit.collect(m365_target(), fake_time)
    expiry = samples(out, "vigil_m365_app_credential_expiry_timestamp_seconds")
    assert expiry == {(("app", "Payroll connector"), ("type", "secret")): 1801440000.0,  # 2027-02-01
                      (("app", "Payroll connector"), ("type", "certificate")): 1799539200.0,  # 2027-01-10, expired
                      (("app", "vigil"), ("type", "certificate")): 1803855600.123456}
    assert ("Intranet SSO" not in str(expiry)), "an app without credentials has nothing to expire"

    soon = kit.collect(m365_target(credentials_within="30d"), fake_time)
    assert set(samples(soon, "vigil_m365_app_credential_expiry_timestamp_seconds").values()) == \
        {1801440000.0, 1799539200.0}, "within 30 days, and the expired one"

    only = kit.collect(m365_target(applications=["Payroll connector"]), fake_time)
    assert {dict(key)["app"] for key in samples(only, "vigil_m365_app_credential_expiry_timestamp_seconds")} == \
        {"Payroll connector", "vigil"}, "the listed app, and vigil's own"


def test_the_targets_ca_file_wins_over_the_environment(m365_target, context, graph_fake, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, "/etc/ssl/certs/ca-certificates.crt")
    assert not kit.collect(m365_target(), context).errors
    target = m365_target()
    del target["ca_file"]
    with pytest.raises(Exception, match=r"cannot read the authority .*ca_file"):
        kit.collect(target, context)
    with pytest.raises(Exception, match=r"cannot use ca_file /nonexistent/ca.pem"):
        kit.collect({**target, "ca_file": "/nonexistent/ca.pem"}, context)


def test_signals_follow_the_config(m365_target):
    config = AgentConfig.model_validate({"targets": [m365_target(skip=["secure_score"],
                                                                 intervals={"licenses": "1h"})]}).targets[0]
    signals = M365Collector(config, None).signals()
    assert "secure_score" not in signals and "usage_reports" not in signals
    assert signals["licenses"].every == 3600 and signals["service_health"].every is None
    assert signals["app_credentials"].every == 3600


@pytest.mark.parametrize("change, problem", [
    ({"client_secret": "inline"}, "must be a secret reference"),
    ({"client_certificate": None}, "exactly one of client_secret and client_certificate"),
    ({"skip": ["licences"]}, "licenses"),
])
def test_config_errors(m365_target, change, problem):
    target = {key: value for key, value in {**m365_target(), **change}.items() if value is not None}
    with pytest.raises(ValidationError, match=problem):
        AgentConfig.model_validate({"targets": [target]})


def test_a_config_without_m365_never_imports_msal():
    code = ("import sys, agent.config, agent.registry; "
            "agent.config.AgentConfig.model_validate({'targets': [{'name': 'me', 'kind': 'host'}]}); "
            "assert 'msal' not in sys.modules and 'collectors.m365' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_run_once_closes_after_a_failed_open(m365_target, context, graph_fake):
    target = m365_target(authority=graph_fake.url.replace("127.0.0.1", "localhost") + "/nowhere")
    collector = kit.build(target, context)
    with pytest.raises(Exception, match="cannot read the authority"):
        asyncio.run(run_once(collector, strict=True))


def test_a_token_within_5_minutes_of_its_expiry_is_never_sent(m365_target, context, graph_fake):
    graph_fake.token_lifetime = 240  # msal renews a token 5 minutes before it expires: here, always
    first, second = twice(m365_target("secret"), context)
    assert not first.errors and not second.errors
    graph_calls = sum(n for (api, _), n in context.api.requests().items() if api not in ("token", "authority"))
    assert len(graph_fake.token_requests) == graph_calls + 2, "a new token for every Graph call and each run's start"
    assert not any(code == "401" for _, code in context.api.requests())


def test_the_key_file_may_name_the_key_by_its_path(m365_target, context, graph_fake, app_certificate, tmp_path):
    (tmp_path / "key-path").write_text(str(app_certificate[1]))
    target = m365_target(client_certificate={"cert_file": str(app_certificate[0]),
                                             "key_file": f"${{file:{tmp_path / 'key-path'}}}"})
    assert not kit.collect(target, context).errors and graph_fake.token_requests == ["assertion"]


def test_a_next_link_off_the_graph_host_is_refused(m365_target, context, graph_fake):
    collector = kit.build(m365_target("secret"), context)

    async def run() -> Emitter:
        await collector.open()
        try:
            graph_fake.url = graph_fake.url.replace("127.0.0.1", "localhost")  # next links now name another host
            out = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
            await collector.collect(out, frozenset(collector.signals()))
            return out
        finally:
            await collector.close()

    out = asyncio.run(run())
    assert "leaves" in out.errors["service_health"] and "token" in out.errors["service_health"]
    assert not any(path.startswith("/v1.0/") and "$skiptoken" in query for _, path, query, _ in graph_fake.requests)


def test_vigil_once_runs_the_kind_end_to_end(m365_target, graph_fake, tmp_path):
    import yaml

    from tests.conftest import vigil_argv

    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "targets": [m365_target()]}))

    def once() -> subprocess.CompletedProcess:
        return subprocess.run(vigil_argv("once", "-c", str(config), "--format", "prometheus"), capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    done = once()
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'vigil_up{kind="m365",target="m365"} 1' in done.stdout
    assert 'vigil_m365_secure_score{target="m365"} 387' in done.stdout

    graph_fake.denied = {"SecurityEvents.Read.All"}
    done = once()
    assert done.returncode == 1, "a failed signal makes the run partial"
    assert 'vigil_up{kind="m365",target="m365"} 1' in done.stdout
    assert 'vigil_m365_license_consumed_units{sku="CRMSTANDARD",target="m365"} 14' in done.stdout
    assert "vigil_m365_secure_score{" not in done.stdout, "the refused signal's samples are left out"
    assert ('vigil_m365_permission_missing{permission="SecurityEvents.Read.All",signal="secure_score",'
            'target="m365"} 1') in done.stdout
    assert "permission missing" in done.stderr and "SecurityEvents.Read.All" in done.stderr
