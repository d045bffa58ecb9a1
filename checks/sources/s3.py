"""Backups as objects in an S3 bucket (AWS or compatible), listed with boto3.

`{kind: s3, bucket:, prefix:, endpoint_url:, pattern:}`: every object under the prefix
whose name (relative to the prefix's folder) matches the pattern is one backup,
completed when it was last modified. Polls read only the listing, never the data. An
object's ETag is its MD5 only for a single-part upload without SSE-KMS or SSE-C; multipart
ETags (`<hex>-<parts>`) are never taken for one, and `etag_is_md5: false` turns the rest off
for buckets encrypted with KMS.

A restore drill reads objects, within its budget: each object's listed bytes and no more
(a Range request), of the version it listed (If-Match its ETag), compared with the best
checksum the store recorded: a full-object SHA-256 (`ChecksumSHA256`), else the MD5 ETag.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.net.paging import Listing
from agent.net.tls import certificate_refusal
from agent.ondisk import CaFile
from agent.redact import userinfo_in_url
from agent.secrets import HeaderSecret, Secret
from checks.model import BackupSnapshot, Candidate, Drilled, DrillNotRun, LocationConfig, Sink
from checks.sources import filelike, store_entries
from checks.sources.filelike import (
    CHUNK,
    MANIFEST_LIMIT,
    SHA256_MANIFEST,
    SIDECAR_SUFFIXES,
    Deadline,
    LocationError,
    is_backup_name,
    newest_first,
    relative_name,
)

PAGE_SIZE = 1000  # S3's own maximum per ListObjectsV2 call
ATTEMPTS = 3  # botocore's "standard" retries: throttling, 5xx and connection errors, with backoff
ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')
_PART_COUNT = re.compile(r"-\d+\"?$")  # a multipart ETag's or composite checksum's `-<parts>`
GONE = {"NoSuchKey", "404"}  # a GET says NoSuchKey, a HEAD (no body) only its status


class S3Location(Drilled):
    kind = "s3"

    class Config(LocationConfig):
        kind: Literal["s3"]
        bucket: str = Field(description="the bucket")
        prefix: str = Field("", description="`nightly/` for a folder: names are relative to the folder the prefix "
                                            "ends in")
        pattern: str = Field("*", description="which names are backups (fnmatch; `*` spans `/`)")
        endpoint_url: str | None = Field(None, description="an S3-compatible store's URL (default: AWS)")
        region: str | None = Field(None, description="the region")
        access_key_id: HeaderSecret | None = Field(None, description="default: the AWS environment (variables, "
                                                                     "profile, instance role)")
        secret_access_key: Secret | None = Field(None, description="with access_key_id")
        ca_file: CaFile | None = Field(None, description="a private CA; wins over AWS_CA_BUNDLE")
        etag_is_md5: bool = Field(True, description="single-part uploads' ETag is their MD5, compared with the "
                                                    "primary's checksum")

        @field_validator("endpoint_url")
        @classmethod
        def _no_keys_in_url(cls, url: str | None) -> str | None:
            if url is not None and userinfo_in_url(url):
                raise ValueError("must not hold credentials (id:key@): set access_key_id and secret_access_key")
            return url

        @model_validator(mode="after")
        def _both_keys_or_neither(self) -> S3Location.Config:
            if (self.access_key_id is None) != (self.secret_access_key is None):
                raise ValueError("set both access_key_id and secret_access_key, or neither")
            return self

    def __init__(self, config: Config, context):
        self.config = config
        self._clock = context.clock
        self.where = f"s3 bucket {config.bucket}" + (f" at {config.endpoint_url}" if config.endpoint_url else "")

    def backups(self) -> list[BackupSnapshot]:
        with self._answers():
            return newest_first(self._snapshots())

    def candidates(self, backups: list[BackupSnapshot]) -> Iterator[Candidate]:
        """Each listed object as it is now (one HEAD each: its size, ETag and the checksums the store keeps), with
        the sha256 of its sidecar object or SHA256SUMS manifest where the prefix's folder has one."""
        with closing(self._client()) as client, self._answers():
            if names := self._checksum_files(client, backups):
                backups = filelike.with_checksums(_Folder(client, self.config.bucket, self._folder, self.where),
                                                  backups, names)
            for backup in backups:
                if (head := self._head(client, backup.key or backup.id)) is not None:
                    yield self._candidate(backup, head)

    def restore(self, candidate: Candidate, sink: Sink, cancel: threading.Event) -> None:
        """The object's listed bytes and no more (a Range request), of the listed version (If-Match)."""
        key = store_entries.object_key(self.config.prefix, candidate.key or candidate.path)
        request = {"Bucket": self.config.bucket, "Key": key}
        if candidate.size:  # `bytes=0--1` is no range: an empty object is read whole
            request["Range"] = f"bytes=0-{candidate.size - 1}"
        if candidate.version:
            request["IfMatch"] = candidate.version
        try:
            with closing(self._client()) as client, self._answers(candidate.path):
                with closing(client.get_object(**request)["Body"]) as body:  # unread, its connection is dropped
                    store_entries.pour(_chunks(body), sink, cancel)
        except LocationError as exc:
            raise DrillNotRun(str(exc)) from None

    def holds(self, backup_id: str) -> bool:
        with closing(self._client()) as client, self._answers():
            return self._head(client, backup_id) is not None

    def _head(self, client, name: str) -> dict | None:
        """The object's HEAD with its checksums, None if it is gone."""
        import botocore.exceptions

        try:
            return client.head_object(Bucket=self.config.bucket, Key=store_entries.object_key(self.config.prefix, name),
                                      ChecksumMode="ENABLED")
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in GONE:
                return None
            raise

    def _checksum_files(self, client, backups: list[BackupSnapshot]) -> set[str]:
        """The names of the backups' sidecar objects (`<name>.sha256`) and of SHA256SUMS manifests in the prefix's
        folder: one more listing, of names only."""
        deadline = Deadline(self._clock, self.config.timeout, f"listing the checksum files of {self.where}")
        sidecars = {backup.id + suffix for backup in backups for suffix in SIDECAR_SUFFIXES}
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=self._folder, PaginationConfig={"PageSize": PAGE_SIZE})
        names = set()
        for page in store_entries.parsed(self.where, pages):
            deadline.check()
            for item in page.get("Contents", ()):
                name = relative_name(str(item.get("Key", "")), self.config.prefix)
                if name in sidecars or SHA256_MANIFEST.fullmatch(name):
                    names.add(name)
        return names

    @property
    def _folder(self) -> str:
        return store_entries.object_key(self.config.prefix, "")

    def _candidate(self, backup: BackupSnapshot, head: dict) -> Candidate:
        modified = head.get("LastModified")
        checksum, reference = self._best_checksum(head, backup)
        return Candidate(backup_id=backup.id, path=backup.id, key=backup.key, size=int(head.get("ContentLength", 0)),
                         mtime=modified.timestamp() if modified else backup.completed_at, checksum=checksum,
                         reference=reference, version=str(head.get("ETag", "")))

    def _best_checksum(self, head: dict, backup: BackupSnapshot) -> tuple[str, str]:
        """A whole-object SHA-256 the store computed, else a sidecar's, else the MD5 ETag: a multipart upload's
        SHA-256 is a checksum of its parts' checksums (composite), never the content's."""
        sha256 = head.get("ChecksumSHA256")
        if (isinstance(sha256, str) and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
                and not _PART_COUNT.search(sha256) and not _PART_COUNT.search(str(head.get("ETag", "")))):
            try:
                return f"sha256:{base64.b64decode(sha256, validate=True).hex()}", "s3-sha256"
            except binascii.Error:
                pass
        if backup.checksum.startswith("sha256:"):
            return backup.checksum, "sidecar"
        md5 = self._md5(head)
        return (md5, "etag-md5") if md5 else ("", "")

    @contextmanager
    def _answers(self, name: str = ""):
        """botocore's errors as LocationErrors naming the bucket (and the object, for one that is gone or was
        replaced since it was listed)."""
        import botocore.exceptions

        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            if name and error.get("Code") in GONE:
                raise LocationError(f"{name} is gone from {self.where}") from None
            if name and error.get("Code") == "PreconditionFailed":
                raise LocationError(f"{name} in {self.where} was replaced since it was listed") from None
            raise LocationError(self._client_error(exc)) from None
        except botocore.exceptions.NoCredentialsError:
            raise LocationError(f"{self.where}: no credentials: set access_key_id and secret_access_key, "
                                "or the AWS environment") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise LocationError(f"{self.where}: {certificate_refusal(exc) or exc}") from None

    def _snapshots(self) -> Iterator[BackupSnapshot]:
        config = self.config
        deadline = Deadline(self._clock, config.timeout, f"listing {self.where}")
        with closing(self._client()) as client:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=config.bucket, Prefix=config.prefix, PaginationConfig={"PageSize": PAGE_SIZE})
            for page in store_entries.parsed(self.where, pages):
                deadline.check()
                for item in page.get("Contents", ()):
                    key = item.get("Key") if isinstance(item.get("Key"), str) else ""
                    name = relative_name(key, config.prefix)
                    if not key.endswith("/") and is_backup_name(name, config.pattern):
                        yield store_entries.snapshot(self.where, name, item.get("LastModified"), item.get("Size"),
                                                     self._md5(item))

    def _md5(self, item: dict) -> str:  # a listing's entry or a HEAD
        etag = item.get("ETag")
        match = _MD5_ETAG.fullmatch(etag) if self.config.etag_is_md5 and isinstance(etag, str) else None
        return f"md5:{match[1]}" if match else ""

    def _client(self):
        """A client per listing or restore, closed after it: cheap next to the work, nothing stale between polls,
        and no connection left behind."""
        config = self.config
        credentials = None
        if config.access_key_id is not None:
            credentials = (config.access_key_id.get_secret_value(), config.secret_access_key.get_secret_value())
        return make_client(config.endpoint_url, config.region, config.timeout, config.ca_file, credentials)

    def _client_error(self, exc) -> str:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return f"{self.where} does not exist"
        if code in ACCESS_DENIED or status == 403:
            return f"{self.where}: access denied ({code}); check access_key_id, secret_access_key and the policy"
        return f"{self.where}: {code or status}: {message}"


