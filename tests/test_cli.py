"""The `converter` console script as a client, run as a subprocess against a served app."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pypdf
import pytest

from converter.client import Client
from tests.support.scripted import Reply, ScriptedServer
from tests.support.served import CONVERTER, ServedApp, free_port

pytestmark = pytest.mark.engine


def client_env(url: str, key: str) -> dict[str, str]:
    """A client machine's environment: only CONVERTER_URL and CONVERTER_API_KEY set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTER_")}
    env.update({"CONVERTER_URL": url, "CONVERTER_API_KEY": key})
    return env


def cli(env: dict[str, str], *args: str, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    """Run `converter ARGS` with stdout and stderr piped (never a terminal)."""
    return subprocess.run([CONVERTER, *args], env=env, cwd=cwd, capture_output=True,
                          timeout=300)


@pytest.fixture(scope="module")
def key(service: ServedApp) -> str:
    """A key of this module's own workspace."""
    return service.create_key("cli-tests", "carl")


def _pages(data: bytes) -> int:
    assert data.startswith(b"%PDF-"), data[:20]
    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def test_convert_writes_the_file_and_is_quiet_when_piped(service: ServedApp, key: str,
                                                         corpus: Path, tmp_path: Path) -> None:
    """-o names the output; no bars or carriage returns when stderr is not a terminal."""
    env = client_env(service.url, key)
    done = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "pdf",
               "-o", str(tmp_path / "report.pdf"))
    assert done.returncode == 0, done.stderr
    assert _pages((tmp_path / "report.pdf").read_bytes()) > 1
    assert done.stdout.decode().strip() == str(tmp_path / "report.pdf")
    assert done.stderr == b""
    # The uploaded file was removed afterwards (unless --keep).
    with Client(service.url, key) as client:
        assert list(client.list_files()) == []


def test_convert_defaults_options_stdout_and_keep(service: ServedApp, key: str, corpus: Path,
                                                  tmp_path: Path) -> None:
    """Default output name in the current directory; --option reaches the engine; -o -."""
    env = client_env(service.url, key)
    done = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "pdf",
               "--option", "page_range=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _pages((tmp_path / "SampleDoc.pdf").read_bytes()) == 1
    (tmp_path / "out").mkdir()
    into_dir = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "odt",
                   "-o", str(tmp_path / "out"))
    assert into_dir.returncode == 0, into_dir.stderr
    assert (tmp_path / "out/SampleDoc.odt").read_bytes().startswith(b"PK")

    piped = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "txt", "-o", "-",
                "--keep")
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout) > 100 and b"kept uploaded file file_" in piped.stderr
    file_id = piped.stderr.decode().split("kept uploaded file ")[1].split()[0]
    with Client(service.url, key) as client:
        assert [f["id"] for f in client.list_files()] == [file_id]
        client.delete_file(file_id)


@pytest.mark.parametrize("args", [
    ["convert", "missing.docx", "--to", "pdf"],                    # no such file
    ["convert", "{doc}", "--to", "pdf", "--option", "page_range"],  # not key=value
    ["convert", "{doc}"],                                           # --to is required
    ["frobnicate"],                                                 # no such command
    ["runs", "wait"],                                               # run id missing
    ["runs", "list", "--limit", "-1"],                              # not a count
    ["convert", "{doc}", "--to", "pdf", "-o", "/nonexistent/dir/x.pdf"],  # no such directory
])
def test_usage_errors_exit_2(service: ServedApp, key: str, corpus: Path,
                             args: list[str]) -> None:
    """Mistakes on the command line: exit 2 and a message on stderr."""
    args = [a.replace("{doc}", str(corpus / "docx/SampleDoc.docx")) for a in args]
    done = cli(client_env(service.url, key), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip()


def test_unset_url_is_a_usage_error_naming_the_variable(key: str, corpus: Path) -> None:
    """Without CONVERTER_URL: exit 2 and the variable to set."""
    env = client_env("", key)
    del env["CONVERTER_URL"]
    done = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "pdf")
    assert done.returncode == 2 and b"CONVERTER_URL" in done.stderr


