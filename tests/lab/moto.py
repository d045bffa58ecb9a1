"""A real moto server (S3, and IAM for credentials) on a free loopback port, over TLS when given a PKI.

moto accepts any credentials until told otherwise: `enforcing_credentials()` creates a
real IAM user and key, then turns moto's request authentication on for the duration.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import free_port, need, running
from tests.lab.pki import PKI

MOTO_SERVER = Path(__file__).resolve().parents[2] / ".lab" / "moto" / "bin" / "moto_server"
S3_ONLY_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class Moto:
    endpoint_url: str
    ca_file: Path | None
    region: str = "us-east-1"
    access_key_id: str = "testing"  # any key works while authentication is off
    secret_access_key: str = "testing"

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
                            verify=str(self.ca_file) if self.ca_file else None)

    @contextmanager
    def enforcing_credentials(self) -> Iterator[tuple[str, str]]:
        """A real access key (id, secret) allowed s3:*; inside, requests with any other key fail."""
        iam = self.client("iam")
        user = f"vigil-{free_port()}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(S3_ONLY_POLICY))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self._authenticate_after(0)
        try:
            yield key["AccessKeyId"], key["SecretAccessKey"]
        finally:
            self._authenticate_after("inf")

    def _authenticate_after(self, requests: int | str) -> None:
        """moto authenticates every request after the first `requests` ones ("inf": never)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset-auth", data=str(requests).encode(),
                                         headers={"Content-Type": "text/plain"}, method="POST")  # not a form
        urllib.request.urlopen(request, timeout=10, context=_tls(self.ca_file)).close()


@contextmanager
def moto(directory: Path, pki: PKI | None = None) -> Iterator[Moto]:
    binary = need(str(MOTO_SERVER), "run tests/lab/setup.sh")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "-H", "127.0.0.1", "-p", str(port)]
    if pki is not None:
        argv += ["-c", str(pki.server_cert), "-k", str(pki.server_key)]
    server = Moto(f"{'https' if pki else 'http'}://127.0.0.1:{port}", pki.ca if pki else None)
    with running(argv, directory / "moto.log", lambda: _status(f"{server.endpoint_url}/moto-api/", server.ca_file)
                 == 200, "moto"):
        yield server


def _tls(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def _status(url: str, ca_file: Path | None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5, context=_tls(ca_file)) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
