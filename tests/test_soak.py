"""Soak: hundreds of real conversions through the pool while instances are killed at random."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from converter.db.engine import connect
from converter.service.keys import KeyStore
from tests.support.outputs import check_output
from tests.support.served import ServedApp

pytestmark = [pytest.mark.slow, pytest.mark.engine]

# Small real documents, each with a phrase its output must contain, and cheap targets.
DOCS = [
    ("docx/SampleDoc.docx", "I am a test document", ("pdf", "txt", "html", "odt")),
    ("doc/SampleDoc.doc", "I am a test document", ("pdf", "txt", "docx")),
    ("odt/HelloWorld.odt", "Hello World1", ("pdf", "txt", "docx")),
    ("rtf/Example_text.rtf", "Text here with hyperlink", ("pdf", "txt", "odt")),
    ("xlsx/SampleSS.xlsx", "Test spreadsheet", ("pdf", "csv", "html")),
    ("ods/SampleSS.ods", "Test spreadsheet", ("pdf", "csv", "xlsx")),
    ("pptx/SampleShow.pptx", "Title of the first slide", ("pdf", "odp")),
]
CONVERSIONS = 300


def _convert_until_done(app: ServedApp, file_id: str, target: str,
                        key: str) -> requests.Response:
    """What a well-behaved client does: retry only what the service calls retryable."""
    for _attempt in range(5):
        response = app.convert(file_id, target, key=key)
        if response.status_code in (502, 503) and response.json()["error"].get("retryable"):
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return response
    return response


def made_by(metrics: dict[str, float], path: str) -> float:
    """Artifacts the given path produced, from /metrics."""
    return metrics.get(f'converter_artifacts_produced_total{{path="{path}"}}', 0.0)


def test_soak_with_random_instance_kills(serve: type[ServedApp], corpus: Path) -> None:
    """300 distinct conversions, a kill -9 every few seconds: none lost, none wrong."""
    app = serve(workers=2, env={"CONVERTER_CONVERSION_TIMEOUT": "60"}).start()
    rng = random.Random(20261123)
    jobs = []
    keys = KeyStore(connect(f"sqlite:///{app.data_dir / 'converter.db'}"))
    while len(jobs) < CONVERSIONS:
        rel, phrase, targets = rng.choice(DOCS)
        # A new file of a new owner: never a cache hit, by file or by content.
        _key_id, key = keys.create(f"soak-{len(jobs)}", "soaker")
        file_id = app.upload_ok(corpus / rel, key=key)["id"]
        jobs += [(file_id, target, phrase, key) for target in targets]
    keys.db.dispose()
    jobs = jobs[:CONVERSIONS]
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        # Kill only a fully ready pool, so the other instance can take over: a request hit
        # on two instances in a row is, by design, a poison document (422), not a lost one.
        while not stop.wait(rng.uniform(1.0, 2.0)):
            if requests.get(f"{app.url}/readyz", timeout=5).status_code != 200:
                continue
            pids = app.soffice_pids()
            if len(pids) == 2:
                victim = rng.choice(pids)
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(
                lambda job: _convert_until_done(app, job[0], job[1], job[3]), jobs))
    finally:
        stop.set()
        thread.join()
    failures = [(job, r.status_code, r.text[:200]) for job, r in zip(jobs, responses, strict=True)
                if r.status_code != 200]
    assert not failures, failures[:5]
    for (_file_id, target, phrase, _key), response in zip(jobs, responses, strict=True):
        body = response.json()
        data = requests.get(body["download_url"], timeout=60).content
        assert len(data) == body["size_bytes"]
        check_output(target, data, phrase)
    assert len(kills) >= 3, "the soak must actually kill instances"
    metrics = app.metrics()
    # Every conversion was made once at least: by LibreOffice, or by the xlsx CSV fast path.
    made = sum(v for k, v in metrics.items() if k.startswith("converter_artifacts_produced_total{"))
    assert made >= CONVERSIONS
    assert metrics["converter_engine_calls_total"] >= CONVERSIONS - made_by(metrics, "openpyxl")
    assert metrics['converter_engine_restarts_total{reason="crash"}'] >= 1
