"""The content-keyed cache: a second upload of the same bytes by the same owner converts from
the cache; other owners (another user's personal files, another workspace) never share it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import requests

from tests.support.served import ServedApp

pytestmark = pytest.mark.engine

DOC = "docx/stress011.docx"


def _calls(app: ServedApp) -> float:
    return app.metrics()["converter_engine_calls_total"]


def _convert(app: ServedApp, file_id: str, key: str) -> dict[str, object]:
    response = app.convert(file_id, "pdf", key=key)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _download(body: dict[str, object]) -> bytes:
    response = requests.get(str(body["download_url"]), timeout=60)
    assert response.status_code == 200
    return response.content


def test_same_bytes_same_user_convert_from_the_cache(service: ServedApp, corpus: Path) -> None:
    """Second upload: cached, no engine call; deleting the first file keeps the second's."""
    workspace = "cc-" + secrets.token_hex(4)
    alice = service.create_key(workspace, "alice")
    first = service.upload_ok(corpus / DOC, key=alice)["id"]
    before = _calls(service)
    made = _convert(service, first, alice)
    assert made["cached"] is False and _calls(service) == before + 1

    second = service.upload_ok(corpus / DOC, key=alice, filename="again.docx")["id"]
    assert second != first
    hit = _convert(service, second, alice)
    assert hit["cached"] is True and _calls(service) == before + 1
    assert hit["size_bytes"] == made["size_bytes"]
    assert _download(hit) == _download(made)

    # The second file owns a copy: deleting the first leaves it working, still cached.
    assert service.request("DELETE", f"/v1/files/{first}", key=alice).status_code == 204
    assert requests.get(str(made["download_url"]), timeout=60).status_code == 404
    assert _download(hit).startswith(b"%PDF-")
    again = _convert(service, second, alice)
    assert again["cached"] is True and _calls(service) == before + 1
    # And a third upload after the first is gone finds the second's artifact.
    third = service.upload_ok(corpus / DOC, key=alice)["id"]
    assert _convert(service, third, alice)["cached"] is True
    assert _calls(service) == before + 1


def test_other_owners_convert_separately(service: ServedApp, corpus: Path) -> None:
    """Another user's personal upload, or another workspace's, is converted on its own."""
    workspace = "cc-" + secrets.token_hex(4)
    alice = service.create_key(workspace, "alice")
    bob = service.create_key(workspace, "bob")
    outsider = service.create_key("cc-other-" + secrets.token_hex(4), "alice")
    before = _calls(service)
    assert _convert(service, service.upload_ok(corpus / DOC, key=alice)["id"],
                    alice)["cached"] is False
    for key in (bob, outsider):
        file_id = service.upload_ok(corpus / DOC, key=key)["id"]
        assert _convert(service, file_id, key)["cached"] is False
    assert _calls(service) == before + 3
    # Alice's workspace-scoped upload is the workspace's, not hers: not shared either.
    shared = service.upload_ok(corpus / DOC, key=alice, scope="workspace")["id"]
    assert _convert(service, shared, alice)["cached"] is False
    assert _calls(service) == before + 4


def test_workspace_files_share_within_the_workspace(service: ServedApp, corpus: Path) -> None:
    """Workspace files belong to the workspace: any member's upload of the bytes hits."""
    workspace = "cc-" + secrets.token_hex(4)
    alice = service.create_key(workspace, "alice")
    bob = service.create_key(workspace, "bob")
    before = _calls(service)
    first = service.upload_ok(corpus / DOC, key=alice, scope="workspace")["id"]
    made = _convert(service, first, alice)
    second = service.upload_ok(corpus / DOC, key=bob, scope="workspace")["id"]
    hit = _convert(service, second, bob)
    assert made["cached"] is False and hit["cached"] is True
    assert _calls(service) == before + 1
    # Bob's personal upload is his own: the workspace's artifact is not shared with it.
    personal = service.upload_ok(corpus / DOC, key=bob)["id"]
    assert _convert(service, personal, bob)["cached"] is False
    assert _calls(service) == before + 2
