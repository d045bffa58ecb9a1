"""Backups as blobs in an Azure Storage container, listed with azure-storage-blob.

`{kind: azure_blob, account_url:, container:, prefix:, credential:}`: every blob under
the prefix whose name (relative to the prefix's folder) matches the pattern is one
backup, completed when it was last modified. Only the listing is read, never the data. `credential` is an
account key or a SAS token (the SDK tells them apart: a SAS has `sig=`). A blob's
Content-MD5 is kept as its checksum when the store has one: Azure computes it for
single-shot uploads; block-by-block uploads have it only if the uploader set it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.net.tls import certificate_refusal
from agent.ondisk import CaFile
from agent.secrets import Secret, one_line
from checks.model import BackupSnapshot, Location, LocationConfig
from checks.sources import store_entries
from checks.sources.filelike import Deadline, LocationError, is_backup_name, newest_first, relative_name

PAGE_SIZE = 5000  # the service's maximum per List Blobs call
RETRIES = 2  # after the first attempt, with short backoffs: a poll must not hang on a dead endpoint
_QUERY_STRING = re.compile(r"\?\S*")  # a request URL's query string may carry a SAS signature
Credential = Annotated[Secret, one_line("an HTTP header or URL", ascii_only=True)]  # a SAS token travels in the URL


class AzureBlobLocation(Location):
    kind = "azure_blob"

    class Config(LocationConfig):
        kind: Literal["azure_blob"]
        account_url: str = Field(description="https://ACCOUNT.blob.core.windows.net")
        container: str = Field(description="the container")
        prefix: str = Field("", description="`nightly/` for a folder: names are relative to the folder the prefix "
                                            "ends in")
        pattern: str = Field("*", description="which names are backups (fnmatch; `*` spans `/`)")
        credential: Credential = Field(description="the account key or a SAS token")
        ca_file: CaFile | None = Field(None, description="a private CA; wins over REQUESTS_CA_BUNDLE")

        @field_validator("account_url")
        @classmethod
        def _plain_url(cls, url: str) -> str:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError("expected a URL such as https://ACCOUNT.blob.core.windows.net")
            if parts.query or parts.username:
                raise ValueError("must not hold a SAS token or credentials: put them in `credential`")
            return url

    def __init__(self, config: Config, context):
        self.config = config
        self._clock = context.clock
        self.where = f"azure_blob container {config.container} at {config.account_url}"

    def backups(self) -> list[BackupSnapshot]:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        try:
            return newest_first(self._snapshots())
        except HttpResponseError as exc:
            raw = getattr(exc, "error_code", None)  # a DecodeError (a body that is not XML) has none
            code = getattr(raw, "value", raw)  # a StorageErrorCode, or the raw header
            if code is None and isinstance(exc, ClientAuthenticationError):  # raised before any request
                raise LocationError(f"{self.where}: the credential cannot sign a request ({self._scrub(exc)}); set "
                                    "`credential` to the account key (base64) or a SAS token") from None
            if code == "ContainerNotFound":
                raise LocationError(f"{self.where} does not exist") from None
            if exc.status_code == 403:
                raise LocationError(f"{self.where}: access denied ({code}); check the credential "
                                    "(account key or SAS, its permissions and expiry)") from None
            raise LocationError(f"{self.where}: {code or exc.status_code}: {self._scrub(exc)}") from None
        except (AzureError, ValueError) as exc:  # ValueError: the SDK cannot read the URL or the credential
            raise LocationError(f"{self.where}: {certificate_refusal(exc) or self._scrub(exc)}") from None

    def _snapshots(self) -> Iterator[BackupSnapshot]:
        config = self.config
        deadline = Deadline(self._clock, config.timeout, f"listing {self.where}")
        pages = self._container().list_blobs(name_starts_with=config.prefix or None,
                                             results_per_page=PAGE_SIZE).by_page()
        for page in store_entries.parsed(self.where, pages):
            deadline.check()
            for blob in store_entries.parsed(self.where, page):
                key = blob.name if isinstance(blob.name, str) else ""
                name = relative_name(key, config.prefix)
                if not key.endswith("/") and is_backup_name(name, config.pattern):
                    md5 = getattr(blob.content_settings, "content_md5", None)
                    yield store_entries.snapshot(self.where, name, blob.last_modified, blob.size,
                                                 f"md5:{bytes(md5).hex()}" if isinstance(md5, bytes | bytearray)
                                                 and md5 else "")

    def _container(self):
        """A client per listing: cheap next to the listing, and nothing stale between polls."""
        from azure.storage.blob import ContainerClient, ExponentialRetry

        config = self.config
        return ContainerClient(
            config.account_url, config.container, credential=config.credential.get_secret_value(),
            connection_timeout=config.timeout, read_timeout=config.timeout,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=RETRIES),
            connection_verify=str(config.ca_file) if config.ca_file else True)

    def _scrub(self, exc: Exception) -> str:
        """The first line of an SDK error, without query strings (SAS signatures) or the credential."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _QUERY_STRING.sub("?…", text).replace(self.config.credential.get_secret_value(), "…")
