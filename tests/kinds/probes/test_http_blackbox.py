"""vigil's http probe and blackbox_exporter (Debian's prometheus-blackbox-exporter) on the same nginx
targets: the same success verdicts, and the same leaf not-after dates where blackbox_exporter has one.

Where they differ, vigil says more, and the tests say so: blackbox_exporter's only date is the
earliest of the chain (the intermediate's, where that expires first), and a certificate it
refuses leaves it without any date, while vigil reports every certificate by position, refused
or not.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from tests import collector_kit as kit
from tests.lab.blackbox import blackbox

NOT_AFTER = "vigil_tls_certificate_not_after_timestamp_seconds"
TARGETS = {  # name -> (nginx case or None for plain HTTP, path)
    "http": (None, "/health"),
    "http error": (None, "/error"),
    **{case: (case, "/health") for case in ("good", "expired", "wrong host", "no intermediate", "self-signed",
                                            "intermediate expires first", "tls1.0")},
}


@pytest.fixture(scope="module")
def exporter(nginx, tmp_path_factory):
    module = {"prober": "http", "timeout": "5s", "http": {"tls_config": {"ca_file": str(nginx.ca)}}}
    with blackbox(tmp_path_factory.mktemp("blackbox"), {"http_lab": module}) as running:
        yield running


def not_after(path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def by_position(out) -> dict[str, float]:
    return {dict(labels)["position"]: value for labels, value in kit.values(out, NOT_AFTER).items()}


@pytest.mark.parametrize("name", TARGETS)
def test_the_same_verdict_and_leaf_date_as_blackbox_exporter(nginx, exporter, context, name):
    case, path = TARGETS[name]
    url = nginx.url(case, path)
    theirs = exporter.probe(url, "http_lab")
    ours = kit.collect({"name": "web", "kind": "http", "url": url, "ca_file": str(nginx.ca)}, context)
    assert kit.values(ours, "vigil_probe_success")[()] == theirs["probe_success"]
    assert kit.values(ours, "vigil_http_status_code").get((), 0) == theirs["probe_http_status_code"]
    dates = by_position(ours)
    if case is None:
        assert dates == {} and "probe_ssl_earliest_cert_expiry" not in theirs
    elif theirs["probe_success"]:
        leaf, *rest = nginx.served[case]
        assert dates["leaf"] == not_after(leaf)
        assert theirs["probe_ssl_earliest_cert_expiry"] == int(min(dates.values()))
        if case != "intermediate expires first":
            assert theirs["probe_ssl_earliest_cert_expiry"] == int(dates["leaf"])  # the same leaf date
    else:  # refused: blackbox_exporter has no date at all; vigil has the leaf's
        assert "probe_ssl_earliest_cert_expiry" not in theirs
        assert dates["leaf"] == not_after(nginx.served[case][0])


def test_where_the_intermediate_expires_first_blackbox_exporter_shows_only_its_date(nginx, exporter, context):
    url = nginx.url("intermediate expires first")
    theirs = exporter.probe(url, "http_lab")
    dates = by_position(kit.collect({"name": "web", "kind": "http", "url": url, "ca_file": str(nginx.ca)}, context))
    leaf, intermediate = nginx.served["intermediate expires first"]
    assert theirs["probe_ssl_earliest_cert_expiry"] == int(not_after(intermediate)) == int(dates["intermediate"])
    assert dates["leaf"] == not_after(leaf) > dates["intermediate"]
