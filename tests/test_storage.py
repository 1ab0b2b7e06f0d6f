"""Storage contract tests: one class run against every backend, cachelib style.

The S3 backend runs against a real moto server over HTTP (started once per
session), so requests are signed, sent and parsed exactly as against AWS.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from converter import config as config_module
from converter.storage import (
    LocalStorage,
    ObjectMissing,
    S3Storage,
    Storage,
    StorageError,
    attachment_disposition,
    open_storage,
)
from converter.storage.base import TEMP_PREFIX
from tests.support.moto import BUCKET, CREDENTIALS
from tests.support.moto import raw_client as _raw_client
from tests.support.served import free_port

MIB = 1024 * 1024

BAD_KEYS = [
    "",
    "/etc/passwd",
    "..",
    "../outside",
    "artifacts/../../outside",
    "artifacts/..",
    "./artifacts/x",
    "artifacts//x",
    "artifacts/x/",
    "artifacts\\x",
    "artifacts/x\x00.pdf",
    f"artifacts/{TEMP_PREFIX}abc",
    "a" * 1025,
]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and no developer AWS config leaking into the test."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(moto_endpoint: str, aws_env: None) -> S3Storage:
    """An S3Storage with a fresh prefix, so tests share the bucket without seeing each other."""
    return S3Storage(BUCKET, prefix=f"t-{uuid.uuid4().hex}/", endpoint_url=moto_endpoint)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Every backend, each empty."""
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    backend: S3Storage = request.getfixturevalue("s3")
    return backend


