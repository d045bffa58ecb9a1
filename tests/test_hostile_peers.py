"""Hostile twins of the API fakes, against the real agent code: every answer and every listing is bounded.

The fakes (tests/fakes/graph.py, meraki.py, veeam.py) serve, when asked, what a broken or
malicious server (or whatever answers in its place) can send: a gzip bomb, a body too
large to hold, a body dripped a byte at a time (tests/fakes/hostile.py), and list pages
whose next link names the page itself or never stops naming new ones. The sign-in to
Microsoft 365 (msal) gets the transport's limits too: size, decompressed size, one
deadline for the whole exchange, and no thread left reading after its job. So does the
blocking client (Veeam, a restic REST repository's fingerprint) against a peer that drips
its status line and headers (tests/fakes/hostile.py's HostilePeer).

Memory is measured, not asserted, apart from bounds far below what a run without them
took (`bench/hostile.py` prints the figures).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from agent.collector import Emitter
from bench.procfs import Measured, run_measured
from checks.config import BackupJobConfig
from checks.job import BackupEvaluation
from checks.sources.fingerprints import LayoutUnreadable
from checks.sources.restic import ResticLocation
from checks.sources.veeam import VeeamError, VeeamLocation
from collectors.meraki.api import MerakiError
from tests import collector_kit as kit
from tests.conftest import ROOT, vigil_argv
from tests.fakes.graph import GraphFake
from tests.fakes.hostile import HostilePeer, Streamed, drip, gzip_bomb, huge
from tests.fakes.meraki import make_org
from tests.fakes.veeam import VeeamFake
from tests.fault_watch import Schedule, series
from tests.kinds.m365.fixtures import CLIENT_ID, SECRET, TENANT
from tests.lab.canned_xml import canned_xml
from tests.lab.harness import wait_until
from tests.lab.pki import make_pki

MiB = 1 << 20
DISCOVERY = f"/{TENANT}/v2.0/.well-known/openid-configuration"
TOKEN = f"/{TENANT}/oauth2/v2.0/token"  # noqa: S105 — a URL path, not a password
APPLICATIONS = "/v1.0/applications"
LIMIT = "larger than 33554432 bytes"  # agent/net/http.py's limit of one answer, decompressed
LOOSE_RSS_MIB = 512  # a bounded `vigil once` stays far below this; unbounded, these cases took gigabytes
DRIPPING = 3  # tenants whose authority drips: each run of each left a thread reading, before
FAT = 10_000  # characters of padding in each item of a listing whose bytes are to pass its bound first
MEMORY_CAP = 4 << 30  # the child's address space: a run without bounds fails instead of taking the machine
WHAT_HAPPENED = ("the answer is larger", "did not answer", "no answer", "a next link", "the listing passed")


def once(tmp_path: Path, target: dict, timeout: float = 120) -> tuple[Measured, dict]:
    """`vigil once --target` on one target as a child: its measured run and its job in `--format json`."""
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "targets": [target]}))
    run = run_measured(vigil_argv("once", "-c", str(config), "--target", target["name"], "--format", "json"),
                       timeout, memory_cap=MEMORY_CAP, cwd=ROOT)
    try:
        (job,) = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"no JSON from vigil once (exit {run.returncode}): {run.stderr[-2000:]}")
    return run, job


def said(reason: str) -> str:
    """The part of a reason that says what happened, for the reliability table."""
    starts = [reason.find(words) for words in WHAT_HAPPENED if words in reason]
    return reason[min(starts):][:100] if starts else reason[-100:]


def errors(job: dict) -> str:
    """The run's error, or its failed signals' errors."""
    return job["error"] or "; ".join(f"{s['name']}: {s['error']}" for s in job["signals"] if not s["ok"])


# --- the sign-in (msal) ------------------------------------------------------------------------------

def test_a_gzip_bomb_from_the_authority_is_cut_at_the_size_limit(m365_target, graph_fake, tmp_path, fault_report):
    graph_fake.hostile(DISCOVERY, gzip_bomb(4 << 30))  # 4 MB inflating to 4 GiB
    run, job = once(tmp_path, m365_target("secret"))
    fault_report(fault="m365 authority: gzip bomb (4 MB -> 4 GiB) as the discovery document",
                 expected="refused at 32 MiB decompressed, memory bounded",
                 observed=f"{said(errors(job))} | peak RSS {run.peak_mib:.0f} MiB in {run.seconds:.1f}s")
    assert run.returncode == 1 and not job["ok"], run.stderr[-2000:]
    assert "cannot read the authority" in job["error"] and LIMIT in job["error"], job["error"]
    assert run.peak_mib < LOOSE_RSS_MIB, f"peak RSS {run.peak_mib:.0f} MiB"


@pytest.mark.parametrize("path, what", [(DISCOVERY, "discovery document"), (TOKEN, "token answer")])
def test_an_authority_answer_too_large_is_refused(path, what, m365_target, graph_fake, context, fault_report):
    # the real document after the padding: only a size limit refuses it
    tail = graph_fake.answer("GET", DISCOVERY, {}, b"").body if path == DISCOVERY else b"{}"
    graph_fake.hostile(path, huge(64 * MiB, tail))
    with pytest.raises(Exception, match="authority|token request") as failure:
        kit.collect(m365_target("secret"), context)
    fault_report(fault=f"m365 authority: 64 MiB {what}", expected="refused at 32 MiB",
                 observed=said(str(failure.value)))
    assert LIMIT in str(failure.value), failure.value


def test_a_dripping_authority_holds_no_thread_and_a_healthy_tenant_stays_up(
        m365_target, graph_fake, graph_pki, start_agent, write_config, fault_report):
    with GraphFake(graph_pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET) as dripping:
        document = dripping.answer("GET", DISCOVERY, {}, b"").body
        slow = drip(document)  # 2 bytes/s: every read gets a byte, the document takes minutes
        dripping.hostile(DISCOVERY, slow)
        healthy = m365_target("secret", name="healthy", interval="2s", timeout="1500ms")
        bad = [{**healthy, "name": f"dripping-{n}", "authority": dripping.url, "graph_url": dripping.url,
                "interval": "1s", "timeout": "800ms"} for n in range(DRIPPING)]
        agent = start_agent(write_config(yaml.safe_dump({
            "listen": "127.0.0.1:{port}", "state_dir": "{state}", "targets": [healthy, *bad]})))
        try:
            wait_until(lambda: slow.served >= DRIPPING and series(agent, "vigil_up").get("healthy") == 1, 30,
                       "the healthy tenant up, every dripping one asking the authority")
            threads = _threads(agent.peer.pid)
            schedule = Schedule(("healthy",), 2.0)
            held = []
            end = time.monotonic() + 12  # 4 runs of each dripping tenant (their backoff doubles the interval)
            while time.monotonic() < end:
                schedule.poll(agent)
                held.append(slow.active)
                time.sleep(0.2)
            document = json.loads(agent.get("/status.json")[1])
            threads_after = _threads(agent.peer.pid)
        finally:
            slow.stop()
    reason = next(job["last_error"] for job in document["jobs"] if job["name"] == "dripping-0")
    fault_report(fault=f"m365 authority drips its discovery document (2 bytes/s) to {DRIPPING} tenants",
                 expected="each run ends at its timeout, no thread or connection left; another tenant up",
                 observed=f"{slow.served} runs, connections held at most {max(held)}, threads {threads} -> "
                          f"{threads_after}, healthy down {schedule.down.get('healthy', 0)} polls | {said(reason)}")
    assert max(held) <= DRIPPING, f"connections still read after their run ended: {held}"
    assert schedule.down.get("healthy", 0) == 0, "the healthy tenant went down next to the dripping ones"
    assert len(schedule.runs.get("healthy", {})) >= 4, schedule.runs
    assert "did not answer within" in reason, reason


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


# --- the APIs themselves, through the shared transport (bounded before this issue: guards) ---------------

def _graph(request, answer: Streamed) -> str:
    request.getfixturevalue("graph_fake").hostile("/v1.0/admin/serviceAnnouncement/healthOverviews", answer)
    out = kit.collect(request.getfixturevalue("m365_target")("secret", interval="1m", timeout="3s"),
                      request.getfixturevalue("context"))
    return out.errors.get("service_health", "no error")


def _meraki(request, answer: Streamed) -> str:
    fake = request.getfixturevalue("meraki_fakes")([make_org("549236", "Hostile", networks=2, devices=6)])
    fake.hostile("/organizations", answer)
    with pytest.raises(MerakiError) as failure:
        kit.collect(request.getfixturevalue("meraki_target")(fake, interval="1m", timeout="3s"),
                    request.getfixturevalue("context"))
    return str(failure.value)


def _veeam(request, answer: Streamed) -> str:
    fake, location = request.getfixturevalue("veeam")
    fake.hostile("/api/oauth2/token", answer)
    with pytest.raises(VeeamError) as failure:
        location.backups()
    return str(failure.value)


POLLS = {"Graph": _graph, "Meraki": _meraki, "Veeam": _veeam}  # each: one poll's reason, given a hostile answer


@pytest.mark.parametrize("api", POLLS)
@pytest.mark.parametrize("fault, answer, words", [
    ("gzip bomb (1 MB -> 1 GiB)", lambda: gzip_bomb(1 << 30), LIMIT),
    ("drip (2 bytes/s)", lambda: drip(b"[]" * 500), "within"),
], ids=["gzip-bomb", "drip"])
def test_an_api_answer_that_is_a_bomb_or_a_drip_is_cut_at_its_bound(api, fault, answer, words, request,
                                                                     fault_report):
    hostile = answer()
    try:
        reason = POLLS[api](request, hostile)
        wait_until(lambda: hostile.active == 0, 10, "the client to hang up")
    finally:
        hostile.stop()
    fault_report(fault=f"{api} API: {fault}", expected="the poll fails at the size limit or the timeout",
                 observed=said(reason))
    assert words in reason, reason


# --- listings that do not end ---------------------------------------------------------------------------

def test_a_graph_page_whose_next_link_names_itself_stops_with_that_reason(m365_target, graph_fake, tmp_path,
                                                                            fault_report):
    graph_fake.endless(APPLICATIONS, 24 * MiB, repeat=True)
    run, job = once(tmp_path, m365_target("secret", timeout="20s"))
    app_credentials = next(signal for signal in job["signals"] if signal["name"] == "app_credentials")
    fault_report(fault="Graph: a 24 MiB applications page whose next link names itself",
                 expected="the signal fails: the next links do not end; memory bounded",
                 observed=f"{said(app_credentials['error'])} | peak RSS {run.peak_mib:.0f} MiB in {run.seconds:.1f}s")
    assert job["ok"] and not app_credentials["ok"], errors(job)
    assert "the next links do not end" in app_credentials["error"], app_credentials["error"]
    assert "host is up" not in app_credentials["error"]
    assert run.peak_mib < LOOSE_RSS_MIB, f"peak RSS {run.peak_mib:.0f} MiB"


@pytest.mark.parametrize("path, signal, fat, bound", [
    ("/v1.0/admin/serviceAnnouncement/healthOverviews", "service_health", False, "passed 500,000 items"),
    (APPLICATIONS, "app_credentials", True, "passed 256 MiB"),
], ids=["items", "bytes"])
def test_graph_next_links_that_never_end_stop_at_a_bound_of_the_listing(path, signal, fat, bound, m365_target,
                                                                         graph_fake, context, fault_report):
    if fat:  # apps with long notes (a documented property): the bytes pass their bound before the items do
        graph_fake.applications = [{**app, "notes": "n" * FAT} for app in graph_fake.applications]
    graph_fake.endless(path, 8 * MiB, repeat=False, pages=40)
    out = kit.collect(m365_target("secret", interval="5m", timeout="2m"), context)
    fault_report(fault=f"Graph: {path.rsplit('/', 1)[1]} pages of 8 MiB whose next links never end",
                 expected=f"the signal fails: the listing {bound}", observed=said(out.errors.get(signal, "no error")))
    assert bound in out.errors.get(signal, ""), out.errors
    assert set(out.errors) == {signal}, out.errors


@pytest.mark.parametrize("path, repeat, bound", [
    ("/organizations", True, "the next links do not end"),
    ("/organizations/{org}/networks", False, "passed 256 MiB"),
], ids=["names-itself", "never-ends"])
def test_a_meraki_listing_that_does_not_end_stops_with_that_reason(path, repeat, bound, meraki_fakes, meraki_target,
                                                                   context, fault_report):
    org = make_org("549236", "Endless", networks=2, devices=6)
    if not repeat:  # long notes (a documented field): the bytes pass their bound before the items do
        for network in org.networks:
            network["notes"] = "n" * FAT
    fake = meraki_fakes([org])
    page = (24 if repeat else 8) * MiB
    fake.endless(path, page, repeat=repeat, pages=10 if repeat else 40)
    with pytest.raises(MerakiError) as failure:
        kit.collect(meraki_target(fake, interval="5m", timeout="2m"), context)
    fault_report(fault=f"Meraki: {path} pages of {page >> 20} MiB whose Link next "
                       f"{'names itself' if repeat else 'never ends'}",
                 expected=f"the run fails: {bound}", observed=said(str(failure.value)))
    assert bound in str(failure.value), failure.value
    if repeat:
        assert len([seen for seen in fake.calls() if seen.path == path]) == 2, "stopped at the repeat"


@pytest.fixture
def veeam(tmp_path, context, monkeypatch) -> Iterator[tuple[VeeamFake, VeeamLocation]]:
    pki = make_pki(tmp_path / "veeam-pki")
    with VeeamFake(pki) as fake:
        fake.add_job("Nightly")
        monkeypatch.setenv("VIGIL_TEST_VEEAM_PASSWORD", fake.password)
        config = VeeamLocation.Config.model_validate({
            "kind": "veeam", "url": fake.url, "user": fake.user, "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
            "job": "Nightly", "ca_file": str(pki.ca), "timeout": "3s"})
        yield fake, VeeamLocation(config, context)


def test_a_veeam_listing_whose_total_is_never_reached_stops_at_the_listings_bound(veeam, fault_report):
    fake, location = veeam
    fake.endless("/api/v1/jobs/states", 8 * MiB, pages=40)
    with pytest.raises(Exception, match="jobs/states") as failure:
        location.backups()
    fault_report(fault="Veeam: jobs/states pages of 8 MiB that ignore skip, total a billion",
                 expected="the poll fails: the listing passed 500,000 items", observed=said(str(failure.value)))
    assert "passed 500,000 items" in str(failure.value), failure.value


def test_an_s3_listing_of_restic_snapshots_that_never_ends_stops_at_the_listings_bound(context, monkeypatch,
                                                                                      fault_report):
    keys = "".join(f"<Contents><Key>repo/snapshots/{n:04d}{'k' * FAT * 10}</Key><Size>1</Size></Contents>"
                   for n in range(100))  # 10 MB a page: long keys, so that the bytes pass their bound quickly

    def page(path: str) -> str:  # every page cut short, its next token one more than the one asked for
        after = int(parse_qs(urlsplit(path).query).get("continuation-token", ["0"])[0]) + 1
        return (f"<ListBucketResult><Name>backups</Name><Prefix>repo/snapshots/</Prefix><KeyCount>100</KeyCount>"
                f"<IsTruncated>{'true' if after < 40 else 'false'}</IsTruncated>"
                f"<NextContinuationToken>{after}</NextContinuationToken>{keys}</ListBucketResult>")

    monkeypatch.setenv("VIGIL_TEST_RESTIC", "restic-password")
    with canned_xml(page) as url:
        location = ResticLocation(ResticLocation.Config(
            kind="restic", repository=f"s3:{url}/backups/repo", password="${env:VIGIL_TEST_RESTIC}",
            env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}), context)
        with pytest.raises(LayoutUnreadable) as failure:
            location.fingerprint()
    fault_report(fault="S3: restic's snapshots/ listed in pages of 10 MB whose next token never ends",
                 expected="the fingerprint fails: the listing passed 256 MiB (restic lists instead)",
                 observed=said(str(failure.value)))
    assert "passed 256 MiB" in str(failure.value), failure.value


# --- a peer that drips its status line and headers, under a backup job (the blocking client, SyncApi) -----

DRIPPED_JOB_TIMEOUT = 10.0  # the job's: room for the location's attempts (1 s each) and its retries' waits


def _dripped_location(kind: str, url: str, ca_file: Path, monkeypatch) -> dict:
    monkeypatch.setenv("VIGIL_TEST_SECRET", "a-password")
    common = {"password": "${env:VIGIL_TEST_SECRET}", "ca_file": str(ca_file), "timeout": "1s"}
    if kind == "veeam":
        return {"kind": "veeam", "url": url, "user": "vigil", "job": "Nightly", **common}
    return {"kind": "restic", "repository": f"rest:{url}/repo", **common}


@pytest.mark.parametrize("kind, via", [("veeam", "the location"), ("restic", "the fingerprint (GET snapshots/)")],
                         ids=["veeam", "restic-rest"])
def test_a_peer_that_drips_its_headers_ends_the_job_at_its_timeout_and_leaves_no_reader(
        kind, via, tmp_path, context, monkeypatch, caplog, fault_report):
    """httpx's blocking client bounds each read of the headers, not their whole: a 1 s request waited for them
    as long as they came (35 s here, then the body), in a thread the job abandoned at its own timeout."""
    pki = make_pki(tmp_path / "pki")
    with HostilePeer(pki, drip(b"{}", head=True)) as peer:
        config = BackupJobConfig.model_validate({
            "name": "dripped", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
            "timeout": f"{DRIPPED_JOB_TIMEOUT:g}s", "primary": _dripped_location(kind, peer.url, pki.ca, monkeypatch)})
        evaluation = BackupEvaluation(config, replace(context, timeout=DRIPPED_JOB_TIMEOUT))
        out = Emitter(BackupEvaluation.METRICS, strict=True)
        started = time.monotonic()
        try:
            with caplog.at_level("INFO", logger="checks.sources.listing"):
                evaluation.collect(out, frozenset({"main"}))
            seconds = time.monotonic() - started
            reading = [thread for thread in threading.enumerate() if thread.name == "location primary listing"]
            detail = out.verdict.detail
            assert out.verdict.status == "unreachable", detail
            if kind == "veeam":
                assert f"primary: cannot reach Veeam at {peer.url}: no answer within 1s" in detail, detail
            else:  # the fingerprint fails (logged), then restic lists instead and its own timeout ends it
                assert f"GET {peer.url}/repo/snapshots/: no answer within 1s" in caplog.text, caplog.text
                assert f"restic snapshots timed out after 1s on rest:{peer.url}/repo" in detail, detail
            assert not reading, "the location's call still runs after the evaluation"
            wait_until(lambda: peer.answer.active == 0, 10, "the client to hang up")
        finally:
            evaluation.close()
    fingerprint = next((record.getMessage() for record in caplog.records if "layout not readable" in
                        record.getMessage()), "")
    fault_report(fault=f"{kind} location: a peer that drips its status line and headers (2 bytes/s), "
                       "location timeout 1s",
                 expected=f"{via} fails at its timeout; no thread or connection left reading",
                 observed=f"{said(fingerprint or detail)} | {seconds:.1f}s, {peer.answer.served} requests, "
                          f"none still read, no thread left")
