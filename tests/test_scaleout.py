"""Scale-out: two replicas sharing PostgreSQL and S3 (moto's server over HTTP)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.moto import BUCKET, CREDENTIALS
from tests.support.postgres import fresh_database
from tests.support.served import ServedApp

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.engine]


@pytest.fixture
def replicas(tmp_path: Path, moto_endpoint: str) -> Iterator[tuple[ServedApp, ServedApp]]:
    """Two `converter serve` processes with one database, one bucket and one secret."""
    with fresh_database() as database_url:
        env = {
            "CONVERTER_DATABASE_URL": database_url,
            "CONVERTER_STORAGE": "s3",
            "CONVERTER_S3_BUCKET": BUCKET,
            "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
            "CONVERTER_S3_PREFIX": f"scaleout-{secrets.token_hex(4)}/",
            "CONVERTER_SECRET_KEY": secrets.token_hex(32),
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
            yield first, second
        finally:
            second.stop()
            first.stop()


def test_replicas_share_files_artifacts_and_the_cache(replicas: tuple[ServedApp, ServedApp],
                                                      corpus: Path) -> None:
    """Upload on one replica, convert on the other, hit the cache on the first."""
    first, second = replicas
    file_id = first.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    assert second.request("GET", f"/v1/files/{file_id}").status_code == 200
    converted = second.convert(file_id, "pdf")
    assert converted.status_code == 200, converted.text
    body = converted.json()
    assert body["cached"] is False
    # Presigned by S3 itself, not by the service.
    assert body["download_url"].startswith(first.env["CONVERTER_S3_ENDPOINT_URL"])
    download = requests.get(body["download_url"], timeout=30)
    assert download.status_code == 200 and download.content.startswith(b"%PDF-")
    assert download.headers["Content-Type"] == "application/pdf"
    assert 'filename="SampleDoc.pdf"' in download.headers["Content-Disposition"]
    again = first.convert(file_id, "pdf").json()
    assert again["cached"] is True and again["size_bytes"] == body["size_bytes"]
    assert first.metrics()["converter_engine_calls_total"] == 0


def test_a_key_revoked_on_one_host_is_refused_by_the_other(
        replicas: tuple[ServedApp, ServedApp]) -> None:
    """`keys revoke` beside replica b: replica a (another data directory) refuses it next."""
    first, second = replicas
    raw = first.create_key("revokers", "rex")
    key_id = [line.split("\t")[0] for line in first.cli("keys", "list").splitlines()
              if "\trevokers\trex\t" in line][0]
    for replica in (first, second, first, second):  # both now hold it in their caches
        assert replica.request("GET", "/v1/files", key=raw).status_code == 200
    second.cli("keys", "revoke", key_id)
    assert first.request("GET", "/v1/files", key=raw).status_code == 401
    assert second.request("GET", "/v1/files", key=raw).status_code == 401
    assert first.request("GET", "/v1/files").status_code == 200


def test_concurrent_identical_converts_across_replicas_store_one_artifact(
        replicas: tuple[ServedApp, ServedApp], corpus: Path) -> None:
    """Both replicas may convert at once, but they agree on one artifact afterwards."""
    first, second = replicas
    file_id = first.upload_ok(corpus / "doc/Bug50955.doc")["id"]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: (first, second)[i % 2].convert(file_id, "pdf"),
                                  range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.json()["size_bytes"] for r in responses}) == 1
    calls = (first.metrics()["converter_engine_calls_total"]
             + second.metrics()["converter_engine_calls_total"])
    # Single-flight within each HTTP worker process (2 per replica); sharing it across the
    # processes of a host through the database is branch `singleflight`'s, which tightens this.
    assert 1 <= calls <= 4
    assert first.convert(file_id, "pdf").json()["cached"] is True


def test_delete_on_one_replica_removes_objects_from_s3(replicas: tuple[ServedApp, ServedApp],
                                                       corpus: Path) -> None:
    """DELETE removes the original and the artifacts from the bucket."""
    from tests.support.moto import raw_client

    first, second = replicas
    file_id = first.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    assert second.convert(file_id, "txt").status_code == 200
    client = raw_client(first.env["CONVERTER_S3_ENDPOINT_URL"])
    prefix = first.env["CONVERTER_S3_PREFIX"]

    def keys() -> list[str]:
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for o in listed.get("Contents", []) if file_id in o["Key"]]

    assert len(keys()) == 2
    assert second.request("DELETE", f"/v1/files/{file_id}").status_code == 204
    assert keys() == []
    assert first.request("GET", f"/v1/files/{file_id}").status_code == 404