def make_client(endpoint_url: str | None, region: str | None, timeout: float, ca_file: Path | None,
                credentials: tuple[str, str] | None, path_style: bool = False):
    """A boto3 S3 client with bounded timeouts and retries; ca_file wins over AWS_CA_BUNDLE."""
    import boto3
    from botocore.config import Config as BotoConfig

    keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]} if credentials else {}
    tuning = BotoConfig(connect_timeout=timeout, read_timeout=timeout,
                        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
                        s3={"addressing_style": "path"} if path_style else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=tuning,
                                          verify=str(ca_file) if ca_file else None, **keys)


def key_names(client, bucket: str, prefix: str) -> list[str]:
    """Every key under the prefix (restic's fingerprint of its `snapshots/` folder), within the bounds of one
    listing (agent/net/paging.py; the keys' length stands for a page's size, which boto3 does not give)."""
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE_SIZE})
    names: list[str] = []
    listing = Listing()
    for page in pages:
        keys = [item["Key"] for item in page.get("Contents", ())]
        listing.add(len(keys), sum(len(key) for key in keys))
        names += keys
    return names


def _chunks(body) -> Iterable[bytes]:
    """A response body in CHUNK-sized reads."""
    while chunk := body.read(CHUNK):
        yield chunk


class _Folder:
    """The prefix's folder as a filelike.Tree, to read its checksum files: a ranged GET each, so a huge object under
    a checksum file's name is never read whole."""

    def __init__(self, client, bucket: str, folder: str, where: str):
        self._client, self._bucket, self._folder, self.where = client, bucket, folder, where

    def open(self, name: str):
        return self._client.get_object(Bucket=self._bucket, Key=self._folder + name,
                                       Range=f"bytes=0-{MANIFEST_LIMIT - 1}")["Body"]
