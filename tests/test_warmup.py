"""Every engine instance converts a tiny real document of each format before it is ready.

Checked on a served app right after ``/readyz`` first answers 200, and again on an
instance the supervisor restarted: each bridge reports the import filter LibreOffice
loaded each sample with, LibreOffice has mapped the docx import filter's library (which
the old warm-up of factory-new documents never loaded), and the log says so.
"""

from __future__ import annotations

import json
import os
import signal
import time
import xmlrpc.client
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from converter.engine.warmup import SAMPLES
from tests.support.served import ServedApp

pytestmark = pytest.mark.engine

WARMED = {"docx": "MS Word 2007 XML", "odt": "writer8", "xlsx": "Calc MS Excel 2007 XML",
          "ods": "calc8", "pptx": "Impress MS PowerPoint 2007 XML", "odp": "impress8"}
# Writer's OOXML import (writerfilter): loaded only by reading a docx, never by a new document.
DOCX_IMPORT_LIBRARY = "libwriterfilterlo.so"


def _ping(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}").ping()
    return answer


def _assert_warmed(app: ServedApp) -> dict[int, int]:
    """Every bridge and LibreOffice of app went through the warm-up; returns the bridges."""
    bridges = app.bridges()
    assert len(bridges) == 2, bridges
    for pid, port in bridges.items():
        ping = _ping(port)
        assert ping["pid"] == pid
        assert ping["warmed"] == WARMED, ping
        assert ping["busy"] is False and ping["conversions"] == 0, ping
        assert ping["warmup_seconds"] > 0, ping
    pids = app.soffice_pids()
    assert len(pids) == 2, pids
    for pid in pids:
        assert DOCX_IMPORT_LIBRARY in Path(f"/proc/{pid}/maps").read_text(), pid
    return bridges


def _ready_lines(app: ServedApp) -> list[str]:
    lines = []
    for line in app.log().splitlines():
        try:
            message = json.loads(line).get("message", "")
        except json.JSONDecodeError:
            continue
        if " ready in " in message:
            lines.append(message)
    return lines


def _ready(app: ServedApp) -> bool:
    return requests.get(f"{app.url}/readyz", timeout=5).status_code == 200


def test_ready_only_after_each_format_was_warmed(serve: type[ServedApp]) -> None:
    """At the first 200 of /readyz both instances have converted all six samples."""
    app = serve(workers=2, env={"CONVERTER_LOG_LEVEL": "INFO"})
    # A sample an earlier run left broken is written again, not trusted (nor fatal).
    broken = app.data_dir / "engine" / "instance-0" / "warmup" / SAMPLES[0].filename
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a document")
    app.start()
    _assert_warmed(app)
    with zipfile.ZipFile(broken) as zf:
        assert "word/document.xml" in zf.namelist()
    lines = _ready_lines(app)
    assert len(lines) == 2, lines
    assert all(line.endswith("(start), warmed up on docx, odt, xlsx, ods, pptx, odp")
               for line in lines), lines


def test_a_restarted_instance_warms_again(serve: type[ServedApp]) -> None:
    """kill -9 of a LibreOffice: its replacement warms up before the pool is ready again."""
    app = serve(workers=2, env={"CONVERTER_LOG_LEVEL": "INFO"}).start()
    before = _assert_warmed(app)
    victim = app.soffice_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (victim not in app.soffice_pids() and len(app.soffice_pids()) == 2
               and _ready(app)):
        assert time.monotonic() < deadline, "no replacement instance became ready"
        time.sleep(0.1)
    after = _assert_warmed(app)
    assert len(set(after) - set(before)) == 1, (before, after)  # one bridge is new
    restarted = [line for line in _ready_lines(app) if "(crash)" in line]
    assert len(restarted) == 1, _ready_lines(app)
    assert restarted[0].endswith("warmed up on docx, odt, xlsx, ods, pptx, odp")
