"""Restore drills of s3 objects against a real moto behind the lab's counting relay: the checksum each object is
compared with, bounded reads of the listed version only, objects gone or replaced, and cancellation."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import replace

import pytest

from checks.model import DrillNotRun
from tests.drills import DRILL_SLACK, SLACK, candidates, deleting_the_rest, drill, restored, seen
from tests.dumps import sha256
from tests.kinds.backups import test_source_s3
from tests.lab.harness import wait_until
from tests.lab.relay import Relay, relay

MiB = 1 << 20
# the same moto (over TLS), a bucket of each test's own, and its locations on it
server, bucket, direct = test_source_s3.server, test_source_s3.bucket, test_source_s3.location


@pytest.fixture(scope="module")
def counted(server) -> Relay:
    with relay(server.endpoint_url) as running:
        yield running


@pytest.fixture
def location(direct, server, counted):
    """test_source_s3's S3Location on the test bucket, through the relay."""
    return lambda **overrides: direct(**{"endpoint_url": counted.url(server.endpoint_url), **overrides})



def test_an_object_is_restored_and_matches_the_best_checksum_the_store_keeps(server, bucket, location):
    plain, summed = os.urandom(3 * MiB + 5), os.urandom(1000)
    client = server.client()
    client.put_object(Bucket=bucket, Key="nightly/db-1.dump", Body=plain)
    client.put_object(Bucket=bucket, Key="nightly/db-2.dump", Body=summed, ChecksumAlgorithm="SHA256")

    found = candidates(location(prefix="nightly/"))

    single, with_sha256 = found["db-1.dump"], found["db-2.dump"]
    assert (single.reference, single.checksum) == ("etag-md5", f"md5:{hashlib.md5(plain).hexdigest()}")
    assert (with_sha256.reference, with_sha256.checksum) == ("s3-sha256",
                                                             f"sha256:{hashlib.sha256(summed).hexdigest()}")
    assert single.size == len(plain) and single.version.strip('"') == hashlib.md5(plain).hexdigest()
    sink = restored(location(prefix="nightly/"), single)
    assert (sink.size, sink.md5.hexdigest()) == (len(plain), hashlib.md5(plain).hexdigest())
    assert restored(location(prefix="nightly/"), with_sha256).sha256.hexdigest() == hashlib.sha256(summed).hexdigest()


def test_sidecar_objects_and_manifests_in_the_prefix_s_folder_are_references(server, bucket, location):
    """An off-site copy of a dump folder, checksum files included: a sidecar's SHA-256 wins over the MD5 ETag."""
    first, second, third = b"first dump", b"second dump", b"third dump"
    client = server.client()
    for key, body in (("nightly/db-1.dump", first), ("nightly/db-1.dump.sha256", f"{sha256(first)}  db-1.dump\n"),
                      ("nightly/db-2.dump", second), ("nightly/SHA256SUMS", f"{sha256(second)}  db-2.dump\n"),
                      ("nightly/db-3.dump", third)):
        client.put_object(Bucket=bucket, Key=key, Body=body)

    found = candidates(location(prefix="nightly/db-"))

    assert {path: (c.reference, c.checksum) for path, c in found.items()} == {
        "db-1.dump": ("sidecar", f"sha256:{sha256(first)}"), "db-2.dump": ("sidecar", f"sha256:{sha256(second)}"),
        "db-3.dump": ("etag-md5", f"md5:{hashlib.md5(third).hexdigest()}")}

def test_a_multipart_upload_has_no_checksum_of_its_content(server, bucket, location):
    """Its ETag is an MD5 of MD5s, and its SHA-256 one of the parts' SHA-256s: neither is the content's."""
    client = server.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="big.dump", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = [client.upload_part(Bucket=bucket, Key="big.dump", UploadId=upload, PartNumber=number, Body=body,
                                ChecksumAlgorithm="SHA256") for number, body in ((1, os.urandom(5 * MiB)), (2, b"x"))]
    client.complete_multipart_upload(Bucket=bucket, Key="big.dump", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}
        for number, part in enumerate(parts, 1)]})

    [candidate] = candidates(location()).values()

    assert (candidate.checksum, candidate.reference, candidate.size) == ("", "", 5 * MiB + 1)
    assert restored(location(), candidate).size == 5 * MiB + 1


def test_an_empty_object_is_restored(server, bucket, location):
    server.client().put_object(Bucket=bucket, Key="empty.dump", Body=b"")

    [candidate] = candidates(location()).values()

    assert restored(location(), candidate).md5.hexdigest() == candidate.checksum.removeprefix("md5:")


def test_an_object_deleted_after_it_was_listed_is_not_drilled_and_not_held(server, bucket, location):
    server.client().put_object(Bucket=bucket, Key="db.dump", Body=b"dump")
    [candidate] = candidates(location()).values()
    assert location().holds("db.dump")

    server.client().delete_object(Bucket=bucket, Key="db.dump")

    with pytest.raises(DrillNotRun, match=f"^db.dump is gone from s3 bucket {bucket} at "):
        restored(location(), candidate)
    assert not location().holds("db.dump")