def test_refusals_exit_3(service: ServedApp, key: str, corpus: Path, tmp_path: Path) -> None:
    """An unsupported target, an unreadable document, a wrong key: exit 3, no output file."""
    env = client_env(service.url, key)
    bad_target = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "mp3",
                     "-o", str(tmp_path / "x.mp3"))
    assert bad_target.returncode == 3
    assert b"invalid_request" in bad_target.stderr and b"valid_targets" in bad_target.stderr
    assert b"request_id req_" in bad_target.stderr
    corrupt = cli(env, "convert", str(corpus / "bad/xlsx-corrupted.xlsx"), "--to", "pdf",
                  "-o", str(tmp_path / "x.pdf"))
    assert corrupt.returncode == 3 and b"unprocessable_document" in corrupt.stderr
    wrong_key = cli(client_env(service.url, "sk_live_" + "n" * 32), "runs", "list")
    assert wrong_key.returncode == 3 and b"unauthorized" in wrong_key.stderr
    missing_run = cli(env, "runs", "get", "run_nope")
    assert missing_run.returncode == 3 and b"not_found" in missing_run.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_exits_4_and_a_5xx_exits_4(service: ServedApp, key: str,
                                                 corpus: Path) -> None:
    """`runs wait` on a run that fails, and a server answering 500: exit 4."""
    with Client(service.url, key) as client:
        file_id = client.upload(corpus / "bad/xlsx-corrupted.xlsx")["id"]
        run_id = client.create_run(file_id, "pdf")["run_id"]
    done = cli(client_env(service.url, key), "runs", "wait", run_id, "--timeout", "180")
    assert done.returncode == 4, done.stderr
    assert f"run {run_id} failed".encode() in done.stderr
    broken = Reply(500, {"error": {"type": "internal_error", "message": "boom",
                                   "request_id": "req_broken1"}})
    with ScriptedServer([broken]) as server:
        crashed = cli(client_env(server.url, key), "runs", "get", "run_1")
    assert crashed.returncode == 4 and b"req_broken1" in crashed.stderr
    assert len(server.seen) == 1  # a 500 is not retried


def test_a_closed_port_exits_5(key: str, corpus: Path) -> None:
    """Nothing listening at CONVERTER_URL: exit 5 naming the variable."""
    env = client_env(f"http://127.0.0.1:{free_port()}", key)
    done = cli(env, "convert", str(corpus / "docx/SampleDoc.docx"), "--to", "pdf")
    assert done.returncode == 5
    assert b"unreachable" in done.stderr and b"CONVERTER_URL" in done.stderr


def test_runs_list_get_wait(service: ServedApp, key: str, corpus: Path,
                            tmp_path: Path) -> None:
    """JSON out for scripts; wait -o downloads the output."""
    with Client(service.url, key) as client:
        file_id = client.upload(corpus / "docx/SampleDoc.docx")["id"]
        run_id = client.create_run(file_id, "pdf")["run_id"]
    env = client_env(service.url, key)
    waited = cli(env, "runs", "wait", run_id, "-o", str(tmp_path / "run.pdf"))
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "completed"
    assert _pages((tmp_path / "run.pdf").read_bytes()) > 1
    got = cli(env, "runs", "get", run_id)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == run_id
    listed = cli(env, "runs", "list", "--status", "completed", "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert run_id in [r["id"] for r in rows] and {r["status"] for r in rows} == {"completed"}
    assert waited.stderr == b""


def test_bars_show_on_a_terminal(service: ServedApp, key: str, corpus: Path,
                                 tmp_path: Path) -> None:
    """With stderr on a pseudo-terminal: upload, convert and download bars appear."""
    leader, follower = pty.openpty()
    # A real terminal has a size; a fresh pseudo-terminal is 0x0 until told otherwise.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO once the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run([CONVERTER, "convert", str(corpus / "docx/SampleDoc.docx"), "--to",
                           "pdf", "-o", str(tmp_path / "tty.pdf")],
                          env=client_env(service.url, key), stdout=subprocess.PIPE,
                          stderr=follower, timeout=300)
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, shown
    assert "upload SampleDoc.docx" in shown and "100%" in shown
    assert "convert to pdf" in shown and "download pdf" in shown
    assert _pages((tmp_path / "tty.pdf").read_bytes()) > 1
