"""A real Azurite blob service on a free loopback port, in memory, over TLS when given a PKI.

Azurite serves one account, devstoreaccount1, with the key Microsoft publishes for the
storage emulator; its URLs are path-style: http(s)://127.0.0.1:PORT/devstoreaccount1.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import free_port, need, running
from tests.lab.pki import PKI

AZURITE_BLOB = Path(__file__).resolve().parents[2] / ".lab" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# The storage emulator's well-known key, published in Microsoft's Azurite documentation.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    account_url: str
    ca_file: Path | None
    account_name: str = ACCOUNT
    account_key: str = ACCOUNT_KEY

    def service(self):
        """A BlobServiceClient with the account key, for setting up containers and blobs."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.account_url, credential=self.account_key,
                                 connection_verify=str(self.ca_file) if self.ca_file else True)


@contextmanager
def azurite(directory: Path, pki: PKI | None = None) -> Iterator[Azurite]:
    binary = need(str(AZURITE_BLOB), "run tests/lab/setup.sh")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # --location cannot be combined with --inMemoryPersistence; in memory, nothing is written to the cwd
    argv = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    if pki is not None:
        argv += ["--cert", str(pki.server_cert), "--key", str(pki.server_key)]
    server = Azurite(f"{'https' if pki else 'http'}://127.0.0.1:{port}/{ACCOUNT}", pki.ca if pki else None)
    with running(argv, directory / "azurite.log", lambda: _answers(server), "azurite"):
        yield server


def _answers(server: Azurite) -> bool:
    """Any HTTP reply (an anonymous request gets 403) means the service is up."""
    context = ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else None
    try:
        urllib.request.urlopen(f"{server.account_url}?comp=list", timeout=5, context=context).close()
    except urllib.error.HTTPError:
        pass
    return True
