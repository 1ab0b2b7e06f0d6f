"""Instances leave nothing behind: no OSL_PIPE_* socket in the temp dir, no private TMPDIR."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from converter.engine.ipc_sockets import bound_pipes
from tests.support.served import ServedApp

pytestmark = pytest.mark.engine


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def _tmpdir_of(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    values = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"TMPDIR=")]
    assert values, f"soffice {pid} runs without TMPDIR"
    return Path(values[0].decode())


def _only_soffice(app: ServedApp, not_: int | None = None) -> int:
    pids: list[int] = []

    def one() -> bool:
        pids[:] = app.soffice_pids()
        return len(pids) == 1 and pids[0] != not_

    _wait(one, 60, "one (new) LibreOffice")
    _wait(lambda: app.request("GET", "/readyz").status_code == 200, 60, "ready")
    return pids[0]


def _note(pid: int, pipes: set[Path], tmpdirs: list[Path], scratch_root: Path) -> None:
    held: set[Path] = set()

    def binds() -> bool:
        held.update(bound_pipes(pid))
        return bool(held)

    # An empty set would make every later check pass: LibreOffice always binds one, though
    # the pool may count an instance ready a moment before its socket shows in /proc.
    _wait(binds, 60, f"soffice {pid} to bind its OSL_PIPE socket")
    for path in held:
        assert stat.S_ISSOCK(path.lstat().st_mode), path
    pipes |= held
    tmpdir = _tmpdir_of(pid)
    assert tmpdir.is_dir() and scratch_root in tmpdir.parents, (tmpdir, scratch_root)
    assert tmpdir not in tmpdirs, "each start gets a fresh private TMPDIR"
    tmpdirs.append(tmpdir)


def test_restarts_and_recycles_leave_no_sockets_or_temp_dirs(
        serve: type[ServedApp], corpus: Path) -> None:
    """Start, recycle, crash and stop an instance: its sockets and TMPDIRs are all removed."""
    temp_root = Path(tempfile.gettempdir())
    pipes_before = {p.name for p in temp_root.glob("OSL_PIPE_*")}
    app = serve(env={"CONVERTER_RECYCLE_AFTER": "1"}, workers=1).start()
    pipes: set[Path] = set()
    tmpdirs: list[Path] = []

    first = _only_soffice(app)
    _note(first, pipes, tmpdirs, app.scratch_root)

    # Recycled after one conversion (CONVERTER_RECYCLE_AFTER=1).
    file_id = app.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    assert app.convert(file_id, "pdf").status_code == 200
    recycled = _only_soffice(app, not_=first)
    assert not tmpdirs[-1].exists(), "the recycled instance's TMPDIR is still there"
    _note(recycled, pipes, tmpdirs, app.scratch_root)

    # Crashed: kill -9 leaves LibreOffice no chance to clean up; the pool must.
    os.kill(recycled, signal.SIGKILL)
    restarted = _only_soffice(app, not_=recycled)
    assert not tmpdirs[-1].exists(), "the crashed instance's TMPDIR is still there"
    _note(restarted, pipes, tmpdirs, app.scratch_root)

    app.stop()
    leftover_pipes = sorted(str(p) for p in pipes if p.exists())
    assert leftover_pipes == [], leftover_pipes
    assert [d for d in tmpdirs if d.exists()] == []
    # Sockets other processes on this machine make come and go; ours are all named above.
    ours = {p.name for p in pipes}
    assert not ours & ({p.name for p in temp_root.glob("OSL_PIPE_*")} - pipes_before)
