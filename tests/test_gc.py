"""converter gc: orphans, rows whose object is missing, stale directories, expired leases and
idempotency keys, against served apps on local storage and on moto's S3 server."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.support.moto import BUCKET, CREDENTIALS, raw_client
from tests.support.served import ServedApp

LOOP_OFF = {"CONVERTER_CLEANUP_INTERVAL_SECONDS": "0", "CONVERTER_RUN_WORKERS": "0"}
DAY_AGO = time.time() - 86400


def gc(app: ServedApp, *args: str) -> dict[str, int]:
    """Run `converter gc` on the app's configuration; its table as {kind: count}."""
    lines = app.cli("gc", *args).splitlines()
    assert lines[0] == "kind\tcount", lines
    return {kind: int(count) for kind, count in (line.split("\t") for line in lines[1:])}


def plant(path: Path, old: bool, directory: bool = False) -> Path:
    """Create a file (or directory) at path, aged a day when old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir()
        (path / "source.docx").write_bytes(b"left by a killed process")
    else:
        path.write_bytes(b"left by a crash")
    if old:
        os.utime(path, (DAY_AGO, DAY_AGO))
    return path


def sql(app: ServedApp, statement: str, *params: object) -> int:
    """Run one statement on the served app's SQLite database; rows changed."""
    with sqlite3.connect(app.data_dir / "converter.db", timeout=30) as db:
        return db.execute(statement, params).rowcount


