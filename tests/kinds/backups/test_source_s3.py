"""The s3 location against a real moto server over TLS: listing, checksums, pagination and errors."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import replace

import pytest
from pydantic import ValidationError

from checks.sources import s3
from checks.sources.filelike import LocationError
from checks.sources.s3 import S3Location
from tests.clocks import RunawayClock
from tests.lab.canned_xml import canned_xml
from tests.lab.harness import wait_until
from tests.lab.moto import Moto, moto
from tests.lab.pki import make_pki

MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Moto:
    directory = tmp_path_factory.mktemp("moto")
    with moto(directory, make_pki(directory / "pki")) as running:
        yield running


@pytest.fixture
def bucket(server) -> str:
    name = f"backups-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def location(server, bucket, context, monkeypatch):
    """An S3Location on the test bucket; its keys come from ${env:...} references, as in a real config."""
    monkeypatch.setenv("TEST_S3_ID", server.access_key_id)
    monkeypatch.setenv("TEST_S3_SECRET", server.secret_access_key)

    def location(**overrides) -> S3Location:
        config = {"kind": "s3", "bucket": bucket, "endpoint_url": server.endpoint_url, "region": server.region,
                  "access_key_id": "${env:TEST_S3_ID}", "secret_access_key": "${env:TEST_S3_SECRET}",
                  "ca_file": server.ca_file, "timeout": "10s", **overrides}
        return S3Location(S3Location.Config(**config), context)

    return location


def put(server: Moto, bucket: str, key: str, body: bytes = b"dump") -> float:
    """Upload an object; its LastModified as moto recorded it."""
    client = server.client()
    client.put_object(Bucket=bucket, Key=key, Body=body)
    return client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()


def test_lists_objects_under_the_prefix_newest_first(server, bucket, location):
    # moto cannot backdate: db-b goes up a second before db-a, so time order and name order differ
    first = put(server, bucket, "nightly/db-b.sql.gz", b"b" * 20)
    wait_until(lambda: time.time() >= first + 1, 3, "the next second")
    second = put(server, bucket, "nightly/db-a.sql.gz", b"a" * 10)
    for key in ("nightly/db-a.sql.gz.sha256", "nightly/db-c.sql.gz.tmp", "nightly/notes.txt", "nightly/",
                "weekly/db-w.sql.gz", "nightly-old/db-x.sql.gz"):
        put(server, bucket, key)

    backups = location(prefix="nightly/", pattern="db-*").backups()

    assert [(b.id, b.name, b.size_bytes, b.file_count) for b in backups] == [
        ("db-a.sql.gz", "db-a.sql.gz", 10, 1), ("db-b.sql.gz", "db-b.sql.gz", 20, 1)]
    assert [b.completed_at for b in backups] == [second, first]
    assert [b.id for b in location(prefix="nightly/db-a").backups()] == ["db-a.sql.gz"]  # the folder's names


def test_the_pattern_spans_folders_below_the_prefix(server, bucket, location):
    put(server, bucket, "hosts/web-1/etc.tar.gz")
    put(server, bucket, "hosts/web-2/etc.tar.gz")
    put(server, bucket, "hosts/web-2/home.tar.gz")

    backups = location(prefix="hosts/", pattern="*/etc.tar.gz").backups()

    assert sorted(b.id for b in backups) == ["web-1/etc.tar.gz", "web-2/etc.tar.gz"]


def test_a_single_part_etag_is_an_md5_and_a_multipart_one_is_not(server, bucket, location):
    put(server, bucket, "single.tar", b"single part")
    client = server.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="multi.tar")["UploadId"]
    parts = [client.upload_part(Bucket=bucket, Key="multi.tar", UploadId=upload, PartNumber=number, Body=body)
             for number, body in ((1, b"x" * (5 * MiB)), (2, b"tail"))]
    client.complete_multipart_upload(Bucket=bucket, Key="multi.tar", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": part["ETag"]} for n, part in enumerate(parts, 1)]})

    checksums = {b.id: b.checksum for b in location().backups()}

    assert checksums == {"single.tar": f"md5:{hashlib.md5(b'single part').hexdigest()}", "multi.tar": ""}
    assert {b.checksum for b in location(etag_is_md5=False).backups()} == {""}


def test_every_page_of_a_long_listing_is_read(server, bucket, location, monkeypatch):
    monkeypatch.setattr(s3, "PAGE_SIZE", 2)
    for number in range(5):
        put(server, bucket, f"db-{number}.sql")

    assert sorted(b.id for b in location().backups()) == [f"db-{number}.sql" for number in range(5)]


def test_a_missing_bucket_is_a_clear_error(server, location):
    with pytest.raises(LocationError, match=f"^s3 bucket no-such-bucket at {server.endpoint_url} does not exist$"):
        location(bucket="no-such-bucket").backups()


def test_wrong_credentials_are_refused_without_showing_them(server, bucket, location, monkeypatch):
    put(server, bucket, "db-1.sql")
    with server.enforcing_credentials() as (key_id, secret):
        monkeypatch.setenv("TEST_S3_ID", key_id)
        monkeypatch.setenv("TEST_S3_SECRET", secret)
        assert [b.id for b in location().backups()] == ["db-1.sql"]

        monkeypatch.setenv("TEST_S3_SECRET", "not-the-secret-key")
        with pytest.raises(LocationError, match=r"access denied \(SignatureDoesNotMatch\)") as wrong_secret:
            location().backups()
        monkeypatch.setenv("TEST_S3_ID", "AKIANOTAREALKEY00000")
        with pytest.raises(LocationError, match=r"access denied \(InvalidAccessKeyId\)") as unknown_key:
            location().backups()
    for error in (wrong_secret.value, unknown_key.value):
        assert "not-the-secret-key" not in str(error) and secret not in str(error)


def test_without_credentials_the_error_says_what_to_set(location, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(LocationError, match="no credentials: set access_key_id and secret_access_key"):
        location(access_key_id=None, secret_access_key=None).backups()


def test_ca_file_wins_over_aws_ca_bundle(location, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # the public CAs only
    assert location().backups() == []
    with pytest.raises(LocationError, match=r"its TLS certificate is not trusted \(.+\); set ca_file: to the CA"):
        location(ca_file=None).backups()


def test_a_listing_stops_when_its_time_is_spent(location, context):
    slow = S3Location(location().config, replace(context, clock=RunawayClock()))
    with pytest.raises(LocationError, match="^listing s3 bucket .* took longer than 10s$"):
        slow.backups()


def test_config_needs_both_keys_or_neither(monkeypatch):
    monkeypatch.setenv("TEST_S3_ID", "id")
    with pytest.raises(ValidationError, match="set both access_key_id and secret_access_key, or neither"):
        S3Location.Config(kind="s3", bucket="backups", access_key_id="${env:TEST_S3_ID}")



SIZES = [-5, 2**63, 2**64 - 1, 5000]  # what a broken or hostile endpoint can send; only the last is a size


def test_object_sizes_out_of_range_are_unknown(context, monkeypatch, fault_report):
    """Sizes of -5 or 2^63 and more would fail every SQLite write: the backups are seen, their sizes unknown."""
    contents = "".join(f"<Contents><Key>db-{n}.sql.gz</Key><LastModified>2026-11-2{n}T01:00:00.000Z</LastModified>"
                       f"<ETag>&quot;x&quot;</ETag><Size>{size}</Size></Contents>" for n, size in enumerate(SIZES))
    monkeypatch.setenv("TEST_S3_ID", "id")
    monkeypatch.setenv("TEST_S3_SECRET", "secret")
    with canned_xml(f"<ListBucketResult><Name>b</Name><Prefix></Prefix><KeyCount>{len(SIZES)}</KeyCount>"
                    f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>") as url:
        config = S3Location.Config(kind="s3", bucket="b", endpoint_url=url, region="us-east-1", timeout="10s",
                                   access_key_id="${env:TEST_S3_ID}", secret_access_key="${env:TEST_S3_SECRET}")
        sizes = {backup.name: backup.size_bytes for backup in S3Location(config, context).backups()}
    fault_report(fault="S3 object sizes -5, 2^63, 2^64-1", expected="each backup seen, its size unknown",
                 observed=str(sorted(sizes.items()))[:70])
    assert sizes == {"db-0.sql.gz": None, "db-1.sql.gz": None, "db-2.sql.gz": None, "db-3.sql.gz": 5000}
