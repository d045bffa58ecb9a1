"""The probes' trust stores are shared (collectors/probes/tls.py client_context): every target that verifies
with the same store holds one context, not its own copy of the system's bundle (about 0.8 MB each:
bench/probes.py), and a renewed ca_file is still read by the next target that opens, without a restart.
"""

from __future__ import annotations

import shutil

from collectors.probes import tls
from collectors.probes.config import TlsOptions
from tests import collector_kit as kit
from tests.lab.pki import make_pki


def probe(context, nginx, ca_file) -> tuple[str, str]:
    out = kit.collect({"name": "web", "kind": "http", "url": nginx.url("good"), "ca_file": str(ca_file)}, context)
    assert not out.errors
    return out.verdict.status, out.verdict.detail


def test_targets_with_the_same_trust_store_share_one_context(tmp_path, nginx):
    assert tls.client_context(None) is tls.client_context(TlsOptions())
    copy = tmp_path / "ca.pem"
    shutil.copy(nginx.ca, copy)
    assert tls.client_context(TlsOptions(ca_file=copy)) is tls.client_context(TlsOptions(ca_file=copy))
    assert tls.client_context(TlsOptions(ca_file=copy)) is not tls.client_context(TlsOptions(ca_file=nginx.ca))


def test_a_renewed_ca_file_is_read_by_the_next_target_that_opens(tmp_path, nginx, context):
    ca_file = tmp_path / "ca.pem"
    shutil.copy(make_pki(tmp_path / "another").ca, ca_file)  # not the CA that signed nginx's chain
    status, detail = probe(context, nginx, ca_file)
    assert status == "down" and "not trusted" in detail
    shutil.copy(nginx.ca, ca_file)  # the right CA, in the same file
    assert probe(context, nginx, ca_file) == ("ok", "")
