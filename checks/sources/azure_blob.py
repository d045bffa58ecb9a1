"""Backups as blobs in an Azure Storage container, listed with azure-storage-blob.

`{kind: azure_blob, account_url:, container:, prefix:, credential:}`: every blob under
the prefix whose name (relative to the prefix's folder) matches the pattern is one
backup, completed when it was last modified. Polls read only the listing, never the data.
`credential` is an account key or a SAS token (the SDK tells them apart: a SAS has `sig=`). A blob's
Content-MD5 is kept as its checksum when the store has one: Azure computes it for
single-shot uploads; block-by-block uploads have it only if the uploader set it.

A restore drill reads blobs, within its budget: each blob's listed bytes and no more, of the
version it listed (its ETag, IfNotModified), in 4 MiB requests (the SDK's first read would
be 32 MiB), compared with the Content-MD5 the store keeps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.net.tls import certificate_refusal
from agent.ondisk import CaFile
from agent.secrets import Secret, one_line
from checks.model import BackupSnapshot, Candidate, Drilled, DrillNotRun, LocationConfig, Sink
from checks.sources import store_entries
from checks.sources.filelike import Deadline, LocationError, is_backup_name, newest_first, relative_name

PAGE_SIZE = 5000  # the service's maximum per List Blobs call
RETRIES = 2  # after the first attempt, with short backoffs: a poll must not hang on a dead endpoint
DOWNLOAD_CHUNK = 4 << 20  # a drill's reads: the first as the next (the SDK's first would be 32 MiB)
_QUERY_STRING = re.compile(r"\?\S*")  # a request URL's query string may carry a SAS signature
Credential = Annotated[Secret, one_line("an HTTP header or URL", ascii_only=True)]  # a SAS token travels in the URL


class AzureBlobLocation(Drilled):
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
        with self._answers():
            return newest_first(self._snapshots())

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        """Each listed blob as it is now (its properties: size, ETag, Content-MD5)."""
        with self._container() as container, self._answers():
            for backup in backups:
                if (properties := self._properties(container, backup.id)) is not None:
                    yield _candidate(backup, properties)

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """The blob's listed bytes and no more, of the listed version, a 4 MiB request at a time."""
        from azure.core import MatchConditions

        request = {"etag": candidate.version, "match_condition": MatchConditions.IfNotModified} \
            if candidate.version else {}
        if candidate.size:  # a range of no bytes is refused: an empty blob is read whole
            request.update(offset=0, length=candidate.size)
        try:  # each chunk is a request of its own, read whole: closing the client leaves no connection
            with self._container(max_single_get_size=DOWNLOAD_CHUNK, max_chunk_get_size=DOWNLOAD_CHUNK) as container, \
                    self._answers(candidate.path):
                blob = container.get_blob_client(self._blob_name(candidate.path))
                store_entries.pour(blob.download_blob(max_concurrency=1, **request).chunks(), sink, cancel)
        except LocationError as exc:
            raise DrillNotRun(str(exc)) from None

    def holds(self, backup_id: str) -> bool:
        with self._container() as container, self._answers():
            return self._properties(container, backup_id) is not None

    def _properties(self, container, name: str):
        """The blob's properties, None if it is gone."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return container.get_blob_client(self._blob_name(name)).get_blob_properties()
        except ResourceNotFoundError:
            return None

    def _blob_name(self, name: str) -> str:
        return store_entries.object_key(self.config.prefix, name)

    @contextmanager
    def _answers(self, name: str = ""):
        """The SDK's errors as LocationErrors naming the container (and the blob, for one that is gone or was
        replaced since it was listed), scrubbed of the credential."""
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        try:
            yield
        except HttpResponseError as exc:
            if name and isinstance(exc, ResourceNotFoundError):
                raise LocationError(f"{name} is gone from {self.where}") from None
            if name and isinstance(exc, ResourceModifiedError):  # Azurite's answer for a deleted one too
                raise LocationError(f"{name} in {self.where} was replaced or deleted since it was listed") from None
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
        with self._container() as container:
            pages = container.list_blobs(name_starts_with=config.prefix or None, results_per_page=PAGE_SIZE).by_page()
            for page in store_entries.parsed(self.where, pages):
                deadline.check()
                for blob in store_entries.parsed(self.where, page):
                    key = blob.name if isinstance(blob.name, str) else ""
                    name = relative_name(key, config.prefix)
                    if not key.endswith("/") and is_backup_name(name, config.pattern):
                        yield store_entries.snapshot(self.where, name, blob.last_modified, blob.size,
                                                     _md5(blob.content_settings))

    def _container(self, **tuning):
        """A client per listing or restore, closed after it: cheap next to the work, nothing stale between polls,
        and no connection left behind."""
        from azure.storage.blob import ContainerClient, ExponentialRetry

        config = self.config
        return ContainerClient(
            config.account_url, config.container, credential=config.credential.get_secret_value(),
            connection_timeout=config.timeout, read_timeout=config.timeout,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=RETRIES),
            connection_verify=str(config.ca_file) if config.ca_file else True, **tuning)

    def _scrub(self, exc: Exception) -> str:
        """The first line of an SDK error, without query strings (SAS signatures) or the credential."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _QUERY_STRING.sub("?…", text).replace(self.config.credential.get_secret_value(), "…")


def _candidate(backup: BackupSnapshot, properties) -> Candidate:
    md5 = _md5(properties.content_settings)
    return Candidate(backup.id, backup.id, properties.size, mtime=properties.last_modified.timestamp(), checksum=md5,
                     reference="content-md5" if md5 else "", version=properties.etag)


def _md5(content_settings: object) -> str:
    """The Content-MD5 the store keeps for a blob, as a checksum ("" when it has none)."""
    md5 = getattr(content_settings, "content_md5", None)
    return f"md5:{bytes(md5).hex()}" if isinstance(md5, bytes | bytearray) and md5 else ""
