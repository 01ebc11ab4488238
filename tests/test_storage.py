"""File storage: the same behaviour from the directory backend and the S3 backend (against a
real moto S3 server on loopback), presigned download URLs, the choice of backend from
settings, and the directory backend's atomic writes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from boxoffice.config import ConfigurationError, Settings
from boxoffice.core.admission import Admission
from boxoffice.storage import Storage, StoredFile, storage_from_settings
from boxoffice.storage.local import LocalStorage
from boxoffice.storage.s3 import CLIENT_CONFIG, S3Storage
from tests.fakes.s3_server import FakeS3, serve_fake_s3

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


# ---------------------------------------------------------------------------------------------
# Fixtures


# AWS settings of the machine that would otherwise reach boto3 (profile, config files, keys,
# endpoint, region): the tests give their own in settings.
MACHINE_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeS3]:
    """One moto server for the module's S3 tests, in an AWS environment of their own (restored
    when the module is done)."""
    nowhere = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        for name in MACHINE_AWS_ENV:
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", str(nowhere / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("NO_PROXY", "no_proxy"):  # loopback, never through a proxy
            env.setenv(name, "127.0.0.1,localhost")
        with serve_fake_s3() as fake:
            yield fake


@pytest.fixture
def bucket(s3_server: FakeS3) -> str:
    """A fresh bucket for the test (production buckets are made by operators, not the app)."""
    name = f"boxoffice-test-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


def s3_settings(fake: FakeS3, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "var_dir": var_dir,
        "s3_endpoint_url": fake.endpoint_url,
        "s3_region": fake.region,
        "s3_access_key_id": fake.access_key_id,
        "s3_secret_access_key": fake.secret_access_key,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def s3_storage(s3_server: FakeS3, bucket: str) -> AsyncIterator[S3Storage]:
    # The client `from_settings` makes (its tests are below), from the module's boto3 session.
    storage = S3Storage(s3_server.client(config=CLIENT_CONFIG), bucket, presign_seconds=300)
    yield storage
    await storage.aclose()


@pytest.fixture
async def local_storage(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    storage = LocalStorage(tmp_path / "files")
    yield storage
    await storage.aclose()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each backend in turn (moto starts only for the S3 ones)."""
    found: Storage = request.getfixturevalue(f"{request.param}_storage")
    return found


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: straight to loopback, whatever proxy the environment names.
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# Both backends


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (PDF, "application/pdf"),
        (bytes(range(256)), "application/octet-stream"),
        ("Grüße\n".encode(), "text/plain; charset=utf-8"),
        (b"", "text/plain"),
    ],
    ids=["pdf", "binary", "text-with-charset", "empty"],
)
async def test_put_then_get_returns_the_bytes_and_the_content_type(
    storage: Storage, data: bytes, content_type: str
) -> None:
    await storage.put("invoices/2026/a.pdf", data, content_type)
    assert await storage.get("invoices/2026/a.pdf") == StoredFile(data, content_type)
    assert await storage.exists("invoices/2026/a.pdf")


async def test_putting_a_key_again_replaces_the_file_and_its_content_type(
    storage: Storage,
) -> None:
    await storage.put("reports/day.csv", b"a,b\n1,2\n" * 100, "text/csv")
    await storage.put("reports/day.csv", PDF, "application/pdf")
    assert await storage.get("reports/day.csv") == StoredFile(PDF, "application/pdf")


async def test_a_missing_key_has_no_file(storage: Storage) -> None:
    assert await storage.get("tickets/missing.pdf") is None
    assert not await storage.exists("tickets/missing.pdf")


async def test_delete_removes_the_file_and_is_idempotent(storage: Storage) -> None:
    await storage.delete("tickets/never-stored.pdf")  # nothing there: no error
    await storage.put("tickets/t.pdf", PDF, "application/pdf")
    await storage.put("tickets/other.pdf", b"other", "application/pdf")
    await storage.delete("tickets/t.pdf")
    await storage.delete("tickets/t.pdf")
    assert await storage.get("tickets/t.pdf") is None
    assert not await storage.exists("tickets/t.pdf")
    assert await storage.get("tickets/other.pdf") == StoredFile(b"other", "application/pdf")


