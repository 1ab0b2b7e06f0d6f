"""The connector provider layer: subpaths, names, local and S3 providers, delivery, crypto.

Local providers run on temporary directories, S3 against moto's standalone server
over HTTP (the authenticating one where credentials matter).
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from converter.connectors.base import Delivered, Provider
from converter.connectors.crypto import CredentialBox
from converter.connectors.delivery import deliver
from converter.connectors.local import TEMP_MARK, LocalProvider
from converter.connectors.paths import normalize_subpath, numbered, safe_name
from converter.connectors.registry import Settings, open_provider, validate
from converter.connectors.s3 import S3Provider
from converter.errors import (
    ConnectorFailed,
    ConnectorUnavailable,
    DestinationExists,
    InvalidRequest,
)
from tests.support.moto import BUCKET, AuthenticatedS3, raw_client

MIB = 2**20


@pytest.mark.parametrize("raw", [
    "/etc", "../up", "a/../../b", "a\\b", "C:/x", "a/\x00b", "a/\nb", "~/x", "a/b\x7f",
    "a/ b", "a/b.", 12, "x" * 2000,
])
def test_bad_subpaths_are_refused_naming_the_field(raw: object) -> None:
    """Absolute parts, .., backslashes and control characters are 400s, never repaired."""
    with pytest.raises(InvalidRequest) as caught:
        normalize_subpath(raw, "destination_subpath")
    assert caught.value.details["field"] == "destination_subpath"
    assert caught.value.status == 400


@pytest.mark.parametrize(("raw", "normal"), [
    (None, ""), ("", ""), ("a", "a"), ("a//b/", "a/b"), ("./a/./b", "a/b"),
    ("exports/2024 Q1", "exports/2024 Q1"), ("dossiers/été", "dossiers/été"),
])
def test_good_subpaths_are_normalised(raw: str | None, normal: str) -> None:
    """Repeated slashes and "." go; the rest is kept as typed."""
    assert normalize_subpath(raw) == normal


@pytest.mark.parametrize(("original", "ext", "name"), [
    ("report.docx", "pdf", "report.pdf"),
    ("Quarterly: Q1/Q2?.xlsx", "csv", "Q2_.csv"),
    ("C:\\Users\\me\\notes.odt", "pdf", "notes.pdf"),
    ('a<b>c|d"e*.docx', "pdf", "a_b_c_d_e_.pdf"),
    ("...", "pdf", "document.pdf"),
    (".profile", "pdf", "profile.pdf"),
    ("line\nbreak\ttab.docx", "txt", "linebreaktab.txt"),
    ("noext", "pdf", "noext.pdf"),
    ("archive.tar.gz", "zip", "archive.tar.zip"),
])
def test_object_names_are_the_original_with_the_new_extension_made_safe(
        original: str, ext: str, name: str) -> None:
    """The stem survives; what a file system or share refuses does not."""
    assert safe_name(original, ext) == name


def test_long_names_fit_a_file_system() -> None:
    """Names are cut to fit 255 bytes, by bytes, without splitting a character."""
    name = safe_name("é" * 400 + ".docx", "pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= 255
    name.encode("utf-8").decode("utf-8")


def test_numbered_alternatives() -> None:
    """Renames add " (n)" before the extension."""
    assert [numbered("r.pdf", n) for n in range(3)] == ["r.pdf", "r (1).pdf", "r (2).pdf"]
    assert numbered("README", 2) == "README (2)"


# ---------------------------------------------------------------------------- local
@pytest.fixture
def roots(tmp_path: Path) -> tuple[str, ...]:
    """One allowed root with a connector folder inside it."""
    (tmp_path / "allowed" / "conn").mkdir(parents=True)
    return (str(tmp_path / "allowed"),)


@pytest.fixture
def local(roots: tuple[str, ...]) -> LocalProvider:
    """A local provider on a temporary directory."""
    return LocalProvider(str(Path(roots[0]) / "conn"), roots)


def _source(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_local_connectors_are_refused_without_roots(tmp_path: Path) -> None:
    """With CONVERTER_LOCAL_CONNECTOR_ROOTS empty the message says what to set."""
    with pytest.raises(ConnectorFailed, match="CONVERTER_LOCAL_CONNECTOR_ROOTS"):
        LocalProvider(str(tmp_path), ())


def test_local_path_outside_the_roots_is_refused(tmp_path: Path,
                                                 roots: tuple[str, ...]) -> None:
    """A path beside the root, or one reaching it through .. or a symlink, is refused."""
    (tmp_path / "elsewhere").mkdir()
    (Path(roots[0]) / "link").symlink_to(tmp_path / "elsewhere")
    for path in (str(tmp_path / "elsewhere"), f"{roots[0]}/../elsewhere",
                 f"{roots[0]}/link", "relative/dir"):
        with pytest.raises(ConnectorFailed) as caught:
            LocalProvider(path, roots)
        assert caught.value.status == 400


def test_symlinks_inside_cannot_escape(tmp_path: Path, local: LocalProvider) -> None:
    """A symlink planted in the connector's folder is never followed out of it."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd").write_text("root")
    (local.root / "escape").symlink_to(outside)
    with pytest.raises(ConnectorFailed):
        local.upload(_source(tmp_path, b"x"), "escape/new.pdf", overwrite=True)
    with pytest.raises(ConnectorFailed):
        local.download("escape/passwd", tmp_path / "stolen")
    assert [e.path for e in local.walk("")] == []
    assert not (outside / "new.pdf").exists()


