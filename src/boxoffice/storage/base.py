"""The storage interface and the choice of backend from settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from boxoffice.config import Settings

# Keys are relative, slash-separated paths of plain names, e.g. `invoices/2026/<uuid>.pdf`:
# nothing a directory backend could be tricked into leaving its root with.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    if len(key) > 512 or not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"not a storage key: {key!r}")
    return key


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    content_type: str


class Storage(Protocol):
    """Files by key. Writing a key again replaces the file."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> StoredFile | None:
        """The file, or None if there is none under `key`."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the file; no error if there is none."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every file whose key starts with `prefix`; how many there were."""
        ...

    async def download_url(self, key: str, filename: str) -> str | None:
        """A time-limited URL the client can fetch the file from directly, or None when the
        API should stream it itself (the local directory)."""
        ...

    async def aclose(self) -> None: ...


def storage_from_settings(settings: Settings) -> Storage:
    if settings.s3_bucket:
        from boxoffice.storage.s3 import S3Storage  # boto3 is loaded only when used

        return S3Storage.from_settings(settings)
    from boxoffice.storage.local import LocalStorage

    return LocalStorage(settings.files_dir)