async def test_delete_prefix_removes_every_file_whose_key_starts_with_it(storage: Storage) -> None:
    doomed = ("invoices/2026/a-1.pdf", "invoices/2026/a-2.pdf", "invoices/2026/a-x/deep.pdf")
    kept = ("invoices/2026/ab.pdf", "invoices/2026/b-a-1.pdf", "invoices/2027/a-1.pdf")
    for key in doomed + kept:
        await storage.put(key, key.encode(), "application/pdf")
    assert await storage.delete_prefix("invoices/2026/a-") == len(doomed)
    for key in doomed:
        assert not await storage.exists(key), key
        assert await storage.get(key) is None, key
    for key in kept:
        assert await storage.get(key) == StoredFile(key.encode(), "application/pdf"), key
    assert await storage.delete_prefix("invoices/2026/a-") == 0
    assert await storage.delete_prefix("nothing/here-") == 0
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.delete_prefix("../invoices")


async def test_a_prefix_or_a_path_below_a_file_is_no_file(storage: Storage) -> None:
    # S3 has only keys; the directory backend has directories, and must answer the same.
    await storage.put("tickets/2026/t.pdf", PDF, "application/pdf")
    for key in ("tickets", "tickets/2026", "tickets/2026/t.pdf/x"):
        assert await storage.get(key) is None, key
        assert not await storage.exists(key), key
        await storage.delete(key)
    assert await storage.get("tickets/2026/t.pdf") == StoredFile(PDF, "application/pdf")


async def test_keys_named_like_the_directory_backends_bookkeeping_are_ordinary_files(
    storage: Storage,
) -> None:
    await storage.put("docs/a.pdf", PDF, "application/pdf")
    await storage.put("docs/a.pdf.meta.json", b'{"x": 1}', "application/json")
    assert await storage.get("docs/a.pdf") == StoredFile(PDF, "application/pdf")
    assert await storage.get("docs/a.pdf.meta.json") == StoredFile(b'{"x": 1}', "application/json")
    await storage.delete("docs/a.pdf.meta.json")
    assert await storage.get("docs/a.pdf") == StoredFile(PDF, "application/pdf")


