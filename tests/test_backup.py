"""Backup and restore as the README says: a copy of the data directory (database, objects,
secret key) serves every file and artifact from a new path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.support.served import ServedApp

SOURCES = ("odt/HelloWorld.odt", "docx/SampleDoc.docx")


@pytest.mark.engine
def test_a_copied_data_directory_serves_everything(serve: type[ServedApp], corpus: Path) -> None:
    """Stop, copy to a new path, start there: every artifact downloads, old links included."""
    old = serve(workers=1).start()
    made: dict[str, dict[str, bytes | str]] = {}
    for source in SOURCES:
        file = old.upload_ok(corpus / source)
        answer = old.convert(file["id"], "txt").json()
        made[file["id"]] = {"txt": requests.get(answer["download_url"], timeout=30).content,
                            "link": answer["download_url"]}
    old.stop()

    restored = serve(workers=1)
    shutil.copytree(old.data_dir, restored.data_dir, symlinks=True)
    # The copy's database has the old key; no new one is created on a restored start.
    restored.key = old.key
    restored.http.headers["X-API-Key"] = old.key
    restored.start()
    assert (restored.data_dir / "converter.db").exists()

    listed = {f["id"] for f in restored.request("GET", "/v1/files").json()["data"]}
    assert listed == set(made)
    for file_id, before in made.items():
        # The artifact from the copy, not made again.
        again = restored.convert(file_id, "txt").json()
        assert again["cached"] is True
        assert requests.get(again["download_url"], timeout=30).content == before["txt"]
        # A link signed before the backup still works: the secret key was restored too.
        link = str(before["link"]).replace(old.url, restored.url)
        assert requests.get(link, timeout=30).content == before["txt"]
        # The original itself: a conversion not made before reads it from the copy.
        fresh = restored.convert(file_id, "html").json()
        assert fresh["cached"] is False
        assert requests.get(fresh["download_url"], timeout=30).status_code == 200
