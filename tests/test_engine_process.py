"""`converter engine` on its own, with an HTTP server pointed at it (CONVERTER_ENGINE_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
