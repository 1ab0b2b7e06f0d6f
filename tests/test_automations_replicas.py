"""Two replicas on PostgreSQL (S3 storage through moto) watch one folder: each file once."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.support.moto import BUCKET, CREDENTIALS
from tests.support.postgres import fresh_database
from tests.support.served import ServedApp
from tests.test_automations_served import (
    DOCS,
    POLL,
    _automation,
    _events,
    _expected,
    _once_each,
    _outputs,
    _wait,
)

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.engine]


def test_two_replicas_deliver_each_document_once(tmp_path: Path, moto_endpoint: str,
                                                 corpus: Path) -> None:
    """Both replicas list and claim; the database lets exactly one convert each version."""
    roots = tmp_path / "roots"
    roots.mkdir()
    with fresh_database() as database_url:
        env = {
            "CONVERTER_DATABASE_URL": database_url,
            "CONVERTER_STORAGE": "s3",
            "CONVERTER_S3_BUCKET": BUCKET,
            "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
            "CONVERTER_S3_PREFIX": f"automations-{secrets.token_hex(4)}/",
            "CONVERTER_SECRET_KEY": secrets.token_hex(32),
            "CONVERTER_AUTOMATION_POLL_SECONDS": str(POLL),
            "CONVERTER_LOCAL_CONNECTOR_ROOTS": str(roots),
            "AWS_DEFAULT_REGION": "us-east-1",
            **CREDENTIALS,
        }
        first = ServedApp(tmp_path / "a", env=env, workers=1)
        second = ServedApp(tmp_path / "b", env=env, workers=1)
        second.key = first.key  # created once by whichever replica bootstraps first
        second.http.headers["X-API-Key"] = first.key
        try:
            first.start()
            second.start()
            inbox, outbox = roots / "in", roots / "out"
            automation_id = _automation(first, inbox, outbox)
            for round_ in range(2):  # a second batch under other names, while both poll
                for doc in DOCS:
                    shutil.copy(corpus / doc, inbox / f"r{round_}-{Path(doc).name}")
            expected = sorted(f"r{r}-{name}" for r in range(2) for name in _expected())
            _wait(lambda: _outputs(outbox) == expected, 180, "ten PDFs")
            events = _events(second, automation_id)
            sources = sorted(p.name for p in inbox.iterdir())
            # A listing made while a file was still being copied sees it twice (two
            # versions); only the finished version is converted.
            assert set(_once_each(events, "seen")) == set(sources)
            assert _once_each(events, "converted") == dict.fromkeys(sources, 1)
            assert _once_each(events, "delivered") == dict.fromkeys(sources, 1)
            # Both replicas did list the source (each counts its own listings).
            for replica in (first, second):
                assert replica.metrics().get(
                    'converter_automation_listings_total{outcome="ok"}', 0) > 0
        finally:
            second.stop()
            first.stop()
