"""The probes' rules (deploy/prometheus/rules/probes.yml) as the status page judges them, on what probes of the
lab's peers really emit: every certificate of the chain by its position, a refused certificate as TLS broken
(after STARTTLS too; a service down behind a good handshake not), TLS 1.0 still offered.

tests/test_conditions.py checks that the agent judges each rule as Prometheus does; here the series are
real, so a rule that reads a series the probes do not emit (or emit otherwise) is caught.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiomysql

from agent import registry
from agent.collector import run_once
from agent.conditions import judge
from collectors.probes.metrics import CONDITIONS
from tests import collector_kit as kit
from tests.kinds.probes.fixtures import db_target
from tests.lab import nginx as web
from tests.lab.harness import wait_until
from tests.lab.pki import make_pki


def concerns(context, url: str, **options) -> list[tuple[str, str, str]]:
    """(alert, severity, words) of every rule of kind: http that holds after one probe of `url`."""
    return judged(context, {"name": "web", "kind": "http", "url": url, **options})


def judged(context, target: dict) -> list[tuple[str, str, str]]:
    """(alert, severity, words) of every rule of the target's kind that holds after one probe of it."""
    out = kit.collect(target, context)
    assert not out.errors
    return holding(out, target)


def holding(out, target: dict) -> list[tuple[str, str, str]]:
    """(alert, severity, words) of every rule of the target's kind that holds on the probe's series."""
    series = [(sample.name, {**sample.labels, "target": target["name"]}, sample.value) for sample in out.samples()]
    conditions = registry.job_class(target["kind"]).CONDITIONS
    return [(c.alert, c.severity, c.says) for c in judge(conditions, series, time.time())]


def test_a_good_chain_raises_nothing(nginx, context):
    assert concerns(context, nginx.url("good"), ca_file=str(nginx.ca)) == []


def test_an_intermediate_that_expires_first_is_named_by_its_position(nginx, context):
    assert concerns(context, nginx.url("intermediate expires first"), ca_file=str(nginx.ca)) == [
        ("ProbeCertificateExpiring", "warning", f"intermediate certificate expires in {web.SHORT_INTERMEDIATE_DAYS} d")]


def test_an_expired_leaf_is_tls_broken_and_critical(nginx, context):
    assert concerns(context, nginx.url("expired"), ca_file=str(nginx.ca)) == [
        ("ProbeCertificateExpiring", "critical", "leaf certificate expired 24 h ago"),
        ("ProbeTlsBroken", "critical", "certificate refused")]


def test_each_refused_certificate_is_tls_broken(nginx, context):
    for case in ("wrong host", "no intermediate", "self-signed"):
        found = concerns(context, nginx.url(case), ca_file=str(nginx.ca))
        assert ("ProbeTlsBroken", "critical", "certificate refused") in found, case


def test_a_service_down_behind_a_good_handshake_is_not_tls_broken(nginx, context):
    assert concerns(context, nginx.url("good", "/error"), ca_file=str(nginx.ca)) == []


def test_tls_1_0_still_accepted_is_a_warning(nginx, context):
    assert concerns(context, nginx.url("tls1.0"), ca_file=str(nginx.ca)) == [
        ("ProbeTlsOldVersion", "warning", "accepts TLS older than 1.2")]


def test_a_certificate_refused_after_starttls_is_tls_broken_too(smtp_lab, context, tmp_path):
    target = {"name": "smtp", "kind": "tcp", "host": "127.0.0.1", "port": smtp_lab.port, "starttls": "smtp",
              "ca_file": str(make_pki(tmp_path / "another").ca)}
    assert ("ProbeTlsBroken", "critical", "certificate refused") in judged(context, target)


def test_a_good_starttls_handshake_is_judged_on_its_dates_only(tcp_conformance, context):
    found = judged(context, tcp_conformance)
    assert [(alert, severity) for alert, severity, _ in found] == [("ProbeCertificateExpiring", "critical")]
    assert found[0][2].startswith("leaf certificate expires in ")  # the lab's certificates last 2 days


def test_a_replica_ten_minutes_behind_is_lagging(maria, context):
    with maria.lagging():  # the replica applies each event an hour after it was written, ...
        # ... and this one was written ten minutes ago, by its own timestamp
        maria.primary.sql("SET TIMESTAMP = UNIX_TIMESTAMP() - 600; "
                          "INSERT INTO lab.lab_rows (note) VALUES ('ten minutes old')")
        wait_until(lambda: int(maria.replica.replica_status()["Seconds_Behind_Master"] or 0) >= 600, 10, "a lag")
        found = judged(context, db_target("mysql", maria, maria.replica))
    assert [(alert, severity) for alert, severity, _ in found if alert != "ProbeCertificateExpiring"] == [
        ("ProbeDatabaseReplicaLagging", "warning")]
    assert re.fullmatch(r"1[01] min behind its primary", next(says for alert, _, says in found
                                                              if alert == "ProbeDatabaseReplicaLagging"))


def test_a_replica_in_step_with_its_primary_is_not_lagging(maria, context):
    found = judged(context, db_target("mysql", maria, maria.replica))
    assert "ProbeDatabaseReplicaLagging" not in {alert for alert, _, _ in found}


def test_connections_near_the_maximum(maria, context):
    target = db_target("mysql", maria, maria.primary)
    before = kit.values(kit.collect(target, context), "vigil_db_connections")[()]  # the probe's own among them

    async def with_more(count: int):
        others = [await aiomysql.connect(host="127.0.0.1", port=maria.primary.port, user=maria.user,
                                         password=maria.password) for _ in range(count)]
        try:
            return await run_once(kit.build(target, context), strict=True)
        finally:
            for other in others:
                other.close()

    out = asyncio.run(with_more(19 - int(before)))  # 19 of the lab's 20
    assert kit.values(out, "vigil_db_connections")[()] == 19
    assert ("ProbeDatabaseConnectionsNearMax", "warning", "95% of its connections in use") in holding(out, target)


def test_each_kinds_rules_are_the_familys():
    for kind in ("http", "tcp", "dns", "icmp", "postgres", "mysql"):
        assert set(registry.job_class(kind).CONDITIONS) <= set(CONDITIONS), kind