def stamp(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def artifact_rows(app: ServedApp, file_id: str) -> int:
    """How many artifact rows the file has."""
    with sqlite3.connect(app.data_dir / "converter.db", timeout=30) as db:
        count: int = db.execute("SELECT count(*) FROM artifacts WHERE file_id = ?",
                                (file_id,)).fetchone()[0]
        return count


@pytest.mark.engine
def test_gc_on_local_storage(serve: type[ServedApp], corpus: Path) -> None:
    """Dry run counts and changes nothing; gc then removes and repairs exactly that."""
    app = serve(env={**LOOP_OFF, "CONVERTER_ORPHAN_GRACE_SECONDS": "60"}, workers=1).start()
    file = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    first = app.convert(file["id"], "txt").json()
    objects = app.data_dir / "objects"
    [artifact] = (objects / "artifacts" / file["id"]).glob("*.txt")

    # The request path: a row whose object vanished converts again instead of failing.
    artifact.unlink()
    again = app.convert(file["id"], "txt")
    assert again.status_code == 200 and again.json()["cached"] is False, again.text
    assert b"Hello World" in requests.get(again.json()["download_url"], timeout=30).content
    # A link to the lost artifact's row says so (404), as any link to a deleted artifact.
    assert requests.get(first["download_url"], timeout=30).status_code == 404
    assert artifact.exists() and artifact_rows(app, file["id"]) == 1

    # What a crash, a lost object and killed processes leave behind, and what is live.
    artifact.unlink()
    orphans = [plant(objects / "artifacts" / "file_gone" / "x.pdf", old=True),
               plant(objects / "originals" / "file_gone", old=True)]
    fresh = plant(objects / "content" / "just-written.pdf", old=False)
    # Temp files of writes killed before their rename: never listed as objects.
    partial = plant(objects / "artifacts" / file["id"] / ".tmp-killedwrite", old=True)
    in_flight = plant(objects / "originals" / ".tmp-writing-now", old=False)
    engine = app.data_dir / "engine"
    stale = [plant(engine / "scratch" / uuid.uuid4().hex, old=True, directory=True),
             plant(app.data_dir / "tmp" / "upload-abandoned", old=True),
             plant(engine / "instance-5", old=True, directory=True)]
    live_scratch = plant(engine / "scratch" / uuid.uuid4().hex, old=False, directory=True)
    past = stamp(datetime.now(UTC) - timedelta(minutes=5))
    sql(app, "INSERT INTO leases (name, owner, expires_at) VALUES ('other', 'dead:1', ?)", past)
    run = app.request("POST", "/v1/runs", json={"file_id": file["id"], "format": "pdf"},
                      headers={"Idempotency-Key": "old-key"}).json()
    assert sql(app, "UPDATE runs SET status = 'running', lease_owner = 'dead:1', "
               "lease_expires_at = ? WHERE id = ?", past, run["run_id"]) == 1
    assert sql(app, "UPDATE idempotency_keys SET created_at = ? WHERE key = 'old-key'",
               stamp(datetime.now(UTC) - timedelta(hours=25))) == 1

    expected = {"orphan_objects": 2, "partial_writes": 1, "missing_artifacts": 1, "scratch": 2,
                "profiles": 1, "leases": 1, "abandoned_runs": 1, "idempotency_keys": 1}
    assert gc(app, "--dry-run") == expected
    assert all(p.exists() for p in [*orphans, *stale, partial, fresh, live_scratch, in_flight])
    assert artifact_rows(app, file["id"]) == 1

    assert gc(app) == expected
    assert [p for p in [*orphans, *stale, partial] if p.exists()] == []
    assert fresh.exists() and live_scratch.exists() and in_flight.exists()
    assert (objects / "originals" / file["id"]).exists() and (engine / "instance-0").exists()
    assert artifact_rows(app, file["id"]) == 0
    assert app.request("GET", f"/v1/runs/{run['run_id']}").json()["status"] == "pending"
    assert gc(app, "--dry-run") == {}
    repaired = app.convert(file["id"], "txt")
    assert repaired.status_code == 200 and repaired.json()["cached"] is False


@pytest.mark.engine
@pytest.mark.s3
def test_gc_on_s3(serve: type[ServedApp], corpus: Path, moto_endpoint: str) -> None:
    """On S3: an old object without a row is deleted, a row without its object dropped."""
    prefix = f"gc-{uuid.uuid4().hex}/"
    app = serve(env={**LOOP_OFF, **CREDENTIALS, "CONVERTER_STORAGE": "s3",
                     "CONVERTER_S3_BUCKET": BUCKET, "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
                     "CONVERTER_S3_PREFIX": prefix, "CONVERTER_ORPHAN_GRACE_SECONDS": "1"},
                workers=1).start()
    s3 = raw_client(moto_endpoint)
    file = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    assert app.convert(file["id"], "txt").status_code == 200
    [artifact] = [item["Key"] for item in s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{prefix}artifacts/{file['id']}/")["Contents"]]
    s3.delete_object(Bucket=BUCKET, Key=artifact)
    orphan = f"{prefix}artifacts/file_gone/x.txt"
    s3.put_object(Bucket=BUCKET, Key=orphan, Body=b"left by a crash")
    outside = "someone-else/originals/x"  # not under the service's prefix: never touched
    s3.put_object(Bucket=BUCKET, Key=outside, Body=b"not ours")
    # A multipart upload a kill cut short: its parts are stored (and billed) but no object.
    killed = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}originals/file_killed")
    s3.upload_part(Bucket=BUCKET, Key=f"{prefix}originals/file_killed", PartNumber=1,
                   UploadId=killed["UploadId"], Body=b"part of a large original")
    others = s3.create_multipart_upload(Bucket=BUCKET, Key="someone-else/big")
    time.sleep(2)  # past the one-second grace: moto keeps real write times

    assert gc(app, "--dry-run") == {"orphan_objects": 1, "partial_writes": 1,
                                    "missing_artifacts": 1}
    assert gc(app) == {"orphan_objects": 1, "partial_writes": 1, "missing_artifacts": 1}
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    outsiders = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="someone-else/big")
    assert [u["UploadId"] for u in outsiders.get("Uploads", [])] == [others["UploadId"]]
    s3.abort_multipart_upload(Bucket=BUCKET, Key="someone-else/big",
                              UploadId=others["UploadId"])
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert orphan not in keys and outside in keys and f"{prefix}originals/{file['id']}" in keys
    repaired = app.convert(file["id"], "txt")
    assert repaired.status_code == 200 and repaired.json()["cached"] is False
    download = requests.get(repaired.json()["download_url"], timeout=30)
    assert download.status_code == 200 and b"Hello" in download.content
    s3.delete_object(Bucket=BUCKET, Key=outside)


@pytest.mark.engine
@pytest.mark.s3
def test_a_lost_s3_object_converts_again_on_the_next_request(
        serve: type[ServedApp], corpus: Path, moto_endpoint: str) -> None:
    """On S3 a cache hit checks the object (HEAD): a lost one converts again, before any gc."""
    prefix = f"hit-{uuid.uuid4().hex}/"
    app = serve(env={**LOOP_OFF, **CREDENTIALS, "CONVERTER_STORAGE": "s3",
                     "CONVERTER_S3_BUCKET": BUCKET, "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
                     "CONVERTER_S3_PREFIX": prefix}, workers=1).start()
    s3 = raw_client(moto_endpoint)
    file = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    assert app.convert(file["id"], "txt").json()["cached"] is False
    assert app.convert(file["id"], "txt").json()["cached"] is True
    [artifact] = [item["Key"] for item in s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{prefix}artifacts/{file['id']}/")["Contents"]]
    s3.delete_object(Bucket=BUCKET, Key=artifact)

    again = app.convert(file["id"], "txt")
    assert again.status_code == 200 and again.json()["cached"] is False, again.text
    download = requests.get(again.json()["download_url"], timeout=30)
    assert download.status_code == 200 and b"Hello" in download.content
    assert app.convert(file["id"], "txt").json()["cached"] is True