class TestStorageContract:
    """What every backend promises; see converter.storage.base.Storage."""

    def test_is_a_storage(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)

    def test_bytes_round_trip(self, storage: Storage) -> None:
        data = bytes(range(256)) * 5
        assert storage.put_bytes("originals/f1", data, "application/octet-stream") == len(data)
        assert storage.get_bytes("originals/f1") == data

    def test_empty_object_exists(self, storage: Storage) -> None:
        assert storage.put_bytes("artifacts/f1/empty.txt", b"", "text/plain") == 0
        assert storage.exists("artifacts/f1/empty.txt")
        assert storage.size("artifacts/f1/empty.txt") == 0
        assert storage.get_bytes("artifacts/f1/empty.txt") == b""

    def test_file_round_trip(self, storage: Storage, tmp_path: Path) -> None:
        # Larger than the local copy chunk and S3's multipart threshold, and not a multiple.
        data = os.urandom(9 * MIB + 17)
        source = tmp_path / "upload.bin"
        source.write_bytes(data)
        assert storage.put_file("artifacts/f1/big.pdf", source, "application/pdf") == len(data)
        source.unlink()  # the stored object must not depend on the source file
        assert storage.get_bytes("artifacts/f1/big.pdf") == data
        target = tmp_path / "download.bin"
        storage.download_to("artifacts/f1/big.pdf", target)
        assert target.read_bytes() == data

    def test_download_replaces_existing_file(self, storage: Storage, tmp_path: Path) -> None:
        storage.put_bytes("originals/f1", b"new", "text/plain")
        target = tmp_path / "engine-input.docx"
        target.write_bytes(b"old and longer")
        storage.download_to("originals/f1", target)
        assert target.read_bytes() == b"new"

    def test_unicode_key(self, storage: Storage) -> None:
        key = "artifacts/f1/Résumé final (1).pdf"
        storage.put_bytes(key, b"%PDF", "application/pdf")
        assert storage.get_bytes(key) == b"%PDF"

    def test_put_file_missing_source(self, storage: Storage, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            storage.put_file("originals/f1", tmp_path / "nope", "text/plain")
        assert not storage.exists("originals/f1")

    def test_overwrite_with_shorter(self, storage: Storage, tmp_path: Path) -> None:
        storage.put_bytes("originals/f1", b"first version, long", "text/plain")
        storage.put_bytes("originals/f1", b"second", "text/plain")
        assert storage.get_bytes("originals/f1") == b"second"
        assert storage.size("originals/f1") == 6
        source = tmp_path / "third"
        source.write_bytes(b"3")
        storage.put_file("originals/f1", source, "text/plain")
        assert storage.get_bytes("originals/f1") == b"3"

    def test_exists_and_size(self, storage: Storage) -> None:
        assert storage.exists("originals/f1") is False
        assert storage.size("originals/f1") is None
        storage.put_bytes("originals/f1", b"12345", "text/plain")
        assert storage.exists("originals/f1") is True
        assert storage.size("originals/f1") == 5

    def test_missing_object(self, storage: Storage, tmp_path: Path) -> None:
        with pytest.raises(ObjectMissing) as info:
            storage.get_bytes("originals/absent")
        assert isinstance(info.value, KeyError) and isinstance(info.value, StorageError)
        assert info.value.key == "originals/absent"
        assert "originals/absent" in str(info.value)
        target = tmp_path / "out.bin"
        with pytest.raises(ObjectMissing):
            storage.download_to("originals/absent", target)
        assert not target.exists()

    def test_directory_like_key_is_not_an_object(self, storage: Storage) -> None:
        storage.put_bytes("artifacts/f1/a.pdf", b"a", "application/pdf")
        assert not storage.exists("artifacts/f1")
        assert storage.size("artifacts/f1") is None
        with pytest.raises(ObjectMissing):
            storage.get_bytes("artifacts/f1")
        storage.delete("artifacts/f1")
        assert storage.get_bytes("artifacts/f1/a.pdf") == b"a"

    def test_delete_is_idempotent(self, storage: Storage) -> None:
        storage.delete("originals/never-stored")
        storage.put_bytes("originals/f1", b"x", "text/plain")
        storage.put_bytes("originals/f2", b"y", "text/plain")
        storage.delete("originals/f1")
        assert not storage.exists("originals/f1")
        storage.delete("originals/f1")
        assert storage.get_bytes("originals/f2") == b"y"

    def test_delete_prefix(self, storage: Storage) -> None:
        doomed = ["artifacts/f1/a.pdf", "artifacts/f1/b.png", "artifacts/f1/pages/1.png"]
        kept = ["artifacts/f10/c.pdf", "artifacts/f2/d.pdf", "originals/f1"]
        for key in doomed + kept:
            storage.put_bytes(key, key.encode(), "application/octet-stream")
        assert storage.delete_prefix("artifacts/f1/") == 3
        assert [k for k in doomed if storage.exists(k)] == []
        assert [storage.get_bytes(k) for k in kept] == [k.encode() for k in kept]
        assert storage.delete_prefix("artifacts/f1/") == 0
        assert storage.delete_prefix("artifacts/nothing-here/") == 0
        # A plain string prefix: "artifacts/f1" also matches "artifacts/f10/...".
        assert storage.delete_prefix("artifacts/f1") == 1
        assert storage.exists("artifacts/f2/d.pdf") and storage.exists("originals/f1")
        storage.put_bytes("artifacts/f1/a.pdf", b"again", "application/pdf")
        assert storage.get_bytes("artifacts/f1/a.pdf") == b"again"

    def test_delete_prefix_across_pages(self, storage: Storage) -> None:
        # One more than a ListObjectsV2 page / DeleteObjects batch.
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: storage.put_bytes(f"artifacts/many/{i:04d}", b"", "text/plain"),
                    range(1001),
                )
            )
        storage.put_bytes("artifacts/other", b"keep", "text/plain")
        assert storage.delete_prefix("artifacts/many/") == 1001
        assert not storage.exists("artifacts/many/0000")
        assert not storage.exists("artifacts/many/1000")
        assert storage.get_bytes("artifacts/other") == b"keep"

    def test_list_objects(self, storage: Storage) -> None:
        before = datetime.now(UTC) - timedelta(minutes=5)  # slack for the S3 server's clock
        listed = ["artifacts/f1/a.pdf", "artifacts/f1/pages/1.png", "artifacts/f10/c.pdf"]
        for key in [*listed, "originals/f1", "content/x.pdf"]:
            storage.put_bytes(key, key.encode(), "application/octet-stream")
        found = {o.key: o for o in storage.list_objects("artifacts/")}
        assert sorted(found) == sorted(listed)
        assert all(o.size == len(o.key) and before < o.modified <= datetime.now(UTC)
                   + timedelta(minutes=5) for o in found.values())
        # A plain string prefix, as for delete_prefix.
        assert sorted(o.key for o in storage.list_objects("artifacts/f1")) == sorted(listed)
        assert [o.key for o in storage.list_objects("artifacts/f1/pages/")] == [listed[1]]
        assert list(storage.list_objects("nothing/")) == []
        with pytest.raises(ValueError):
            list(storage.list_objects(""))

    def test_list_objects_skips_writes_in_flight(self, tmp_path: Path) -> None:
        local = LocalStorage(tmp_path / "objects")
        local.put_bytes("artifacts/f1/a.pdf", b"%PDF", "application/pdf")
        (tmp_path / "objects" / "artifacts" / "f1" / f"{TEMP_PREFIX}half").write_bytes(b"%P")
        assert [o.key for o in local.list_objects("artifacts/")] == ["artifacts/f1/a.pdf"]

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused(self, storage: Storage, key: str, tmp_path: Path) -> None:
        source = tmp_path / "src"
        source.write_bytes(b"x")
        calls: dict[str, Callable[[], object]] = {
            "put_file": lambda: storage.put_file(key, source, "text/plain"),
            "put_bytes": lambda: storage.put_bytes(key, b"x", "text/plain"),
            "get_bytes": lambda: storage.get_bytes(key),
            "download_to": lambda: storage.download_to(key, tmp_path / "out"),
            "exists": lambda: storage.exists(key),
            "size": lambda: storage.size(key),
            "delete": lambda: storage.delete(key),
            "local_path": lambda: storage.local_path(key),
            "presigned_url": lambda: storage.presigned_url(
                key, filename="x", content_type="text/plain", expires_in=60
            ),
        }
        for name, call in calls.items():
            with pytest.raises(ValueError):
                call()
                pytest.fail(f"{name} accepted {key!r}")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("prefix", ["", "/artifacts/", "../", "artifacts/../", "a\\b", "a//"])
    def test_bad_prefixes_are_refused(self, storage: Storage, prefix: str) -> None:
        storage.put_bytes("artifacts/f1/a.pdf", b"a", "application/pdf")
        with pytest.raises(ValueError):
            storage.delete_prefix(prefix)
        assert storage.exists("artifacts/f1/a.pdf")

    def test_local_path_is_none_or_the_object(self, storage: Storage) -> None:
        storage.put_bytes("artifacts/f1/a.pdf", b"%PDF-1.7", "application/pdf")
        path = storage.local_path("artifacts/f1/a.pdf")
        assert path is None or path.read_bytes() == b"%PDF-1.7"

    def test_check_passes(self, storage: Storage) -> None:
        storage.check()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class _FailingReader:
    """A binary file whose second read() raises, like a disk error in the middle of a copy."""

    def __init__(self, real: Any, error: BaseException) -> None:
        self.real = real
        self.error = error
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise self.error
        data: bytes = self.real.read(size)
        return data

    def __enter__(self) -> _FailingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()