def test_local_upload_is_atomic_and_reports_sha256(tmp_path: Path, local: LocalProvider) -> None:
    """The file lands whole under its name, with its size and digest; no temp file stays."""
    data = os.urandom(3 * MIB + 7)
    done = local.upload(_source(tmp_path, data), "a/b/out.pdf", overwrite=False)
    assert done == Delivered("a/b/out.pdf", len(data), hashlib.sha256(data).hexdigest())
    assert (local.root / "a/b/out.pdf").read_bytes() == data
    assert not [p for p in local.root.rglob("*") if TEMP_MARK in p.name]


def test_local_discard_partial_removes_only_that_names_leftovers(tmp_path: Path,
                                                                 local: LocalProvider) -> None:
    """A killed write's temp file of a name goes; other names' temps and files stay."""
    folder = local.root / "out"
    folder.mkdir()
    long_name = "x" * 240 + ".pdf"  # its temp name is cut at 250 characters
    left = [f"{TEMP_MARK}{'a' * 16}-report.pdf", f"{TEMP_MARK}{'b' * 16}-report.pdf",
            f"{TEMP_MARK}{'c' * 16}-{long_name}"[:250]]
    kept = [f"{TEMP_MARK}{'d' * 16}-other.pdf", "report.pdf", "report (1).pdf"]
    for name in left + kept:
        (folder / name).write_bytes(b"partial")
    assert local.discard_partial("out/report.pdf") == 2
    assert local.discard_partial("out/" + long_name) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept)
    assert local.discard_partial("nowhere/report.pdf") == 0


def test_local_upload_without_overwrite_refuses_an_existing_file(
        tmp_path: Path, local: LocalProvider) -> None:
    """overwrite=False never replaces; overwrite=True does."""
    local.upload(_source(tmp_path, b"first"), "x.txt", overwrite=False)
    with pytest.raises(DestinationExists):
        local.upload(_source(tmp_path, b"second"), "x.txt", overwrite=False)
    assert (local.root / "x.txt").read_bytes() == b"first"
    local.upload(_source(tmp_path, b"third"), "x.txt", overwrite=True)
    assert (local.root / "x.txt").read_bytes() == b"third"
    assert sorted(p.name for p in local.root.iterdir()) == ["x.txt"]


