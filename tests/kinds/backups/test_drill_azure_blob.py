"""Restore drills of azure_blob blobs against a real Azurite behind the lab's counting relay: the stored Content-MD5,
bounded reads of the listed version only in 4 MiB requests, blobs gone or replaced, forged MD5s, and cancellation."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import replace

import pytest

from checks.model import DrillNotRun
from checks.sources.azure_blob import DOWNLOAD_CHUNK
from tests.drills import DRILL_SLACK, SLACK, candidates, deleting_the_rest, drill, restored, seen
from tests.kinds.backups import test_source_azure_blob
from tests.kinds.backups.test_source_azure_blob import upload
from tests.lab.harness import wait_until
from tests.lab.relay import Relay, relay

MiB = 1 << 20
# the same Azurite (over TLS), a container of each test's own, and its locations on it
source = test_source_azure_blob
server, container, direct = source.server, source.container, source.location


@pytest.fixture(scope="module")
def counted(server) -> Relay:
    with relay(server.account_url) as running:
        yield running


@pytest.fixture
def location(direct, server, counted):
    """test_source_azure_blob's AzureBlobLocation on the test container, through the relay."""
    return lambda **overrides: direct(**{"account_url": counted.url(server.account_url), **overrides})



def test_a_blob_is_restored_and_matches_its_content_md5(container, location):
    data = os.urandom(9 * MiB)  # three requests of at most 4 MiB
    upload(container, "nightly/db-1.dump", data)

    [candidate] = candidates(location(prefix="nightly/")).values()

    assert (candidate.path, candidate.size, candidate.reference) == ("db-1.dump", len(data), "content-md5")
    assert candidate.checksum == f"md5:{hashlib.md5(data).hexdigest()}" and candidate.version
    sink = restored(location(prefix="nightly/"), candidate)
    assert (sink.size, sink.md5.hexdigest()) == (len(data), hashlib.md5(data).hexdigest())


def test_an_empty_blob_is_restored(container, location):
    upload(container, "empty.dump", b"")

    [candidate] = candidates(location()).values()

    assert restored(location(), candidate).md5.hexdigest() == candidate.checksum.removeprefix("md5:")


def test_a_blob_deleted_after_it_was_listed_is_not_drilled_and_not_held(container, location):
    upload(container, "db.dump")
    [candidate] = candidates(location()).values()
    assert location().holds("db.dump")

    container.get_blob_client("db.dump").delete_blob()

    with pytest.raises(DrillNotRun, match=f"^db.dump in azure_blob container {container.container_name} at .* "
                                          "was replaced or deleted since it was listed"):
        restored(location(), candidate)
    assert not location().holds("db.dump")


def test_a_blob_replaced_after_it_was_listed_is_never_read_as_the_listed_one(container, location):
    upload(container, "db.dump", b"as listed")
    [candidate] = candidates(location()).values()
    upload(container, "db.dump", b"replaced, and longer")

    with pytest.raises(DrillNotRun, match="^db.dump in azure_blob container .* was replaced or deleted since"):
        restored(location(), candidate)


def test_a_restore_reads_the_listed_bytes_and_no_more(container, location, counted):
    upload(container, "db.dump", os.urandom(4 * MiB))
    [candidate] = candidates(location()).values()
    counted.reset()

    sink = restored(location(), replace(candidate, size=MiB))  # as if the listing had said so

    assert sink.size == MiB
    assert MiB < counted.down <= MiB + SLACK
    wait_until(lambda: counted.open == 0, what="the restore's connections to close")


def test_a_cancelled_restore_stops_after_one_request_and_leaves_no_connection(container, location, counted):
    """The SDK's first request would fetch 32 MiB; a drill's fetches 4 MiB, so a cancel stops within 4 MiB."""
    data = os.urandom(32 * MiB)
    upload(container, "db.dump", data)
    [candidate] = candidates(location()).values()
    cancel = threading.Event()
    counted.reset()

    with pytest.raises(DrillNotRun, match="^cancelled$"):
        restored(location(), candidate, cancel, then=lambda size: cancel.set())

    assert counted.down <= DOWNLOAD_CHUNK + SLACK
    wait_until(lambda: counted.open == 0, what="the cancelled download's connection to close")


def test_a_drill_restores_blobs_and_matches_their_content_md5(container, location, context):
    upload(container, "db-1.dump", os.urandom(MiB))
    upload(container, "db-2.dump", os.urandom(1000))
    seen(location(), context)

    outcome = drill(location(), context)

    assert outcome.drill.ok is True, outcome.drill.detail
    assert sorted((f.path, f.result, f.reference) for f in outcome.files) == [
        ("db-1.dump", "match", "content-md5"), ("db-2.dump", "match", "content-md5")]


def test_a_blob_overwritten_under_its_old_content_md5_fails_the_drill(container, location, context):
    """Silent damage, forged: new bytes, and the old MD5 set back on the blob."""
    from azure.storage.blob import ContentSettings

    upload(container, "db-1.dump", b"the dump as uploaded")
    seen(location(), context)
    blob = container.get_blob_client("db-1.dump")
    old = blob.get_blob_properties().content_settings.content_md5
    upload(container, "db-1.dump", b"other bytes, same length")
    blob.set_http_headers(ContentSettings(content_md5=old))

    outcome = drill(location(), context)

    [restored] = outcome.files
    assert (outcome.drill.ok, restored.result, restored.reference) == (False, "mismatch", "content-md5")
    assert restored.detail == (f"md5 {hashlib.md5(b'other bytes, same length').hexdigest()[:12]}… ≠ content-md5 "
                               f"{hashlib.md5(b'the dump as uploaded').hexdigest()[:12]}…")


def test_a_drill_reads_no_more_from_the_store_than_max_bytes(container, location, context, counted):
    """Six blobs of 1 MiB and one of 8 MiB, a budget of 2.5 MiB: the newest and one more are read, the 8 MiB one
    never (the relay counts every byte the store sent: listing, properties, TLS handshakes and headers too)."""
    for number in range(6):
        upload(container, f"db-{number}.dump", os.urandom(MiB))
    upload(container, "db-huge.dump", os.urandom(8 * MiB))
    counted.reset()

    outcome = drill(location(), context, max_bytes=5 * MiB // 2)

    assert outcome.drill.bytes_read == 2 * MiB
    assert "1 file(s) over max_bytes (2.5 MiB) are never drilled, the largest db-huge.dump" in outcome.drill.detail
    assert counted.down <= 5 * MiB // 2 + DRILL_SLACK, f"{counted.down} bytes from the store"


def test_a_blob_deleted_during_a_drill_is_unreadable_never_damaged(container, location, context):
    for name in ("db-1.dump", "db-2.dump"):
        upload(container, name, os.urandom(1000))

    outcome = drill(location(), context, progress=deleting_the_rest(
        lambda name: container.get_blob_client(name).delete_blob(), {"db-1.dump", "db-2.dump"}))

    first, second = outcome.files
    assert (outcome.drill.ok, first.result, second.result) == (True, "match", "unreadable")
    assert f"{second.path} in azure_blob container {container.container_name}" in second.detail
