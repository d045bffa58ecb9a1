"""The probes' rules (deploy/prometheus/rules/probes.yml) as the status page judges them, on what a probe of the
lab's nginx really emits: every certificate of the chain by its position, a refused certificate as TLS broken
(and a service down behind a good handshake not), TLS 1.0 still offered.

tests/test_conditions.py checks that the agent judges each rule as Prometheus does; here the series are
real, so a rule that reads a series the probes do not emit (or emit otherwise) is caught.
"""

from __future__ import annotations

import time

from agent.conditions import judge
from collectors.probes.collector import HttpProbe
from collectors.probes.metrics import CONDITIONS
from tests import collector_kit as kit
from tests.lab import nginx as web


def concerns(context, url: str, **options) -> list[tuple[str, str, str]]:
    """(alert, severity, words) of every rule of kind: http that holds after one probe of `url`."""
    out = kit.collect({"name": "web", "kind": "http", "url": url, **options}, context)
    assert not out.errors
    series = [(sample.name, {**sample.labels, "target": "web"}, sample.value) for sample in out.samples()]
    return [(c.alert, c.severity, c.says) for c in judge(HttpProbe.CONDITIONS, series, time.time())]


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


def test_each_kinds_rules_are_the_familys():
    assert set(HttpProbe.CONDITIONS) <= set(CONDITIONS)