def test_local_failed_write_leaves_nothing(tmp_path: Path, local: LocalProvider,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error mid-write is retryable and removes the temporary file."""
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ConnectorUnavailable, match="Input/output error"):
        local.upload(_source(tmp_path, b"data"), "sub/x.pdf", overwrite=True)
    assert [p.name for p in local.root.rglob("*") if p.is_file()] == []


def test_local_list_pages_walk_stat_move_delete(tmp_path: Path, local: LocalProvider) -> None:
    """Browsing pages by name; walk finds files only; move and delete."""
    for name in ("b.txt", "a.txt", "c.txt"):
        local.upload(_source(tmp_path, name.encode()), f"dir/{name}", overwrite=False)
    local.upload(_source(tmp_path, b"top"), "top.txt", overwrite=False)
    (local.root / "dir" / "sub").mkdir()
    first, cursor = local.list("dir", None, 2)
    assert [(e.path, e.is_dir) for e in first] == [("dir/a.txt", False), ("dir/b.txt", False)]
    assert cursor is not None
    second, cursor = local.list("dir", cursor, 2)
    assert [(e.path, e.is_dir) for e in second] == [("dir/c.txt", False), ("dir/sub", True)]
    assert cursor is None
    assert sorted(e.path for e in local.walk("")) == [
        "dir/a.txt", "dir/b.txt", "dir/c.txt", "top.txt"]
    entry = local.stat("dir/a.txt")
    assert entry is not None and entry.size == 5 and entry.modified is not None
    assert local.stat("dir/missing.txt") is None
    local.move("dir/a.txt", "done/a.txt")
    assert local.stat("dir/a.txt") is None and local.stat("done/a.txt") is not None
    local.delete("done/a.txt")
    local.delete("done/a.txt")
    assert local.stat("done/a.txt") is None


def test_local_check_writes_and_removes_a_probe(local: LocalProvider, tmp_path: Path,
                                                roots: tuple[str, ...]) -> None:
    """check() leaves the folder as it was; a missing folder fails with the reason."""
    local.check()
    assert list(local.root.iterdir()) == []
    with pytest.raises(ConnectorFailed, match="does not exist"):
        LocalProvider(str(Path(roots[0]) / "missing"), roots).check()


# ---------------------------------------------------------------------------- delivery
class Flaky:
    """A real provider whose first uploads fail as an unreachable one would."""

    def __init__(self, inner: Provider, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
        """Fail the first few, then write for real."""
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectorUnavailable("connection reset by peer")
        return self.inner.upload(source, path, overwrite)


def test_delivery_rename_overwrite_fail(tmp_path: Path, local: LocalProvider) -> None:
    """rename adds " (n)"; overwrite replaces; fail raises the 409."""
    src = _source(tmp_path, b"one")
    assert deliver(local, src, "out", "r.pdf").path == "out/r.pdf"
    assert deliver(local, src, "out", "r.pdf", "rename").path == "out/r (1).pdf"
    assert deliver(local, src, "out", "r.pdf").path == "out/r (2).pdf"
    with pytest.raises(DestinationExists) as caught:
        deliver(local, _source(tmp_path, b"two"), "out", "r.pdf", "fail")
    assert caught.value.status == 409
    done = deliver(local, _source(tmp_path, b"three"), "out", "r.pdf", "overwrite")
    assert done.path == "out/r.pdf" and (local.root / "out/r.pdf").read_bytes() == b"three"
    with pytest.raises(InvalidRequest) as bad:
        deliver(local, src, "out", "r.pdf", "merge")
    assert bad.value.details["valid_values"] == ["rename", "overwrite", "fail"]


def test_delivery_retries_transient_failures_with_backoff(tmp_path: Path,
                                                          local: LocalProvider) -> None:
    """Two failures then success: waited 1 s then 2 s (doubled), delivered once."""
    waits: list[float] = []
    flaky = Flaky(local, failures=2)
    done = deliver(flaky, _source(tmp_path, b"x"), "", "r.pdf", backoff=1.0, sleep=waits.append)
    assert waits == [1.0, 2.0] and done.path == "r.pdf" and flaky.calls == 3


def test_delivery_gives_up_after_its_attempts(tmp_path: Path, local: LocalProvider) -> None:
    """A destination that never recovers: the reason, and how many attempts were made."""
    waits: list[float] = []
    with pytest.raises(ConnectorUnavailable, match="gave up after 3 attempts"):
        deliver(Flaky(local, failures=99), _source(tmp_path, b"x"), "", "r.pdf",
                attempts=3, backoff=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0]
    assert list(local.root.iterdir()) == []


def test_provider_refusals_are_not_retried(tmp_path: Path, local: LocalProvider) -> None:
    """ConnectorFailed is the provider saying no: retrying would only say no again."""
    class Refusing(Flaky):
        def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
            self.calls += 1
            raise ConnectorFailed("AccessDenied")

    refusing = Refusing(local, 0)
    with pytest.raises(ConnectorFailed):
        deliver(refusing, _source(tmp_path, b"x"), "", "r.pdf", sleep=lambda _: None)
    assert refusing.calls == 1


# ---------------------------------------------------------------------------- s3
@pytest.fixture
def s3(moto_endpoint: str) -> S3Provider:
    """An S3 provider on a fresh prefix of the moto bucket."""
    return S3Provider(BUCKET, prefix=f"conn-{uuid.uuid4().hex[:8]}", region="us-east-1",
                      endpoint_url=moto_endpoint, access_key_id="testing",
                      secret_access_key="testing", multipart_threshold=6 * MIB,
                      part_size=5 * MIB)


def _uploads(endpoint: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = raw_client(endpoint).list_multipart_uploads(
        Bucket=BUCKET).get("Uploads", [])
    return found


def test_s3_single_put_with_etag_and_conditional_write(tmp_path: Path, s3: S3Provider,
                                                       moto_endpoint: str) -> None:
    """A small file is one PUT; overwrite=False is S3's If-None-Match, refused with 409."""
    data = b"hello s3"
    done = s3.upload(_source(tmp_path, data), "out/a.txt", overwrite=False)
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.size_bytes == len(data)
    assert done.etag == hashlib.md5(data).hexdigest()  # noqa: S324 - S3's single-PUT etag
    body = raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"{s3.prefix}out/a.txt")
    assert body["Body"].read() == data
    with pytest.raises(DestinationExists):
        s3.upload(_source(tmp_path, b"other"), "out/a.txt", overwrite=False)
    s3.upload(_source(tmp_path, b"other"), "out/a.txt", overwrite=True)
    entry = s3.stat("out/a.txt")
    assert entry is not None and entry.size == 5 and entry.etag
    assert s3.stat("out/none.txt") is None


