"""A full data directory: 507 insufficient_storage (retryable), never 422, never a partial file.

CONVERTER_DATA_DIR is a small tmpfs the test mounts, so "full" is a real file system
that is really full; it is unmounted in teardown whatever happened.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from converter.diskspace import free_bytes
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine

MiB = 1024 * 1024
FILLER = "filler.bin"
# The targets of a docx, each a series of its own in the conversion metrics.
TARGETS = ("pdf", "odt", "txt", "html", "png")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs mounted for this test only."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mount)],
                   check=True, capture_output=True)
    try:
        yield mount
    finally:
        # Lazy: a LibreOffice still exiting must not keep the mount (and the machine's
        # memory) alive after the test.
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _served_on(serve: type[ServedApp], mount: Path, min_free_mb: int) -> ServedApp:
    """A one-instance service with its data on the tmpfs (its log beside it: a log must
    not fill the disk under test)."""
    data = mount / "data"
    app = serve(env={"CONVERTER_DATA_DIR": str(data),
                     "CONVERTER_MIN_FREE_MB": str(min_free_mb)}, workers=1)
    app.log_path.parent.mkdir(parents=True, exist_ok=True)
    app.data_dir = data  # where its LibreOffice processes are recognised from
    return app.start()


def _fill(mount: Path, leave: int) -> None:
    """Grow the filler file until exactly about `leave` bytes stay free (0: until ENOSPC)."""
    filler = mount / FILLER
    with filler.open("ab") as out:
        while (gap := free_bytes(mount) - leave) > 0:
            try:
                out.write(b"\0" * min(gap, MiB))
                out.flush()
            except OSError:
                break  # the disk is full: what leave=0 asks for
    assert free_bytes(mount) <= leave + 64 * 1024


def _free(mount: Path) -> None:
    (mount / FILLER).unlink(missing_ok=True)


def _assert_full(response: requests.Response) -> None:
    assert response.status_code == 507, (response.status_code, response.text[:500])
    error = error_of(response)
    assert error["type"] == "insufficient_storage", error
    assert error["retryable"] is True, error
    assert int(response.headers["Retry-After"]) > 0


def _half_written(data_dir: Path) -> list[str]:
    """Spool files and in-flight object writes still on disk after a request ended."""
    spool = list((data_dir / "tmp").glob("upload-*"))
    objects = [p for p in (data_dir / "objects").rglob(".tmp-*")] if (
        data_dir / "objects").exists() else []
    return sorted(str(p) for p in spool + objects)


def test_below_min_free_refuses_uploads_and_conversions_and_recovers(
        serve: type[ServedApp], tmpfs: Path, corpus: Path, tmp_path: Path) -> None:
    """Below CONVERTER_MIN_FREE_MB: 507 + /readyz not ready; space freed: everything works."""
    app = _served_on(serve, tmpfs, min_free_mb=8)
    data = app.data_dir
    sample = corpus / "docx/SampleDoc.docx"
    cached = app.upload_ok(sample)["id"]
    assert app.convert(cached, "pdf").status_code == 200
    files_before = app.request("GET", "/v1/files").json()["data"]

    _fill(tmpfs, leave=4 * MiB)
    _assert_full(app.upload(sample))
    _assert_full(app.convert(cached, "odt"))
    with sample.open("rb") as fh:
        _assert_full(app.request("POST", "/v1/convert", data={"format": "txt"},
                                 files={"file": ("SampleDoc.docx", fh)}))
    # An artifact that already exists costs no disk: the cache still answers.
    assert app.convert(cached, "pdf").json()["cached"] is True
    ready = app.request("GET", "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["disk"].startswith("error: "), ready.json()
    assert "CONVERTER_MIN_FREE_MB" in ready.json()["checks"]["disk"]
    assert app.request("GET", "/v1/files").json()["data"] == files_before
    assert _half_written(data) == []

    _free(tmpfs)
    assert app.request("GET", "/readyz").status_code == 200
    fresh = app.upload_ok(sample)["id"]
    assert app.convert(fresh, "odt").status_code == 200
    assert app.convert(cached, "odt").status_code == 200


def test_enospc_in_the_middle_of_a_write_is_507(
        serve: type[ServedApp], tmpfs: Path, corpus: Path, tmp_path: Path) -> None:
    """Real ENOSPC while an upload is spooled, and while LibreOffice converts: 507, not 422."""
    # 0: nothing is refused in advance, so every write below really runs out of space.
    app = _served_on(serve, tmpfs, min_free_mb=0)
    data = app.data_dir
    sample = corpus / "docx/SampleDoc.docx"
    file_id = app.upload_ok(sample)["id"]

    # An upload larger than what is left: spooling it hits ENOSPC half-way.
    _fill(tmpfs, leave=6 * MiB)
    big = tmp_path / "big.docx"
    big.write_bytes(sample.read_bytes() + b"\0" * (10 * MiB))
    _assert_full(app.upload(big))
    assert _half_written(data) == []
    assert free_bytes(tmpfs) >= 5 * MiB, "the refused upload's spool file was not removed"

    # Room for the source in scratch but not for LibreOffice's output and temp files.
    _fill(tmpfs, leave=0)
    (tmpfs / FILLER).write_bytes(b"\0" * (os.path.getsize(tmpfs / FILLER) - 24 * 1024))
    for target in ("pdf", "odt"):
        _assert_full(app.convert(file_id, target))
    assert _half_written(data) == []

    _free(tmpfs)
    response = app.convert(file_id, "pdf")
    assert response.status_code == 200, response.text
    assert requests.get(response.json()["download_url"], timeout=30).content.startswith(
        b"%PDF-")
    assert app.upload(big).status_code in (201, 400)  # stored, or refused for what it is


def test_a_full_data_disk_kills_no_process(
        serve: type[ServedApp], tmpfs: Path, corpus: Path) -> None:
    """Every answer while full is an answer: no HTTP worker or engine dies of the full disk.

    Each new (target, outcome) or route series grows a process's memory-mapped metrics
    file by a page now and then; were those files on the data disk, the first page it
    cannot back would be SIGBUS in the worker, a connection closed with no response.
    """
    app = _served_on(serve, tmpfs, min_free_mb=0)
    file_id = app.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    workers, engine = app.http_worker_pids(), app.engine_pid()
    _fill(tmpfs, leave=0)
    for i in range(150):
        try:
            missing = app.request("GET", f"/v1/files/file_missing{i:04d}")
            converted = app.convert(file_id, TARGETS[i % len(TARGETS)])
        except requests.ConnectionError as exc:
            raise AssertionError(f"request {i} got no answer on a full disk: {exc}\n"
                                 f"{app.log()[-3000:]}") from exc
        assert missing.status_code == 404, missing.text
        _assert_full(converted)
    assert app.http_worker_pids() == workers, "an HTTP worker died on the full disk"
    assert app.engine_pid() == engine, "the engine process died on the full disk"
    assert "SIGBUS" not in app.log()
