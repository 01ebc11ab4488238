"""Files in an S3 bucket (AWS, or any S3-compatible service by endpoint URL).

boto3 is blocking: every call runs in a worker thread. One client per storage object, made
once; boto3 clients (unlike sessions) may be shared between threads. The bucket is not created
here: operators provision it (with its lifecycle and access policy).

The credentials need s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket's objects,
and s3:ListBucket on the bucket: without it S3 answers a missing key with 403 instead of 404,
and `get`/`exists` raise instead of reporting the file missing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from boxoffice.config import ConfigurationError
from boxoffice.core import admission
from boxoffice.storage.base import StoredFile, check_key

if TYPE_CHECKING:
    from boxoffice.config import Settings

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# What S3 (and S3-compatible services) call a missing object; HEAD answers carry no body, so
# only the status. A missing *bucket* (`NoSuchBucket`) is a misconfiguration, not a missing file.
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})

CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    # "standard": exponential back-off with jitter on throttling, 5xx and connection errors.
    retries={"mode": "standard", "max_attempts": 3},
    # SigV4 everywhere, presigned URLs included (valid up to the 7 days the settings allow).
    signature_version="s3v4",
    # As many pooled connections as asyncio's default thread pool has workers.
    max_pool_connections=32,
)


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


def attachment_disposition(filename: str) -> str:
    """A Content-Disposition header value that downloads the file as `filename`.

    The quoted `filename` is a plain-ASCII stand-in (no quotes, backslashes or control
    characters, which could break out of the quoted string or the header); when that changes
    the name, `filename*` (RFC 6266/8187) carries the exact name, percent-encoded UTF-8.
    """
    fallback = "".join(
        char if " " <= char <= "~" and char not in '"\\' else "_" for char in filename
    ).strip()
    if not fallback:
        fallback = "download"
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


class S3Storage:
    def __init__(self, client: Any, bucket: str, *, presign_seconds: int = 300) -> None:
        self.client = client
        self.bucket = bucket
        self.presign_seconds = presign_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        if not settings.s3_bucket:
            raise ConfigurationError("S3 storage needs BOXOFFICE_S3_BUCKET")
        access_key = settings.s3_access_key_id
        secret_key = settings.s3_secret_access_key
        if (access_key is None) != (secret_key is None):
            raise ConfigurationError(
                "set both BOXOFFICE_S3_ACCESS_KEY_ID and BOXOFFICE_S3_SECRET_ACCESS_KEY, or "
                "neither (then boto3 finds credentials itself: environment, profile, IAM role)"
            )
        # A session of its own: boto3's default session is shared, and sessions are not
        # thread-safe.
        client = boto3.session.Session().client(
            "s3",
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url or None,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key.get_secret_value() if secret_key else None,
            config=CLIENT_CONFIG,
        )
        return cls(client, settings.s3_bucket, presign_seconds=settings.s3_presign_seconds)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        admission.leave()  # no place held while S3 answers (core.admission)
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=check_key(key),
            Body=data,
            ContentType=content_type,
        )

    async def get(self, key: str) -> StoredFile | None:
        admission.leave()
        return await asyncio.to_thread(self._get, check_key(key))

    def _get(self, key: str) -> StoredFile | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return StoredFile(data, response.get("ContentType") or DEFAULT_CONTENT_TYPE)

    async def exists(self, key: str) -> bool:
        admission.leave()
        return await asyncio.to_thread(self._exists, check_key(key))

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        # S3 answers 204 whether or not there was an object.
        admission.leave()
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=check_key(key))

    async def delete_prefix(self, prefix: str) -> int:
        admission.leave()
        return await asyncio.to_thread(self._delete_prefix, check_key(prefix))

    def _delete_prefix(self, prefix: str) -> int:
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                deleted += 1
        return deleted

    async def download_url(self, key: str, filename: str) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": check_key(key),
            "ResponseContentDisposition": attachment_disposition(filename),
        }
        # Signing is local, but resolving (refreshing) credentials may ask the network.
        url: str = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params=params,
            ExpiresIn=self.presign_seconds,
        )
        return url

    async def aclose(self) -> None:
        close = getattr(self.client, "close", None)  # botocore >= 1.23
        if close is not None:
            close()
