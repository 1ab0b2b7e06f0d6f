"""converter.client against a real served app: files, conversions, runs and typed errors."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest

from converter import errors as server_errors
from converter.client import (
    ApiError,
    Client,
    Conflict,
    IdempotencyKeyInUse,
    InvalidRequest,
    NotFound,
    RunFailed,
    Unauthorized,
    WaitTimeout,
)
from converter.client.errors import BY_TYPE
from converter.errors import ConfigError
from tests.support.served import ServedApp

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(service: ServedApp) -> Iterator[Client]:
    """A client in its own workspace, so listings see only this module's files."""
    with Client(service.url, service.create_key("client-tests", "cleo")) as made:
        yield made


def _pages(data: bytes) -> int:
    assert data.startswith(b"%PDF-"), data[:20]
    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def _pipe(data: bytes) -> io.BufferedReader:
    """The read end of a pipe fed with data: a stream that cannot seek."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def test_upload_from_a_path_bytes_and_streams_then_get_list_delete(
        client: Client, corpus: Path) -> None:
    """Three kinds of source arrive identical; listing walks every page; delete removes."""
    path = corpus / "docx/SampleDoc.docx"
    data = path.read_bytes()
    from_path = client.upload(path)
    from_bytes = client.upload(data, filename="résumé 1.docx", scope="workspace")
    with path.open("rb") as fh:
        from_file = client.upload(fh)
    with _pipe(data) as pipe:
        from_pipe = client.upload(pipe, filename="piped.docx")
    uploaded = [from_path, from_bytes, from_file, from_pipe]
    assert {f["sha256"] for f in uploaded} == {from_path["sha256"]}
    assert {f["size_bytes"] for f in uploaded} == {len(data)}
    assert [f["filename"] for f in uploaded] == ["SampleDoc.docx", "résumé 1.docx",
                                                 "SampleDoc.docx", "piped.docx"]
    assert from_bytes["scope"] == "workspace" and from_path["format"] == "docx"
    assert client.get_file(from_path["id"]) == from_path

    listed = [f["id"] for f in client.list_files(page_size=1)]  # four pages of one
    assert listed == [f["id"] for f in reversed(uploaded)]

    for record in uploaded:
        client.delete_file(record["id"])
    assert list(client.list_files()) == []
    with pytest.raises(NotFound) as caught:
        client.get_file(from_path["id"])
    error = caught.value
    assert (error.status, error.type) == (404, "not_found")
    assert error.request_id and error.request_id.startswith("req_")
    assert error.details == {"field": "file_id"} and from_path["id"] in error.message


def test_convert_returns_the_url_or_downloads_to_a_path_or_stream(
        client: Client, corpus: Path, tmp_path: Path) -> None:
    """One conversion, three ways to receive it; options reach the engine."""
    file_id = client.upload(corpus / "docx/SampleDoc.docx")["id"]
    first = client.convert(file_id, "pdf")
    assert first["download_url"].startswith("http") and first["format"] == "pdf"
    out = tmp_path / "SampleDoc.pdf"
    again = client.convert(file_id, "pdf", dest=out)
    assert again["cached"] is True
    assert out.stat().st_size == again["size_bytes"] and _pages(out.read_bytes()) > 1
    assert [p.name for p in tmp_path.iterdir()] == ["SampleDoc.pdf"]  # no partial left
    sink = io.BytesIO()
    one_page = client.convert(file_id, "pdf", {"page_range": "1"}, dest=sink)
    assert _pages(sink.getvalue()) == 1 and one_page["size_bytes"] == len(sink.getvalue())
    seen: list[tuple[int, int | None]] = []
    written = client.download(first["download_url"], io.BytesIO(),
                              progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (written, written)


def test_runs_create_get_list_wait_export(client: Client, corpus: Path,
                                          tmp_path: Path) -> None:
    """An async run from creation to re-export, through the client only."""
    file_id = client.upload(corpus / "docx/SampleDoc.docx")["id"]
    created = client.create_run(file_id, "odt", idempotency_key="client-run-1")
    assert created["status"] == "pending" and created["run_id"].startswith("run_")
    # The same key and body: the first answer replayed, no second run.
    assert client.create_run(file_id, "odt", idempotency_key="client-run-1") == created
    with pytest.raises(IdempotencyKeyInUse) as reused:
        client.create_run(file_id, "pdf", idempotency_key="client-run-1")
    assert reused.value.status == 409 and isinstance(reused.value, Conflict)

    run_id = created["run_id"]
    assert client.get_run(run_id)["id"] == run_id
    polled: list[str] = []
    done = client.wait_run(run_id, timeout=180, on_poll=lambda r: polled.append(r["status"]))
    assert done["status"] == "completed" and polled[-1] == "completed"
    assert [r["id"] for r in client.list_runs(file_id=file_id)] == [run_id]
    assert run_id in [r["id"] for r in client.list_runs(status="completed", page_size=1)]

    exported = client.export_run(run_id, "pdf", dest=tmp_path / "export.pdf")
    assert exported["format"] == "pdf" and exported["run_id"] == run_id
    assert _pages((tmp_path / "export.pdf").read_bytes()) >= 1


def test_a_failed_run_and_a_wait_timeout(client: Client, corpus: Path) -> None:
    """RunFailed carries the run and its error; WaitTimeout the last status seen."""
    file_id = client.upload(corpus / "bad/xlsx-corrupted.xlsx")["id"]
    with pytest.raises(RunFailed) as failed:
        client.wait_run(client.create_run(file_id, "pdf")["run_id"], timeout=180)
    assert failed.value.run["status"] == "failed"
    assert "cannot open or convert" in failed.value.run["error"]
    with pytest.raises(Conflict) as not_done:
        client.export_run(failed.value.run["id"], "pdf")
    assert not_done.value.details.get("status") == "failed"

    good = client.upload(corpus / "docx/SampleDoc.docx")["id"]
    run_id = client.create_run(good, "txt")["run_id"]
    with pytest.raises(WaitTimeout) as late:
        client.wait_run(run_id, timeout=0)  # no conversion finishes within one poll
    assert late.value.run["status"] in ("pending", "running")
    assert client.wait_run(run_id, timeout=180)["status"] == "completed"


def test_errors_are_typed_and_carry_details(service: ServedApp, client: Client,
                                            corpus: Path) -> None:
    """400 names the valid targets; a wrong key is Unauthorized; every error has request_id."""
    file_id = client.upload(corpus / "docx/SampleDoc.docx")["id"]
    with pytest.raises(InvalidRequest) as bad_target:
        client.convert(file_id, "mp3")
    error = bad_target.value
    assert error.status == 400 and error.type == "invalid_request"
    assert "pdf" in error.details["valid_targets"] and error.details["field"] == "format"
    assert error.request_id and error.request_id in str(error)
    with pytest.raises(NotFound):  # an id is one path segment, never another route
        client.get_file("../runs")
    with Client(service.url, "sk_live_" + "x" * 32) as stranger:
        with pytest.raises(Unauthorized) as denied:
            list(stranger.list_files())
    assert denied.value.status == 401 and denied.value.request_id


def test_every_api_error_type_has_a_client_exception() -> None:
    """Each type the server can answer with maps to its own client class."""
    def tree(cls: type[server_errors.ConverterError]) -> list[type[server_errors.ConverterError]]:
        return [cls] + [s for sub in cls.__subclasses__() for s in tree(sub)]

    server_types = {c.type for c in tree(server_errors.ConverterError)}
    # Answered by converter/api/errors.py outside the ConverterError tree.
    server_types |= {"storage_unavailable", "method_not_allowed", "internal_error"}
    missing = sorted(t for t in server_types if t not in BY_TYPE)
    assert not missing
    assert all(issubclass(BY_TYPE[t], ApiError) and BY_TYPE[t].type_name == t
               for t in server_types)


def test_from_env_reads_the_declared_settings(service: ServedApp,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """CONVERTER_URL and CONVERTER_API_KEY build a client; a missing one names itself."""
    for name in [k for k in os.environ if k.startswith("CONVERTER_")]:
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match="CONVERTER_URL"):
        Client.from_env()
    monkeypatch.setenv("CONVERTER_URL", service.url)
    with pytest.raises(ConfigError, match="CONVERTER_API_KEY"):
        Client.from_env()
    monkeypatch.setenv("CONVERTER_API_KEY", service.key)
    with Client.from_env() as made:
        assert "sources" in made.formats()
    monkeypatch.setenv("CONVERTER_URL", "127.0.0.1:8080")
    with pytest.raises(ConfigError, match="CONVERTER_URL"):
        Client.from_env()


def test_convert_oneshot_round_trip(client: Client, corpus: Path, tmp_path: Path) -> None:
    """convert_oneshot: bytes back with their name, the cache header, store's file id."""
    from converter.client import PasswordRequired
    from tests.test_passwords import encrypt_ooxml

    path = corpus / "docx/SampleDoc.docx"
    first = client.convert_oneshot(path, "pdf", {"page_range": "1"})
    assert first.content is not None and _pages(first.content) == 1
    assert first.filename == "SampleDoc.pdf" and first.content_type == "application/pdf"
    assert first.cache == "miss" and first.file_id is None
    again = client.convert_oneshot(path.read_bytes(), "pdf", {"page_range": "1"},
                                   filename="SampleDoc.docx")
    assert again.cache == "hit" and again.content == first.content
    target = tmp_path / "out.pdf"
    stored = client.convert_oneshot(path, "pdf", dest=target, store=True)
    assert stored.file_id and client.get_file(stored.file_id)["filename"] == "SampleDoc.docx"
    assert _pages(target.read_bytes()) == 2 and stored.size_bytes == target.stat().st_size
    locked = encrypt_ooxml(path, tmp_path / "locked.docx", "pw-123")
    with pytest.raises(PasswordRequired) as caught:
        client.convert_oneshot(locked, "pdf")
    assert caught.value.request_id and caught.value.status == 400
    assert client.convert_oneshot(locked, "pdf", {"password": "pw-123"}).content
