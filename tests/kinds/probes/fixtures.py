"""The probe kinds' fixtures: their lab peers (tests/lab/: nginx, dnsmasq, PostgreSQL, ...) and each kind's
conformance target."""

from __future__ import annotations

import pytest

from tests.lab.nginx import nginx as run_nginx

# --- http and tls (tests/kinds/probes/test_http.py, test_tls.py) ---


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    """The lab's nginx: plain HTTP and one HTTPS server per certificate case (tests/lab/nginx.py)."""
    with run_nginx(tmp_path_factory.mktemp("nginx")) as lab:
        yield lab


@pytest.fixture
def http_conformance(nginx) -> dict:
    """HTTPS with a good chain: the status, every certificate, both versions."""
    return {"name": "web", "kind": "http", "url": nginx.url("good"), "ca_file": str(nginx.ca)}