def _failing_path(path: Path, error: BaseException, readers: list[_FailingReader]) -> Path:
    class FailingPath(type(path)):  # type: ignore[misc]
        def open(self, *args: Any, **kwargs: Any) -> Any:
            reader = _FailingReader(super().open(*args, **kwargs), error)
            readers.append(reader)
            return reader

    failing: Path = FailingPath(path)
    return failing


class TestLocalStorage:
    """Properties only the filesystem backend has: atomic renames, temp files, directories."""

    @pytest.fixture
    def local(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "objects")

    def test_layout_and_no_temp_files(self, local: LocalStorage, tmp_path: Path) -> None:
        source = tmp_path / "src.pdf"
        source.write_bytes(b"%PDF")
        local.put_file("artifacts/f1/a.pdf", source, "application/pdf")
        local.put_bytes("originals/f1", b"doc", "application/msword")
        local.put_bytes("originals/f1", b"doc v2", "application/msword")
        assert _files(local.root) == ["artifacts/f1/a.pdf", "originals/f1"]
        assert (local.root / "originals" / "f1").read_bytes() == b"doc v2"
        assert source.read_bytes() == b"%PDF"  # copied, not moved

    def test_objects_are_private(self, local: LocalStorage) -> None:
        local.put_bytes("originals/f1", b"secret", "text/plain")
        assert (local.root / "originals" / "f1").stat().st_mode & 0o077 == 0

    @pytest.mark.parametrize(
        ("error", "raised"),
        [
            (OSError(errno.EIO, "simulated I/O error"), StorageError),
            (KeyboardInterrupt(), KeyboardInterrupt),
        ],
    )
    def test_failed_copy_keeps_previous_object(
        self,
        local: LocalStorage,
        tmp_path: Path,
        error: BaseException,
        raised: type[BaseException],
    ) -> None:
        local.put_bytes("originals/f1", b"previous", "text/plain")
        source = tmp_path / "big"
        source.write_bytes(os.urandom(3 * MIB))
        readers: list[_FailingReader] = []
        with pytest.raises(raised):
            local.put_file("originals/f1", _failing_path(source, error, readers), "text/plain")
        assert [r.reads for r in readers] == [2]  # it failed after writing one chunk
        assert local.get_bytes("originals/f1") == b"previous"
        assert _files(local.root) == ["originals/f1"]

    def test_failed_fsync_keeps_previous_object(
        self, local: LocalStorage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        local.put_bytes("originals/f1", b"previous", "text/plain")

        def broken_fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(StorageError, match="No space left.*CONVERTER_DATA_DIR"):
            local.put_bytes("originals/f1", b"next", "text/plain")
        monkeypatch.undo()
        assert local.get_bytes("originals/f1") == b"previous"
        assert _files(local.root) == ["originals/f1"]

    def test_delete_prefix_prunes_directories_and_spares_writes_in_flight(
        self, local: LocalStorage
    ) -> None:
        local.put_bytes("artifacts/f1/a.pdf", b"a", "application/pdf")
        local.put_bytes("artifacts/f1/pages/1.png", b"1", "image/png")
        local.put_bytes("artifacts/f2/b.pdf", b"b", "application/pdf")
        assert local.delete_prefix("artifacts/f1/") == 2
        assert not (local.root / "artifacts" / "f1").exists()
        assert (local.root / "artifacts" / "f2" / "b.pdf").is_file()

        in_flight = local.root / "artifacts" / "f2" / f"{TEMP_PREFIX}upload"
        in_flight.write_bytes(b"partial")
        assert local.delete_prefix("artifacts/f2/") == 1
        assert in_flight.read_bytes() == b"partial"

    def test_local_path(self, local: LocalStorage) -> None:
        path = local.local_path("artifacts/f1/a.pdf")
        assert path == local.root / "artifacts" / "f1" / "a.pdf"
        assert not path.exists()  # no I/O: callers check presence themselves
        local.put_bytes("artifacts/f1/a.pdf", b"%PDF", "application/pdf")
        assert path.read_bytes() == b"%PDF"
        local.delete("artifacts/f1/a.pdf")
        assert not path.exists()

    def test_no_presigned_urls(self, local: LocalStorage) -> None:
        local.put_bytes("artifacts/f1/a.pdf", b"%PDF", "application/pdf")
        url = local.presigned_url(
            "artifacts/f1/a.pdf", filename="a.pdf", content_type="application/pdf", expires_in=60
        )
        assert url is None

    def test_check_creates_root(self, local: LocalStorage) -> None:
        assert not local.root.exists()
        local.check()
        assert local.root.is_dir()
        assert _files(local.root) == []

    def test_check_fails_when_root_cannot_be_created(self, tmp_path: Path) -> None:
        # A file where a directory should be: fails for root too, unlike chmod.
        blocker = tmp_path / "data"
        blocker.write_text("not a directory")
        local = LocalStorage(blocker / "objects")
        with pytest.raises(StorageError, match="CONVERTER_DATA_DIR"):
            local.check()
        with pytest.raises(StorageError, match="CONVERTER_DATA_DIR"):
            local.put_bytes("originals/f1", b"x", "text/plain")

    def test_download_to_missing_directory(self, local: LocalStorage, tmp_path: Path) -> None:
        local.put_bytes("originals/f1", b"x", "text/plain")
        with pytest.raises(StorageError):
            local.download_to("originals/f1", tmp_path / "no-such-dir" / "out")
        assert not (tmp_path / "no-such-dir").exists()


@pytest.mark.s3
class TestS3Storage:
    """Properties only the S3 backend has: prefixes, content types, presigned URLs, buckets."""

    def test_objects_live_under_prefix_with_content_type(
        self, s3: S3Storage, moto_endpoint: str, tmp_path: Path
    ) -> None:
        source = tmp_path / "a.pdf"
        source.write_bytes(b"%PDF")
        s3.put_file("artifacts/f1/a.pdf", source, "application/pdf")
        s3.put_bytes("artifacts/f1/1.png", b"\x89PNG", "image/png")
        raw = _raw_client(moto_endpoint)
        listed = raw.list_objects_v2(Bucket=BUCKET, Prefix=s3.prefix)["Contents"]
        assert sorted(o["Key"] for o in listed) == [
            s3.prefix + "artifacts/f1/1.png",
            s3.prefix + "artifacts/f1/a.pdf",
        ]
        pdf = raw.head_object(Bucket=BUCKET, Key=s3.prefix + "artifacts/f1/a.pdf")
        png = raw.head_object(Bucket=BUCKET, Key=s3.prefix + "artifacts/f1/1.png")
        assert (pdf["ContentType"], png["ContentType"]) == ("application/pdf", "image/png")

    def test_prefixes_isolate_stores(self, s3: S3Storage, moto_endpoint: str) -> None:
        other = S3Storage(BUCKET, prefix=s3.prefix.rstrip("/"), endpoint_url=moto_endpoint)
        assert other.prefix == s3.prefix  # "p" and "p/" mean the same folder
        neighbour = S3Storage(BUCKET, prefix=s3.prefix + "x", endpoint_url=moto_endpoint)
        s3.put_bytes("originals/f1", b"mine", "text/plain")
        neighbour.put_bytes("originals/f1", b"theirs", "text/plain")
        assert other.get_bytes("originals/f1") == b"mine"
        assert s3.delete_prefix("originals/") == 1
        assert neighbour.get_bytes("originals/f1") == b"theirs"

    @pytest.mark.parametrize(
        ("filename", "ascii_name"),
        [("report.pdf", "report.pdf"), ('Résumé "Q3" 年.pdf', "R_sum_ _Q3_ _.pdf")],
    )
    def test_presigned_url_downloads_as_attachment(
        self, s3: S3Storage, filename: str, ascii_name: str
    ) -> None:
        data = os.urandom(4096)
        s3.put_bytes("artifacts/f1/out.pdf", data, "application/octet-stream")
        url = s3.presigned_url(
            "artifacts/f1/out.pdf",
            filename=filename,
            content_type="application/pdf",
            expires_in=300,
        )
        assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
        response = requests.get(url, timeout=10)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["Content-Type"] == "application/pdf"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith(f'attachment; filename="{ascii_name}"')
        if filename != ascii_name:
            encoded = disposition.split("filename*=UTF-8''", 1)[1]
            assert unquote(encoded, errors="strict") == filename

    def test_presigned_url_expiry_limits(self, s3: S3Storage) -> None:
        for bad in (0, -1, 7 * 24 * 3600 + 1):
            with pytest.raises(ValueError, match="expires_in"):
                s3.presigned_url("a", filename="a", content_type="text/plain", expires_in=bad)

    def test_missing_bucket(self, moto_endpoint: str, aws_env: None) -> None:
        store = S3Storage("no-such-bucket-here", endpoint_url=moto_endpoint)
        with pytest.raises(StorageError, match="CONVERTER_S3_BUCKET"):
            store.check()
        # A missing bucket must not pass for a missing object.
        with pytest.raises(StorageError, match="NoSuchBucket") as info:
            store.get_bytes("originals/f1")
        assert not isinstance(info.value, ObjectMissing)
        with pytest.raises(StorageError, match="CONVERTER_S3_BUCKET"):
            store.put_bytes("originals/f1", b"x", "text/plain")

    def test_unreachable_endpoint(self, aws_env: None) -> None:
        store = S3Storage(BUCKET, endpoint_url=f"http://127.0.0.1:{free_port()}")
        with pytest.raises(StorageError, match="CONVERTER_S3_ENDPOINT_URL"):
            store.check()
        with pytest.raises(StorageError, match="CONVERTER_S3_ENDPOINT_URL"):
            store.get_bytes("originals/f1")

    def test_open_storage_s3(self, moto_endpoint: str, aws_env: None) -> None:
        prefix = f"cfg-{uuid.uuid4().hex}"
        config = config_module.load(
            environ={
                "CONVERTER_STORAGE": "s3",
                "CONVERTER_S3_BUCKET": BUCKET,
                "CONVERTER_S3_PREFIX": prefix,
                "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
            }
        )
        store = open_storage(config)
        assert isinstance(store, S3Storage)
        store.check()
        store.put_bytes("originals/f1", b"via config", "text/plain")
        raw = _raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"{prefix}/originals/f1")
        assert raw["Body"].read() == b"via config"


def test_open_storage_local(tmp_path: Path) -> None:
    config = config_module.load(environ={"CONVERTER_DATA_DIR": str(tmp_path)})
    store = open_storage(config)
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path.resolve() / "objects"


def test_local_backend_does_not_import_boto3() -> None:
    code = (
        "import sys, converter.storage as s\n"
        "s.LocalStorage\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_s3_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError, as if boto3 were not installed.
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.setitem(sys.modules, "boto3.exceptions", None)
    with pytest.raises(StorageError, match="pip install boto3"):
        S3Storage("bucket")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ("a;b c.pdf", 'attachment; filename="a;b c.pdf"'),
        ('q"uo\\te.pdf', "attachment; filename=\"q_uo_te.pdf\"; filename*=UTF-8''q%22uo%5Cte.pdf"),
        ("ü.pdf", "attachment; filename=\"_.pdf\"; filename*=UTF-8''%C3%BC.pdf"),
        ("", 'attachment; filename="download"'),
    ],
)
def test_attachment_disposition(filename: str, expected: str) -> None:
    assert attachment_disposition(filename) == expected
