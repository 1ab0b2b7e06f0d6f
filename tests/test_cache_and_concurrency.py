"""The artifact cache and single-flight, observed through a served app's engine counters."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine
# A 33-slide deck: seconds of LibreOffice, long enough to delete its file meanwhile.
SLOW_DECK = "odp/2023_-_LibreOffice_Conference_Bukarest_-_ODF_and_its_Toolkit.odp"


def test_second_call_is_cached_without_a_second_conversion(service: ServedApp,
                                                            corpus: Path) -> None:
    """Same (file, format, options): cached: true, no engine call, a freshly signed URL."""
    file_id = service.upload_ok(corpus / "docx/IllustrativeCases.docx")["id"]
    calls_before = service.metrics()["converter_engine_calls_total"]
    first = service.convert(file_id, "pdf").json()
    assert first["cached"] is False
    assert service.metrics()["converter_engine_calls_total"] == calls_before + 1
    second = service.convert(file_id, "pdf").json()
    assert second["cached"] is True
    assert service.metrics()["converter_engine_calls_total"] == calls_before + 1
    assert second["size_bytes"] == first["size_bytes"]
    assert second["download_url"] != first["download_url"]
    a = requests.get(first["download_url"], timeout=30)
    b = requests.get(second["download_url"], timeout=30)
    assert a.status_code == b.status_code == 200 and a.content == b.content


def test_different_options_are_different_cache_entries(service: ServedApp,
                                                      corpus: Path) -> None:
    """The cache key includes the normalised options."""
    file_id = service.upload_ok(corpus / "docx/PageSpecificHeadFoot.docx")["id"]
    assert service.convert(file_id, "pdf").json()["cached"] is False
    assert service.convert(file_id, "pdf", options='{"page_range": "1"}').json()["cached"] is False
    assert service.convert(file_id, "pdf", options='{"page_range": " 1 "}').json()["cached"] is True


def test_eight_identical_concurrent_converts_run_one_conversion(service: ServedApp,
                                                                corpus: Path) -> None:
    """Single-flight: 8 simultaneous identical requests, exactly 1 engine call."""
    file_id = service.upload_ok(corpus / "doc/Bug50955.doc")["id"]  # ~1.5 s to convert
    before = service.metrics()["converter_engine_calls_total"]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: service.convert(file_id, "pdf"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    sizes = {r.json()["size_bytes"] for r in responses}
    assert len(sizes) == 1
    assert service.metrics()["converter_engine_calls_total"] == before + 1


def test_eight_different_converts_use_at_least_two_instances_at_once(
        serve: type[ServedApp], corpus: Path) -> None:
    """The pool is a pool: different documents convert in parallel."""
    app = serve(workers=2).start()
    docs = ["docx/bug59058.docx", "doc/Bug50955.doc", "doc/parentinvguid.doc",
            "docx/stress011.docx", "odt/excelfileformat.odt", "xlsx/51519.xlsx",
            "pptx/SampleShow.pptx", "docx/stress019.docx"]
    ids = [app.upload_ok(corpus / d)["id"] for d in docs]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda fid: app.convert(fid, "pdf"), ids))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    metrics = app.metrics()
    assert metrics["converter_engine_busy_max"] >= 2
    per_instance = [v for k, v in metrics.items()
                    if k.startswith("converter_engine_instance_conversions")]
    assert len(per_instance) == 2 and all(v >= 1 for v in per_instance), per_instance


@pytest.mark.engine
def test_a_file_deleted_while_it_converts_gets_404_and_leaves_no_object(
        serve: type[ServedApp], corpus: Path) -> None:
    """Deleted mid-conversion: the caller gets 404 naming file_id, not a 500; no object stays."""
    app = serve(workers=1).start()
    file_id = app.upload_ok(corpus / SLOW_DECK)["id"]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(app.convert, file_id, "pdf")
        deadline = time.monotonic() + 120
        while app.metrics().get("converter_engine_busy", 0.0) < 1:
            assert time.monotonic() < deadline, "the conversion never reached the engine"
            time.sleep(0.05)
        assert app.request("DELETE", f"/v1/files/{file_id}").status_code == 204
        response = pending.result(timeout=300)
    assert response.status_code == 404, response.text
    assert error_of(response)["field"] == "file_id"
    left = app.data_dir / "objects" / "artifacts" / file_id
    assert not left.exists() or not any(left.iterdir())