def test_an_object_replaced_after_it_was_listed_is_never_read_as_the_listed_one(server, bucket, location):
    server.client().put_object(Bucket=bucket, Key="db.dump", Body=b"as listed")
    [candidate] = candidates(location()).values()
    server.client().put_object(Bucket=bucket, Key="db.dump", Body=b"replaced, and longer")

    with pytest.raises(DrillNotRun, match=f"^db.dump in s3 bucket {bucket} at .* was replaced since it was listed"):
        restored(location(), candidate)


def test_a_restore_reads_the_listed_bytes_and_no_more(server, bucket, location, counted):
    data = os.urandom(4 * MiB)
    server.client().put_object(Bucket=bucket, Key="db.dump", Body=data)
    [candidate] = candidates(location()).values()
    counted.reset()

    sink = restored(location(), replace(candidate, size=MiB))  # as if the listing had said so

    assert sink.size == MiB
    assert MiB < counted.down <= MiB + SLACK
    wait_until(lambda: counted.open == 0, what="the restore's connections to close")


def test_a_cancelled_restore_stops_and_leaves_no_connection(server, bucket, location, counted):
    data = os.urandom(32 * MiB)
    server.client().put_object(Bucket=bucket, Key="db.dump", Body=data)
    [candidate] = candidates(location()).values()
    cancel = threading.Event()
    counted.reset()

    with pytest.raises(DrillNotRun, match="^cancelled$"):
        restored(location(), candidate, cancel, then=lambda size: cancel.set())

    wait_until(lambda: counted.open == 0, what="the cancelled download's connection to close")
    assert counted.down < len(data)


def test_a_drill_restores_objects_and_matches_what_the_store_recorded(server, bucket, location, context):
    client = server.client()
    client.put_object(Bucket=bucket, Key="db-1.dump", Body=os.urandom(MiB))
    client.put_object(Bucket=bucket, Key="db-2.dump", Body=os.urandom(1000), ChecksumAlgorithm="SHA256")
    seen(location(), context)

    outcome = drill(location(), context)

    assert outcome.drill.ok is True, outcome.drill.detail
    assert sorted((f.path, f.result, f.reference) for f in outcome.files) == [
        ("db-1.dump", "match", "etag-md5"), ("db-2.dump", "match", "s3-sha256")]


def test_an_object_uploaded_again_after_vigil_saw_it_fails_the_drill(server, bucket, location, context):
    """The new upload has a new MD5 ETag that matches it: only the first-seen one tells."""
    server.client().put_object(Bucket=bucket, Key="db-1.dump", Body=b"the dump as uploaded")
    seen(location(), context)
    server.client().put_object(Bucket=bucket, Key="db-1.dump", Body=b"another dump under its name")

    outcome = drill(location(), context)

    [restored] = outcome.files
    assert (outcome.drill.ok, restored.result, restored.reference) == (False, "mismatch", "first-seen")
    assert restored.detail == (f"md5 {hashlib.md5(b'another dump under its name').hexdigest()[:12]}… ≠ first-seen "
                               f"{hashlib.md5(b'the dump as uploaded').hexdigest()[:12]}…")


def test_a_drill_reads_no_more_from_the_store_than_max_bytes(server, bucket, location, context, counted):
    """Six objects of 1 MiB and one of 8 MiB, a budget of 2.5 MiB: the newest and one more are read, the 8 MiB one
    never (the relay counts every byte the store sent: listing, HEADs, TLS handshakes and headers too)."""
    client = server.client()
    for number in range(6):
        client.put_object(Bucket=bucket, Key=f"db-{number}.dump", Body=os.urandom(MiB))
    client.put_object(Bucket=bucket, Key="db-huge.dump", Body=os.urandom(8 * MiB))
    counted.reset()

    outcome = drill(location(), context, max_bytes=5 * MiB // 2)

    assert outcome.drill.bytes_read == 2 * MiB
    assert "1 file(s) over max_bytes (2.5 MiB) are never drilled, the largest db-huge.dump" in outcome.drill.detail
    assert counted.down <= 5 * MiB // 2 + DRILL_SLACK, f"{counted.down} bytes from the store"


def test_an_object_deleted_during_a_drill_is_unreadable_never_damaged(server, bucket, location, context):
    for name in ("db-1.dump", "db-2.dump"):
        server.client().put_object(Bucket=bucket, Key=name, Body=os.urandom(1000))

    outcome = drill(location(), context, progress=deleting_the_rest(
        lambda name: server.client().delete_object(Bucket=bucket, Key=name), {"db-1.dump", "db-2.dump"}))

    first, second = outcome.files
    assert (outcome.drill.ok, first.result, second.result) == (True, "match", "unreadable")
    assert second.detail.startswith(f"{second.path} is gone from s3 bucket {bucket} at ")


def test_an_object_that_differs_from_its_sidecar_fails_the_drill(server, bucket, location, context):
    client = server.client()
    client.put_object(Bucket=bucket, Key="db-1.dump", Body=b"the dump as copied")
    client.put_object(Bucket=bucket, Key="db-1.dump.sha256", Body=sha256(b"the dump as written"))

    outcome = drill(location(), context)

    [restored] = outcome.files
    assert (outcome.drill.ok, restored.result, restored.reference) == (False, "mismatch", "sidecar")
