"""The m365 kind's fixtures: the Graph and token fake with the test CA, the app's certificate, targets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.graph import GraphFake
from tests.lab.pki import PKI, make_pki

TENANT = "7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11"
CLIENT_ID = "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SECRET = "fake~client~secret"


@pytest.fixture(scope="session")
def graph_pki(tmp_path_factory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("graph-pki"))


@pytest.fixture(scope="session")
def app_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """The app registration's self-signed certificate and RSA key (msal signs the assertion with RS256)."""
    directory = tmp_path_factory.mktemp("m365-app")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vigil m365 test app")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    (directory / "app.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "app.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "app.pem", directory / "app.key"


def busy_tenant(fake: GraphFake) -> None:
    """A hybrid tenant with a degraded service, an open incident, mailboxes and sites near quota."""
    fake.health = [*fake.health, {"service": "Microsoft Teams", "status": "serviceDegradation", "id": "MicrosoftTeams"}]
    fake.issues = [*fake.issues, {**fake.issues[0], "id": "TM123456", "service": "Microsoft Teams",
                                  "classification": "incident", "status": "ServiceDegradation", "isResolved": False}]
    fake.organization[0].update(onPremisesSyncEnabled=True, onPremisesLastSyncDateTime="2026-12-02T01:00:00Z")
    gib = 1 << 30
    fake.mailboxes = [
        {"User Principal Name": "a@contoso.com", "Is Deleted": "False", "Storage Used (Byte)": str(10 * gib),
         "Issue Warning Quota (Byte)": str(49 * gib), "Prohibit Send Quota (Byte)": str(50 * gib),
         "Prohibit Send/Receive Quota (Byte)": str(50 * gib)},
        {"User Principal Name": "b@contoso.com", "Is Deleted": "False", "Storage Used (Byte)": str(49 * gib + 1),
         "Issue Warning Quota (Byte)": str(49 * gib), "Prohibit Send Quota (Byte)": str(50 * gib),
         "Prohibit Send/Receive Quota (Byte)": str(50 * gib)},
        {"User Principal Name": "gone@contoso.com", "Is Deleted": "True", "Storage Used (Byte)": str(60 * gib),
         "Issue Warning Quota (Byte)": str(49 * gib), "Prohibit Send Quota (Byte)": str(50 * gib),
         "Prohibit Send/Receive Quota (Byte)": str(50 * gib)},
    ]
    fake.sites = [
        {"Site URL": "https://contoso.sharepoint.com/sites/a", "Is Deleted": "False",
         "Storage Used (Byte)": str(95 * gib), "Storage Allocated (Byte)": str(100 * gib)},
        {"Site URL": "https://contoso.sharepoint.com/sites/b", "Is Deleted": "False",
         "Storage Used (Byte)": str(5 * gib), "Storage Allocated (Byte)": str(100 * gib)},
    ]


@pytest.fixture
def graph_fake(graph_pki, app_certificate) -> Iterator[GraphFake]:
    with GraphFake(graph_pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET,
                   certificate=app_certificate[0].read_bytes(), page_size=2) as fake:
        busy_tenant(fake)
        yield fake


@pytest.fixture
def m365_target(graph_fake, graph_pki, app_certificate, tmp_path) -> Callable[..., dict]:
    """A target mapping for the fake; `credential="secret"` uses the client secret instead of the certificate."""
    secret = tmp_path / "m365-secret"
    secret.write_text(SECRET + "\n")

    def target(credential: str = "certificate", **extra: object) -> dict:
        mapping = {"name": "m365", "kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID,
                   "authority": graph_fake.url, "graph_url": graph_fake.url, "ca_file": str(graph_pki.ca)}
        if credential == "secret":
            mapping["client_secret"] = f"${{file:{secret}}}"
        else:
            mapping["client_certificate"] = {"cert_file": str(app_certificate[0]),
                                             "key_file": f"${{file:{app_certificate[1]}}}"}
        return {**mapping, **extra}

    return target


@pytest.fixture
def m365_conformance(m365_target) -> dict:
    """A hybrid tenant with every signal granted, usage reports on: every family shows."""
    return m365_target(usage_reports=True)
