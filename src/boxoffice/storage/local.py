"""Files in a directory on disk (the embedded default: `var/files`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from boxoffice.storage.base import StoredFile, check_key

DEFAULT_CONTENT_TYPE = "application/octet-stream"
TMP_PREFIX = ".tmp-"
# Not found where a file is looked up: nothing there, a directory there (`a` when `a/b.pdf` is
# stored), or a file where a directory would be (`a.pdf/b` when `a.pdf` is stored). S3 has
# none of these, only keys; the directory answers like it.
_ABSENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def meta_path(path: Path) -> Path:
    """The content type lives beside the file, under a name no key can have (key parts start
    with a letter or digit): `invoices/a.pdf` -> `invoices/.a.pdf.meta.json`."""
    return path.with_name(f".{path.name}.meta.json")


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, self._path(key), data, content_type)

    @staticmethod
    def _put(path: Path, data: bytes, content_type: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"contentType": content_type}).encode()
        _write_atomic(meta_path(path), meta)
        _write_atomic(path, data)

    async def get(self, key: str) -> StoredFile | None:
        return await asyncio.to_thread(self._get, self._path(key))

    @staticmethod
    def _get(path: Path) -> StoredFile | None:
        try:
            data = path.read_bytes()
        except _ABSENT:
            return None
        try:
            meta = json.loads(meta_path(path).read_bytes())
            content_type = str(meta["contentType"])
        except (*_ABSENT, ValueError, KeyError, TypeError):
            content_type = DEFAULT_CONTENT_TYPE
        return StoredFile(data, content_type)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, self._path(key))

    @staticmethod
    def _delete(path: Path) -> None:
        for target in (path, meta_path(path)):
            with contextlib.suppress(*_ABSENT):
                target.unlink()

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, self._path(prefix))

    @classmethod
    def _delete_prefix(cls, path: Path) -> int:
        # Keys are paths: those starting with `a/b-` are the files `b-*` of directory `a` and
        # every file below its directories `b-*` (as S3 matches the key's characters).
        try:
            entries = [entry for entry in path.parent.iterdir() if entry.name.startswith(path.name)]
        except _ABSENT:
            return 0
        files = [entry for entry in entries if entry.is_file()]
        for directory in (entry for entry in entries if entry.is_dir()):
            files += (below for below in directory.rglob("*") if below.is_file())
        deleted = 0
        for file in files:
            if not file.name.startswith("."):  # content types and temporary files go with theirs
                cls._delete(file)
                deleted += 1
        return deleted

    async def download_url(self, key: str, filename: str) -> str | None:
        check_key(key)
        return None  # the API streams local files itself

    async def aclose(self) -> None:
        return None


def _write_atomic(target: Path, content: bytes) -> None:
    """Write to a temporary file beside `target`, then rename it into place: a reader sees
    the old file or the new one, never part of one, and a failed write leaves nothing."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not outlive the data in a crash
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
