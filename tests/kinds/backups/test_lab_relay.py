"""The lab's counting relay (tests/lab/relay.py) in front of a real moto: it passes a client's requests through,
counts what the server sent, and sees the connection go when the client closes it."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.lab.harness import wait_until
from tests.lab.moto import Moto, moto
from tests.lab.pki import make_pki
from tests.lab.relay import relay

MiB = 1 << 20
SLACK = 16 << 10  # the TLS handshake (the certificate chain), record framing and the HTTP headers


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Moto:
    directory = tmp_path_factory.mktemp("moto")
    with moto(directory, make_pki(directory / "pki")) as running:
        yield running


def test_the_relay_counts_the_bytes_a_download_took_and_sees_its_connection_close(server):
    data = os.urandom(MiB)
    bucket = f"relay-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    server.client().put_object(Bucket=bucket, Key="blob", Body=data)

    with relay(server.endpoint_url) as counted:
        client = Moto(counted.url(server.endpoint_url), server.ca_file).client()
        body = client.get_object(Bucket=bucket, Key="blob")["Body"]
        start = body.read(1000)
        assert counted.open == 1, "the download's connection, relayed"
        assert start + body.read() == data
        assert len(data) < counted.down < len(data) + SLACK
        assert counted.up < SLACK

        client.close()
        wait_until(lambda: counted.open == 0, what="the relayed connection to close")
