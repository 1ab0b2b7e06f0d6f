"""Schemathesis against a served app: every operation of /openapi.json, with a valid key.

Fails on any server error except the engine's documented 502 and 503, and on any response
whose status, content type, headers or body the description does not allow (every check
except positive_data_acceptance: which target a file takes, whether a cursor came from a
previous page, and file-or-url are facts no schema can hold, so valid-looking requests are
rightly refused with 400). Its summary line is printed in pytest's closing summary.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import summaries
from tests.support.schemathesis_hooks import local_url
from tests.support.served import REPO, ServedApp

pytestmark = pytest.mark.engine

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
SUPPORT = REPO / "tests" / "support"
# Enough cases per operation to reach the success paths of every one with the real ids,
# bounded so the whole run takes about a minute on 2 shared cores. A fixed seed keeps CI
# reproducible: a failure replays with the same cases.
MAX_EXAMPLES = 40
SEED = 20261201
OPERATIONS = 38  # every operation of openapi.yaml


def _completed_run(app: ServedApp, file_id: str) -> dict[str, Any]:
    created = app.request("POST", "/v1/runs", json={"file_id": file_id, "format": "odt"})
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run: dict[str, Any] = app.request("GET", f"/v1/runs/{created.json()['run_id']}").json()
        if run["status"] in ("completed", "failed"):
            assert run["status"] == "completed", run
            return run
        time.sleep(0.2)
    raise AssertionError(f"run did not complete: {run}")


def _summary(output: str) -> list[str]:
    """Schemathesis's closing lines: what it tested, its case counts and its verdict."""
    lines = output.splitlines()
    picked = [line.strip() for line in lines if re.match(r"\s+(Selected|Tested): ", line)]
    for i, line in enumerate(lines):
        if line.strip() == "Test cases:" and i + 1 < len(lines):
            picked.append("Test cases: " + lines[i + 1].strip())
    picked += [line for line in lines if re.match(r"^=+ .+ in [0-9.]+s =+$", line)]
    return picked


def test_schemathesis_finds_nothing(serve: type[ServedApp], tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    """Every operation, every check but one, against the real service and engine."""
    app = serve(env={
        "CONVERTER_CONVERSION_TIMEOUT": "30",
        "CONVERTER_URL_FETCH_TIMEOUT": "2",
        # Budgets out of the way: thousands of cases from one key in a minute.
        "CONVERTER_REQUESTS_PER_MINUTE": "1000000",
        "CONVERTER_RUNS_PER_HOUR": "1000000",
    }, workers=1).start()
    with (REPO / "examples" / "sample.docx").open("rb") as fh:
        upload = app.request("POST", "/v1/files", files={"file": ("sample.docx", fh)})
    assert upload.status_code == 201, upload.text
    run = _completed_run(app, upload.json()["id"])
    token = run["download_url"].rsplit("/", 1)[1]
    assert app.request("GET", f"/v1/downloads/{token}").status_code == 200

    started = time.monotonic()
    done = subprocess.run(
        [SCHEMATHESIS, "--no-color", "--config-file", str(SUPPORT / "schemathesis.toml"),
         # The key both ways the service takes it, so every security scheme schemathesis
         # fills in carries it (a generated Bearer beside a valid X-API-Key is ignored).
         "run", f"{app.url}/openapi.json", "--header", f"X-API-Key: {app.key}",
         "--header", f"Authorization: Bearer {app.key}",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
         "--request-timeout", "60"],
        # Its example database (.schemathesis/) goes to the test's directory, not the repo.
        cwd=tmp_path, capture_output=True, text=True, timeout=540,
        env={**app.env, "SCHEMATHESIS_HOOKS": str(SUPPORT / "schemathesis_hooks.py"),
             "CONVERTER_ST_FILE_ID": upload.json()["id"], "CONVERTER_ST_RUN_ID": run["id"],
             "CONVERTER_ST_TOKEN": token})
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    summary = _summary(output)
    summaries.add(request.config, "schemathesis",
                  [*summary, f"(schemathesis ran {elapsed:.0f}s; rc {done.returncode})"])

    assert done.returncode == 0, output[-20000:]
    assert f"Selected: {OPERATIONS}/{OPERATIONS}" in summary, output[-5000:]
    assert f"Tested: {OPERATIONS}" in summary, output[-5000:]
    log = app.log()
    # A 500 would have failed the run already; the log says where one came from.
    assert "unhandled error" not in log, log[-5000:]
    # The hooks aim every generated URL at 127.0.0.1: nothing was looked up elsewhere.
    assert "cannot resolve host" not in log, log[-5000:]
    served_5xx = re.findall(r" -> (5\d\d) ", log)
    assert set(served_5xx) <= {"502", "503"}, served_5xx


def test_generated_urls_stay_on_this_machine() -> None:
    """The hook that aims url and webhook_url at 127.0.0.1 keeps everything else."""
    assert local_url("https://user:pw@example.com:8443/a/b?c=1#d") == (
        "https://127.0.0.1:8443/a/b?c=1#d")
    assert local_url("http://0.com") == "http://127.0.0.1"
    assert local_url("ftp://[::1]/x") == "ftp://127.0.0.1/x"
    # Nothing to aim: the service refuses these before resolving any name.
    assert local_url("no-host-here") == "no-host-here"
    assert local_url("http://[bad") == "http://[bad"
    assert local_url(12) == 12
