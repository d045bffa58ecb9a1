"""The azure_blob location against a real Azurite over TLS: listing, Content-MD5, credentials and errors."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from checks.sources import azure_blob
from checks.sources.azure_blob import AzureBlobLocation
from checks.sources.filelike import LocationError
from tests.lab.azurite import Azurite, azurite
from tests.lab.canned_xml import canned_xml
from tests.lab.harness import free_port, wait_until
from tests.lab.pki import make_pki


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Azurite:
    directory = tmp_path_factory.mktemp("azurite")
    with azurite(directory, make_pki(directory / "pki")) as running:
        yield running


@pytest.fixture
def container(server):
    """A new container: a ContainerClient with the account key, for uploads."""
    client = server.service().get_container_client(f"backups-{uuid.uuid4().hex[:12]}")
    client.create_container()
    return client


@pytest.fixture
def location(server, container, context, monkeypatch):
    """An AzureBlobLocation on the test container; its credential comes from ${env:TEST_AZURE_CREDENTIAL}."""
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", server.account_key)

    def location(**overrides) -> AzureBlobLocation:
        config = {"kind": "azure_blob", "account_url": server.account_url, "container": container.container_name,
                  "credential": "${env:TEST_AZURE_CREDENTIAL}", "ca_file": server.ca_file, "timeout": "10s",
                  **overrides}
        return AzureBlobLocation(AzureBlobLocation.Config(**config), context)

    return location


def upload(container, name: str, data: bytes = b"dump") -> float:
    """Upload a blob in one request; its Last-Modified as Azurite recorded it."""
    return container.get_blob_client(name).upload_blob(data, overwrite=True)["last_modified"].timestamp()


def sas(server: Azurite, container, key: str | None = None) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(server.account_name, container.container_name, key or server.account_key,
                                  permission=ContainerSasPermissions(read=True, list=True),
                                  expiry=datetime.now(UTC) + timedelta(hours=1))


def test_lists_blobs_under_the_prefix_newest_first(container, location):
    # Azurite cannot backdate: db-b goes up a second before db-a, so time order and name order differ
    first = upload(container, "nightly/db-b.sql.gz", b"b" * 20)
    wait_until(lambda: time.time() >= first + 1, 3, "the next second")
    second = upload(container, "nightly/db-a.sql.gz", b"a" * 10)
    for name in ("nightly/db-a.sql.gz.sha256", "nightly/db-c.sql.gz.part", "nightly/notes.txt",
                 "weekly/db-w.sql.gz", "nightly-old/db-x.sql.gz"):
        upload(container, name)

    backups = location(prefix="nightly/", pattern="db-*").backups()

    assert [(b.id, b.name, b.size_bytes, b.file_count) for b in backups] == [
        ("db-a.sql.gz", "db-a.sql.gz", 10, 1), ("db-b.sql.gz", "db-b.sql.gz", 20, 1)]
    assert [b.completed_at for b in backups] == [second, first]
    assert [b.id for b in location(prefix="nightly/db-a").backups()] == ["db-a.sql.gz"]  # the folder's names


def test_content_md5_is_the_checksum_when_the_store_has_one(container, location):
    from azure.storage.blob import BlobBlock

    upload(container, "single.tar", b"one request")
    blocks = container.get_blob_client("blocks.tar")
    for number, data in enumerate((b"first block", b"second block")):
        block_id = base64.b64encode(f"block-{number}".encode()).decode()
        blocks.stage_block(block_id, data)
    blocks.commit_block_list([BlobBlock(base64.b64encode(f"block-{n}".encode()).decode()) for n in range(2)])

    checksums = {b.id: b.checksum for b in location().backups()}

    assert checksums == {"single.tar": f"md5:{hashlib.md5(b'one request').hexdigest()}", "blocks.tar": ""}


def test_every_page_of_a_long_listing_is_read(container, location, monkeypatch):
    monkeypatch.setattr(azure_blob, "PAGE_SIZE", 2)
    for number in range(5):
        upload(container, f"db-{number}.sql")

    assert sorted(b.id for b in location().backups()) == [f"db-{number}.sql" for number in range(5)]


def test_a_missing_container_is_a_clear_error(server, location):
    with pytest.raises(LocationError, match=f"^azure_blob container nothing-here at {server.account_url} "
                                            "does not exist$"):
        location(container="nothing-here").backups()


def test_a_wrong_account_key_is_refused_without_showing_it(location, monkeypatch):
    wrong_key = base64.b64encode(b"not the account key" * 3).decode()
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", wrong_key)

    with pytest.raises(LocationError, match=r"access denied \(AuthorizationFailure\); check the credential") as error:
        location().backups()
    assert wrong_key not in str(error.value)


def test_an_account_key_that_is_not_base64_is_a_clear_error(location, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", "not*base64*at*all")
    unusable = r"^azure_blob container \S+ at \S+: the credential cannot sign a request \(Incorrect padding\); set "
    with pytest.raises(LocationError, match=unusable + "`credential` to the account key") as error:
        location().backups()
    assert "AttributeError" not in str(error.value) and "not*base64" not in str(error.value)


def test_a_sas_token_works_and_a_forged_one_is_refused(server, container, location, monkeypatch):
    upload(container, "db-1.sql")
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", sas(server, container))
    assert [b.id for b in location().backups()] == ["db-1.sql"]

    forged = sas(server, container, key=base64.b64encode(b"another key" * 4).decode())
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", forged)
    with pytest.raises(LocationError, match=r"access denied") as error:
        location().backups()
    assert "sig=" not in str(error.value)


def test_an_unreachable_account_never_shows_the_sas(server, container, location, monkeypatch):
    monkeypatch.setattr(azure_blob, "RETRIES", 0)
    token = sas(server, container)
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", token)
    unreachable = f"https://127.0.0.1:{free_port()}/{server.account_name}"

    with pytest.raises(LocationError, match=f"^azure_blob container .* at {unreachable}: ") as error:
        location(account_url=unreachable).backups()
    assert "sig=" not in str(error.value) and token not in str(error.value)


def test_sdk_errors_are_scrubbed_of_query_strings_and_the_credential(location, server, monkeypatch):
    """urllib3 names the request URL, SAS included, in some errors ("Max retries exceeded with url: ...")."""
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", "sv=2024-08-04&sp=rl&sig=c2VjcmV0")
    error = ConnectionError("HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: "
                            "/c?restype=container&comp=list&sv=2024-08-04&sp=rl&sig=c2VjcmV0 (Caused by x)\nmore")

    assert location()._scrub(error) == ("HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: "
                                        "/c?… (Caused by x)")


def test_ca_file_wins_over_requests_ca_bundle(location, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # the public CAs only
    assert location().backups() == []
    monkeypatch.setattr(azure_blob, "RETRIES", 0)
    with pytest.raises(LocationError, match=r"its TLS certificate is not trusted \(.+\); set ca_file: to the CA"):
        location(ca_file=None).backups()


@pytest.mark.parametrize("url", ["https://acct.blob.core.windows.net/?sv=2024&sig=abc", "acct.blob.core.windows.net"])
def test_config_rejects_urls_with_tokens_or_without_scheme(url, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_CREDENTIAL", "key")
    with pytest.raises(ValidationError):
        AzureBlobLocation.Config(kind="azure_blob", account_url=url, container="c",
                                 credential="${env:TEST_AZURE_CREDENTIAL}")


def test_blob_sizes_out_of_range_are_unknown(context, monkeypatch, fault_report):
    """As for S3: a Content-Length of -5 or 2^63 and more is an unknown size, never a stored one."""
    sizes = [-5, 2**63, 5000]
    blobs = "".join(f"<Blob><Name>db-{n}.sql.gz</Name><Properties><Last-Modified>Fri, 2{n} Nov 2026 01:00:00 GMT"
                    f"</Last-Modified><Etag>0x{n}</Etag><Content-Length>{size}</Content-Length><BlobType>BlockBlob"
                    "</BlobType></Properties></Blob>" for n, size in enumerate(sizes))
    monkeypatch.setenv("TEST_AZURE_SAS", "sv=2024-01-01&sig=x")
    with canned_xml(f'<EnumerationResults ContainerName="c"><Blobs>{blobs}</Blobs><NextMarker/>'
                    "</EnumerationResults>") as url:
        config = AzureBlobLocation.Config(kind="azure_blob", account_url=f"{url}/account", container="c",
                                          credential="${env:TEST_AZURE_SAS}", timeout="10s")
        found = {backup.name: backup.size_bytes for backup in AzureBlobLocation(config, context).backups()}
    fault_report(fault="Azure blob sizes -5 and 2^63", expected="each backup seen, its size unknown",
                 observed=str(sorted(found.items()))[:70])
    assert found == {"db-0.sql.gz": None, "db-1.sql.gz": None, "db-2.sql.gz": 5000}
