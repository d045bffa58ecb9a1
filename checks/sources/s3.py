"""Backups as objects in an S3 bucket (AWS or compatible), listed with boto3.

`{kind: s3, bucket:, prefix:, endpoint_url:, pattern:}`: every object under the prefix
whose name (relative to the prefix's folder) matches the pattern is one backup,
completed when it was last modified. Only the listing is read, never the data: a cloud
copy is not downloaded to be verified. An object's ETag is its MD5 only for a single-part upload
without SSE-KMS or SSE-C; multipart ETags (`<hex>-<parts>`) are never taken for one, and
`etag_is_md5: false` turns the rest off for buckets encrypted with KMS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.net.paging import Listing
from agent.net.tls import certificate_refusal
from agent.ondisk import CaFile
from agent.redact import userinfo_in_url
from agent.secrets import HeaderSecret, Secret
from checks.model import BackupSnapshot, Location, LocationConfig
from checks.sources import store_entries
from checks.sources.filelike import Deadline, LocationError, is_backup_name, newest_first, relative_name

PAGE_SIZE = 1000  # S3's own maximum per ListObjectsV2 call
ATTEMPTS = 3  # botocore's "standard" retries: throttling, 5xx and connection errors, with backoff
ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')


class S3Location(Location):
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
        import botocore.exceptions

        try:
            return newest_first(self._snapshots())
        except botocore.exceptions.ClientError as exc:
            raise LocationError(self._client_error(exc)) from None
        except botocore.exceptions.NoCredentialsError:
            raise LocationError(f"{self.where}: no credentials: set access_key_id and secret_access_key, "
                                "or the AWS environment") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise LocationError(f"{self.where}: {certificate_refusal(exc) or exc}") from None

    def _snapshots(self) -> Iterator[BackupSnapshot]:
        config = self.config
        deadline = Deadline(self._clock, config.timeout, f"listing {self.where}")
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=config.bucket, Prefix=config.prefix, PaginationConfig={"PageSize": PAGE_SIZE})
        for page in store_entries.parsed(self.where, pages):
            deadline.check()
            for item in page.get("Contents", ()):
                key = item.get("Key") if isinstance(item.get("Key"), str) else ""
                name = relative_name(key, config.prefix)
                if not key.endswith("/") and is_backup_name(name, config.pattern):
                    yield store_entries.snapshot(self.where, name, item.get("LastModified"), item.get("Size"),
                                                 self._md5(item))

    def _md5(self, item: dict) -> str:
        etag = item.get("ETag")
        match = _MD5_ETAG.fullmatch(etag) if self.config.etag_is_md5 and isinstance(etag, str) else None
        return f"md5:{match[1]}" if match else ""

    def _client(self):
        """A client per listing: cheap next to the listing, and nothing stale between polls."""
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
