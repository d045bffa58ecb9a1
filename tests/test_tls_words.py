"""Every client that verifies a server's certificate says what is wrong with it, not "set ca_file".

The certificate is the one thing wrong: each server has a certificate from the CA that the
target's ca_file names, but expired (or for another host). The HTTP transport's wording of
every fault is tested in tests/test_net_http.py; here each other client, against a real
peer where there is one (upsd), else the tests' own HTTPS server (the handshake fails
before any request is read).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from checks.sources import azure_blob
from checks.sources.azure_blob import AzureBlobLocation
from checks.sources.filelike import LocationError
from checks.sources.s3 import S3Location
from collectors.vmware.session import VMwareError
from tests import collector_kit as kit
from tests.conftest import ROOT, vigil_argv
from tests.lab.http_peer import http_peer
from tests.lab.nut import STATES, nut
from tests.lab.pki import faulty_server, make_pki

EXPIRED = "its TLS certificate has expired; renew the certificate on the server"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("tls-words-pki"))


@pytest.fixture
def expired(pki, tmp_path):
    """The tests' HTTPS server with an expired certificate from `pki`'s CA."""
    with http_peer(faulty_server(pki, tmp_path / "expired", "expired")) as server:
        yield server


def test_vmware(expired, pki, context, monkeypatch, fault_report):
    monkeypatch.setenv("VIGIL_TEST_VCENTER_PASSWORD", "x")
    target = {"name": "vc", "kind": "vmware", "host": "127.0.0.1", "port": expired.server_port, "user": "monitor",
              "password": "${env:VIGIL_TEST_VCENTER_PASSWORD}", "ca_file": str(pki.ca)}
    with pytest.raises(VMwareError) as failure:
        kit.collect(target, context)
    assert str(failure.value) == f"vCenter 127.0.0.1:{expired.server_port}: {EXPIRED}"
    fault_report("vCenter's certificate expired (its CA in ca_file)", "the reason says expired, not ca_file",
                 str(failure.value))


def test_s3(expired, pki, context, monkeypatch):
    monkeypatch.setenv("TEST_S3_ID", "id")
    monkeypatch.setenv("TEST_S3_SECRET", "secret")
    location = S3Location(S3Location.Config(
        kind="s3", bucket="backups", endpoint_url=expired.url, region="us-east-1", access_key_id="${env:TEST_S3_ID}",
        secret_access_key="${env:TEST_S3_SECRET}", ca_file=str(pki.ca), timeout="5s"), context)
    with pytest.raises(LocationError) as failure:
        location.backups()
    assert str(failure.value) == f"s3 bucket backups at {expired.url}: {EXPIRED}"


def test_azure_blob(expired, pki, context, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", "sv=2024-01-01&sig=x")
    monkeypatch.setattr(azure_blob, "RETRIES", 0)
    url = f"{expired.url}/devstoreaccount1"
    location = AzureBlobLocation(AzureBlobLocation.Config(
        kind="azure_blob", account_url=url, container="backups", credential="${env:TEST_AZURE_CREDENTIAL}",
        ca_file=str(pki.ca), timeout="5s"), context)
    with pytest.raises(LocationError) as failure:
        location.backups()
    assert str(failure.value) == f"azure_blob container backups at {url}: {EXPIRED}"


def test_the_test_alert(expired, pki):
    done = subprocess.run(vigil_argv("alert", "test", "--alertmanager", expired.url, "--ca-file", str(pki.ca)),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode != 0 and f"cannot reach Alertmanager at {expired.url}: {EXPIRED}" in done.stderr, \
        done.stderr


@pytest.mark.parametrize("fault", ["expired", "wrong host"])
def test_upsd_starttls(fault, pki, context, fault_report):
    directory = Path(tempfile.mkdtemp(prefix="vigil-tls-words-nut-"))
    try:
        with nut(directory / "nut", {"online": STATES["online"]}, faulty_server(pki, directory / "pki", fault)) as lab:
            with pytest.raises(Exception) as failure:  # noqa: PT011 (the message is the point)
                kit.collect(lab.target("online", ca_file=str(pki.ca)), context)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    words = {"expired": EXPIRED, "wrong host": "its TLS certificate is not for 127.0.0.1; connect by a name the "
                                               "certificate lists, or give the server a certificate for this name"}
    assert str(failure.value).endswith(f"TLS failed: {words[fault]}"), failure.value
    fault_report(f"upsd's STARTTLS certificate {fault} (its CA in ca_file)", "the reason names the fault and its fix",
                 str(failure.value))