BAD_KEYS = [
    "..",
    "../escape.pdf",
    "tickets/../../escape.pdf",
    "tickets/..",
    "/etc/passwd",
    "/tickets/t.pdf",
    "tickets\\t.pdf",
    "..\\escape.pdf",
    "C:\\escape.pdf",
    "",
    "tickets//t.pdf",
    "tickets/",
    "/",
    "./t.pdf",
    ".tmp-abc",
    "tickets/.t.pdf.meta.json",
    "t.pdf\n",
    "x" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_are_not_plain_relative_paths_are_refused_before_any_io(
    storage: Storage, key: str, tmp_path: Path
) -> None:
    (tmp_path / "escape.pdf").write_bytes(b"outside")
    before = tree(tmp_path)
    sent: list[str] = []
    if isinstance(storage, S3Storage):
        storage.client.meta.events.register(
            "before-send.s3", lambda request, **_: sent.append(request.url)
        )
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.put(key, b"x", "text/plain")
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.get(key)
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.exists(key)
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.delete(key)
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.download_url(key, "t.pdf")
    assert sent == []
    assert tree(tmp_path) == before
    assert (tmp_path / "escape.pdf").read_bytes() == b"outside"


async def test_a_file_of_a_few_megabytes_round_trips(storage: Storage) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    await storage.put("reports/big.bin", data, "application/octet-stream")
    got = await storage.get("reports/big.bin")
    assert got is not None
    assert (len(got.data), digest(got.data)) == (len(data), digest(data))
    assert got.content_type == "application/octet-stream"


async def test_a_reader_sees_the_old_file_or_the_new_one_never_part_of_one(
    storage: Storage,
) -> None:
    versions = [bytes([n]) * (512 * 1024) for n in range(2)]
    known = {digest(v) for v in versions}
    await storage.put("reports/live.bin", versions[0], "application/octet-stream")
    writing = True

    async def writer() -> None:
        nonlocal writing
        for n in range(8):
            await storage.put("reports/live.bin", versions[n % 2], "application/octet-stream")
        writing = False

    async def reader() -> int:
        reads = 0
        while writing or reads == 0:
            got = await storage.get("reports/live.bin")
            assert got is not None
            assert digest(got.data) in known
            reads += 1
        return reads

    _, reads = await asyncio.gather(writer(), reader())
    assert reads > 0


# ---------------------------------------------------------------------------------------------
# Download URLs


async def test_the_directory_backend_has_no_download_url(local_storage: LocalStorage) -> None:
    await local_storage.put("tickets/t.pdf", PDF, "application/pdf")
    assert await local_storage.download_url("tickets/t.pdf", "ticket.pdf") is None


@pytest.mark.parametrize(
    ("filename", "ascii_name"),
    [
        ("ticket-2026-05-01.pdf", "ticket-2026-05-01.pdf"),
        ("Rechnung März 2026.pdf", "Rechnung M_rz 2026.pdf"),
        ('say "cheese"\\.pdf', "say _cheese__.pdf"),
        ("t.pdf\r\nX-Injected: yes", "t.pdf__X-Injected: yes"),
    ],
    ids=["plain", "non-ascii", "quotes-backslash", "crlf"],
)
async def test_s3_download_url_serves_the_file_as_an_attachment_named_filename(
    s3_storage: S3Storage, http: httpx.AsyncClient, filename: str, ascii_name: str
) -> None:
    await s3_storage.put("tickets/t.pdf", PDF, "application/pdf")
    url = await s3_storage.download_url("tickets/t.pdf", filename)
    assert url is not None
    assert url.startswith(f"{s3_storage.client.meta.endpoint_url}/{s3_storage.bucket}/")
    assert "X-Amz-Expires=300&" in url

    response = await http.get(url)

    assert response.status_code == 200, response.text
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert "x-injected" not in response.headers
    disposition = response.headers["content-disposition"]
    parts = [part.strip() for part in disposition.split(";")]
    assert parts[0] == "attachment"
    assert parts[1] == f'filename="{ascii_name}"'
    if ascii_name == filename:
        assert len(parts) == 2
    else:
        assert parts[2].startswith("filename*=UTF-8''")
        assert unquote(parts[2].removeprefix("filename*=UTF-8''"), errors="strict") == filename


async def test_an_expired_download_url_is_refused(
    s3_server: FakeS3, bucket: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    storage = S3Storage.from_settings(
        s3_settings(s3_server, tmp_path, s3_bucket=bucket, s3_presign_seconds=1)
    )
    try:
        await storage.put("tickets/t.pdf", PDF, "application/pdf")
        url = await storage.download_url("tickets/t.pdf", "ticket.pdf")
    finally:
        await storage.aclose()
    assert url is not None
    assert "X-Amz-Expires=1&" in url
    await asyncio.sleep(2.1)

    response = await http.get(url)

    assert response.status_code == 403
    assert "Request has expired" in response.text
    assert PDF not in response.content


async def test_a_download_url_with_another_filename_put_in_is_refused(
    s3_storage: S3Storage, http: httpx.AsyncClient
) -> None:
    await s3_storage.put("tickets/t.pdf", PDF, "application/pdf")
    url = await s3_storage.download_url("tickets/t.pdf", "ticket.pdf")
    assert url is not None
    assert "ticket.pdf" in url
    # The disposition is part of what was signed.
    response = await http.get(url.replace("ticket.pdf", "evil.exe"))
    assert response.status_code == 403
    assert "SignatureDoesNotMatch" in response.text


# ---------------------------------------------------------------------------------------------
# The backend from settings


def test_without_a_bucket_files_go_to_the_var_directory(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, s3_bucket=None)
    storage = storage_from_settings(settings)
    assert isinstance(storage, LocalStorage)
    assert storage.root == settings.files_dir == tmp_path / "files"


async def test_with_a_bucket_files_go_to_s3(s3_server: FakeS3, bucket: str, tmp_path: Path) -> None:
    settings = s3_settings(s3_server, tmp_path, s3_bucket=bucket)
    storage = storage_from_settings(settings)
    try:
        assert isinstance(storage, S3Storage)
        assert storage.bucket == bucket
        assert storage.presign_seconds == 300
        assert storage.client.meta.endpoint_url == s3_server.endpoint_url
        assert storage.client.meta.region_name == "us-east-1"
        await storage.put("tickets/t.pdf", PDF, "application/pdf")
    finally:
        await storage.aclose()
    # Behind the storage's back: the object is in the bucket, with its content type.
    client = s3_server.client()
    try:
        head = client.head_object(Bucket=bucket, Key="tickets/t.pdf")
    finally:
        client.close()
    assert head["ContentType"] == "application/pdf"
    assert head["ContentLength"] == len(PDF)
    assert not (tmp_path / "files").exists()


def test_s3_credentials_are_both_set_or_neither(s3_server: FakeS3, tmp_path: Path) -> None:
    settings = s3_settings(s3_server, tmp_path, s3_bucket="b", s3_secret_access_key=None)
    with pytest.raises(ConfigurationError, match="S3_SECRET_ACCESS_KEY"):
        storage_from_settings(settings)


# ---------------------------------------------------------------------------------------------
# The directory backend writes atomically


async def test_local_put_leaves_only_the_file_and_its_content_type(
    local_storage: LocalStorage,
) -> None:
    await local_storage.put("tickets/t.pdf", PDF, "application/pdf")
    await local_storage.put("tickets/t.pdf", PDF + b"v2", "application/pdf")
    assert tree(local_storage.root) == ["tickets", "tickets/.t.pdf.meta.json", "tickets/t.pdf"]
    assert (local_storage.root / "tickets" / "t.pdf").read_bytes() == PDF + b"v2"
    await local_storage.delete("tickets/t.pdf")
    assert tree(local_storage.root) == ["tickets"]


async def test_local_delete_prefix_leaves_no_content_type_behind(
    local_storage: LocalStorage,
) -> None:
    await local_storage.put("invoices/2026/a-1.pdf", PDF, "application/pdf")
    await local_storage.put("invoices/2026/b-1.pdf", PDF, "application/pdf")
    assert await local_storage.delete_prefix("invoices/2026/a-") == 1
    assert tree(local_storage.root) == [
        "invoices",
        "invoices/2026",
        "invoices/2026/.b-1.pdf.meta.json",
        "invoices/2026/b-1.pdf",
    ]


async def test_a_failed_local_put_leaves_the_old_file_and_no_temporary_one(
    local_storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await local_storage.put("tickets/t.pdf", PDF, "application/pdf")
    target = local_storage.root / "tickets" / "t.pdf"
    real_replace = os.replace

    def disk_full_at_the_file(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(dst) == target:
            raise OSError(28, "No space left on device")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full_at_the_file)
    with pytest.raises(OSError, match="No space left"):
        await local_storage.put("tickets/t.pdf", b"half a new file", "application/pdf")
    monkeypatch.undo()

    assert target.read_bytes() == PDF
    assert tree(local_storage.root) == ["tickets", "tickets/.t.pdf.meta.json", "tickets/t.pdf"]


async def test_a_local_file_without_its_content_type_is_octet_stream(
    local_storage: LocalStorage,
) -> None:
    await local_storage.put("tickets/t.pdf", PDF, "application/pdf")
    (local_storage.root / "tickets" / ".t.pdf.meta.json").unlink()
    assert await local_storage.get("tickets/t.pdf") == StoredFile(PDF, "application/octet-stream")


async def test_a_unit_of_work_waiting_for_s3_gives_its_place_up(s3_storage: S3Storage) -> None:
    """One unit of work at a time (core.admission): while one waits for S3, another gets in."""
    gate = Admission(1, timeout=3)
    asked = asyncio.Event()

    async def another_unit() -> bool:
        await asked.wait()
        async with gate.enter():
            return True

    waiting = asyncio.create_task(another_unit())  # outside the first unit's context
    async with gate.enter():
        await s3_storage.put("admission/probe.txt", b"probe", "text/plain")
        asked.set()
        assert await asyncio.wait_for(waiting, 2)