def test_s3_multipart_upload(tmp_path: Path, s3: S3Provider, moto_endpoint: str) -> None:
    """A large file goes up in parts and is whole once completed."""
    data = os.urandom(11 * MIB + 3)
    done = s3.upload(_source(tmp_path, data), "big.bin", overwrite=False)
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.size_bytes == len(data)
    assert done.etag and done.etag.endswith("-3")  # three parts
    got = raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"{s3.prefix}big.bin")
    assert got["Body"].read() == data
    assert not [u for u in _uploads(moto_endpoint) if u["Key"].startswith(s3.prefix)]


def test_s3_failed_multipart_is_aborted(tmp_path: Path, s3: S3Provider,
                                        moto_endpoint: str) -> None:
    """A part that fails aborts the upload: no object, no parts left in the bucket."""
    real = s3.client.upload_part
    calls = {"n": 0}

    def second_part_fails(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise EndpointConnectionError(endpoint_url=moto_endpoint)
        return real(**kwargs)

    s3.client.upload_part = second_part_fails
    with pytest.raises(ConnectorUnavailable):
        s3.upload(_source(tmp_path, os.urandom(11 * MIB)), "big.bin", overwrite=True)
    assert calls["n"] == 2
    assert s3.stat("big.bin") is None
    assert not [u for u in _uploads(moto_endpoint) if u["Key"].startswith(s3.prefix)]


def test_s3_list_walk_move_delete(tmp_path: Path, s3: S3Provider) -> None:
    """Folders are common prefixes; pages follow S3's continuation token."""
    for name in ("d/a.txt", "d/b.txt", "d/sub/c.txt", "top.txt"):
        s3.upload(_source(tmp_path, name.encode()), name, overwrite=False)
    page, cursor = s3.list("d", None, 2)
    assert cursor is not None and len(page) == 2
    rest, cursor = s3.list("d", cursor, 2)
    assert cursor is None
    seen = sorted((e.path, e.is_dir) for e in page + rest)
    assert seen == [("d/a.txt", False), ("d/b.txt", False), ("d/sub", True)]
    assert sorted(e.path for e in s3.walk("")) == ["d/a.txt", "d/b.txt", "d/sub/c.txt",
                                                   "top.txt"]
    s3.move("top.txt", "done/top.txt")
    assert s3.stat("top.txt") is None and s3.stat("done/top.txt") is not None
    s3.delete("done/top.txt")
    assert s3.stat("done/top.txt") is None


def test_s3_check_leaves_nothing(s3: S3Provider, moto_endpoint: str) -> None:
    """The probe object is written and deleted."""
    s3.check()
    listed = raw_client(moto_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=s3.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_s3_missing_bucket_fails_with_the_reason(moto_endpoint: str) -> None:
    """NoSuchBucket is the provider's refusal, quoted."""
    provider = S3Provider("no-such-bucket-here", endpoint_url=moto_endpoint,
                          access_key_id="testing", secret_access_key="testing")
    with pytest.raises(ConnectorFailed, match="NoSuchBucket"):
        provider.check()


@pytest.mark.parametrize("wrong", ["key", "secret"])
def test_s3_wrong_credentials_fail_with_the_reason(moto_authenticated: AuthenticatedS3,
                                                   wrong: str) -> None:
    """moto checking signatures: an unknown key or a wrong secret is refused, with why."""
    good = S3Provider(moto_authenticated.bucket, endpoint_url=moto_authenticated.url,
                      access_key_id=moto_authenticated.access_key_id,
                      secret_access_key=moto_authenticated.secret_access_key)
    good.check()
    bad = S3Provider(
        moto_authenticated.bucket, endpoint_url=moto_authenticated.url,
        access_key_id="AKIAWRONGWRONGWRONG1" if wrong == "key"
        else moto_authenticated.access_key_id,
        secret_access_key="not-the-secret")
    reason = "InvalidAccessKeyId" if wrong == "key" else "SignatureDoesNotMatch"
    with pytest.raises(ConnectorFailed, match=reason) as caught:
        bad.check()
    assert caught.value.status == 400 and "not-the-secret" not in caught.value.message


def test_s3_unreachable_endpoint_is_retryable() -> None:
    """Nothing listening: ConnectorUnavailable (retryable 502), not a refusal."""
    from tests.support.served import free_port

    provider = S3Provider("bucket-x", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          access_key_id="testing", secret_access_key="testing")
    with pytest.raises(ConnectorUnavailable) as caught:
        provider.check()
    assert caught.value.details["retryable"] is True


def test_delivery_to_s3_renames_on_collision(tmp_path: Path, s3: S3Provider) -> None:
    """The rename policy on S3 rests on its conditional write."""
    src = _source(tmp_path, b"pdf bytes")
    paths = [deliver(s3, src, "exports/team", "r.pdf").path for _ in range(3)]
    assert paths == ["exports/team/r.pdf", "exports/team/r (1).pdf", "exports/team/r (2).pdf"]


# ---------------------------------------------------------------------------- registry
def test_registry_validates_fields_by_name(roots: tuple[str, ...]) -> None:
    """Unknown providers and fields, missing ones, and a half key pair are named."""
    settings = Settings(local_roots=roots)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: validate("ftp", {}, {}, settings), "provider"),
        (lambda: validate("s3", {}, {}, settings), "config.bucket"),
        (lambda: validate("s3", {"bucket": "Bad_Bucket"}, {}, settings), "config.bucket"),
        (lambda: validate("s3", {"bucket": "ok-bucket", "acl": "x"}, {}, settings),
         "config.acl"),
        (lambda: validate("s3", {"bucket": "ok-bucket"}, {"access_key_id": "AKIA"}, settings),
         "credentials.secret_access_key"),
        (lambda: validate("s3", {"bucket": "ok-bucket", "prefix": "../x"}, {}, settings),
         "config.prefix"),
        (lambda: validate("s3", {"bucket": "ok-bucket", "endpoint_url": "ftp://x"}, {},
                          settings), "config.endpoint_url"),
        (lambda: validate("local", {"path": "/etc"}, {}, settings), "config.path"),
        (lambda: validate("local", {"path": roots[0]}, {"password": "x"}, settings),
         "credentials.password"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidRequest) as caught:
            call()
        assert caught.value.details["field"] == field, caught.value.message


def test_registry_endpoint_follows_the_address_policy(moto_endpoint: str) -> None:
    """A loopback endpoint is refused unless the operator allows it (CONVERTER_WEBHOOK_ALLOW)."""
    from converter.service.webhooks import WebhookPolicy

    config = {"bucket": BUCKET, "endpoint_url": moto_endpoint}
    with pytest.raises(InvalidRequest, match="CONVERTER_WEBHOOK_ALLOW"):
        validate("s3", config, {}, Settings(denial=WebhookPolicy(()).denial))
    allowed = Settings(denial=WebhookPolicy(("127.0.0.0/8",)).denial)
    clean, secrets = validate("s3", config, {"access_key_id": "testing",
                                             "secret_access_key": "testing"}, allowed)
    open_provider("s3", clean, secrets, allowed).check()


def test_credentials_are_sealed_under_a_derived_key() -> None:
    """Fernet round trip; the ciphertext holds no plaintext; another secret cannot open it."""
    box = CredentialBox(b"s" * 32)
    sealed = box.seal({"secret_access_key": "wJalrXUtnFEMI/K7MDENG"})
    assert "wJalrXUtnFEMI" not in sealed
    assert box.open(sealed) == {"secret_access_key": "wJalrXUtnFEMI/K7MDENG"}
    with pytest.raises(ConnectorFailed, match="CONVERTER_SECRET_KEY"):
        CredentialBox(b"t" * 32).open(sealed)


def test_s3_discard_partial_aborts_that_keys_open_uploads(s3: S3Provider,
                                                          moto_endpoint: str) -> None:
    """A writer killed mid-multipart leaves parts; discard_partial aborts only that key's."""
    raw = raw_client(moto_endpoint)
    for name in ("out/report.pdf", "out/report.pdf", "out/other.pdf"):
        upload = raw.create_multipart_upload(Bucket=BUCKET, Key=f"{s3.prefix}{name}")
        raw.upload_part(Bucket=BUCKET, Key=f"{s3.prefix}{name}", PartNumber=1,
                        UploadId=upload["UploadId"], Body=b"partial")
    assert s3.discard_partial("out/report.pdf") == 2
    left = [u["Key"] for u in _uploads(moto_endpoint) if u["Key"].startswith(s3.prefix)]
    assert left == [f"{s3.prefix}out/other.pdf"]
    assert s3.discard_partial("out/other.pdf") == 1
    assert s3.discard_partial("out/none.pdf") == 0
