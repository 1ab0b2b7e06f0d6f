"""`converter engine` on its own, with an HTTP server pointed at it (CONVERTER_ENGINE_URL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from converter.engine.pool import EngineJob
from converter.engine.remote import RemoteEngine
from converter.errors import InvalidRequest
from tests.support.served import CONVERTER, REPO, ServedApp


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    """A standalone engine process on a Unix socket, with its own data directory."""
    sock = tmp_path / "e.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTER_")}
    env.update({"CONVERTER_DATA_DIR": str(tmp_path / "engine-data"), "CONVERTER_WORKERS": "1",
                "CONVERTER_LOG_LEVEL": "WARNING"})
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([CONVERTER, "engine", "--socket", str(sock)], env=env, cwd=REPO,
                            stdout=log, stderr=log, start_new_session=True)
    log.close()
    yield sock
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, (tmp_path / "engine.log").read_text()
    assert not sock.exists(), "the engine left its socket behind"


def test_http_server_converts_through_a_standalone_engine(
        engine_socket: Path, serve: type[ServedApp], corpus: Path) -> None:
    """Conversions and document errors cross the socket as the in-process pool gives them."""
    app = serve(env={"CONVERTER_ENGINE_URL": f"unix://{engine_socket}"}).start()
    docx = sorted((corpus / "docx").glob("*.docx"))[0]
    ok = app.http.post(f"{app.url}/v1/convert", files={"file": docx.open("rb")},
                       data={"format": "pdf"}, timeout=120)
    assert ok.status_code == 200, ok.text
    assert ok.content.startswith(b"%PDF")
    bad = sorted(p for p in (corpus / "bad").iterdir() if p.suffix == ".docx")[0]
    refused = app.http.post(f"{app.url}/v1/convert", files={"file": bad.open("rb")},
                            data={"format": "pdf"}, timeout=120)
    assert refused.status_code in (400, 422), refused.text
    assert refused.json()["error"]["type"] != "internal_error"
    # No LibreOffice in the HTTP server's own data directory: the engine did the work.
    assert not (app.data_dir / "engine").exists()


def test_the_engine_takes_paths_only_from_its_shared_folder(
        serve: type[ServedApp], corpus: Path, tmp_path: Path) -> None:
    """Over the serve command's socket workers hand over paths, confined to DATA_DIR/tmp."""
    app = serve(workers=1).start()
    engine = RemoteEngine(f"unix://{app.data_dir / 'engine' / 'engine.sock'}",
                          app.data_dir / "tmp")
    assert engine.stats(fresh=True)["shared_root"] == str((app.data_dir / "tmp").resolve())
    outside = tmp_path / "elsewhere.docx"
    shutil.copyfile(corpus / "docx/SampleDoc.docx", outside)
    with pytest.raises(InvalidRequest, match="outside the engine's shared folder"):
        engine._call(60, "submit_path", {}, str(outside), str(app.data_dir / "tmp" / "o.pdf"),
                     60)
    sneaky = app.data_dir / "tmp" / ".." / "converter.db"
    with pytest.raises(InvalidRequest, match="outside the engine's shared folder"):
        engine._call(60, "submit_path", {}, str(sneaky), str(app.data_dir / "tmp" / "o.pdf"),
                     60)
    # What workers send in practice: a conversion by path gives a real PDF.
    with engine.scratch() as scratch:
        source = scratch / "in.docx"
        shutil.copyfile(corpus / "docx/SampleDoc.docx", source)
        assert engine._shares(source)
        job = EngineJob(import_filter="", export_filter="", filter_options=[], extras={},
                        source="docx", target="pdf")
        engine.convert(source, scratch / "out.pdf", job, time.monotonic() + 120)
        assert (scratch / "out.pdf").read_bytes().startswith(b"%PDF")
