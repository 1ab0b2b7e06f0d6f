"""API keys, both header styles, and personal/workspace visibility across users."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.served import ServedApp, error_of


@pytest.fixture(scope="module")
def keys(service: ServedApp) -> dict[str, str]:
    """Two users in workspace acme, one in workspace globex."""
    return {
        "alice": service.create_key("acme", "alice"),
        "bob": service.create_key("acme", "bob"),
        "carol": service.create_key("globex", "carol"),
    }


def test_keys_look_like_sk_live(keys: dict[str, str]) -> None:
    """Generated keys have the documented shape and are distinct."""
    assert all(k.startswith("sk_live_") and len(k) >= 40 for k in keys.values())
    assert len(set(keys.values())) == 3


def test_bearer_and_x_api_key_both_work(service: ServedApp, keys: dict[str, str]) -> None:
    """Authorization: Bearer and X-API-Key are equivalent."""
    a = requests.get(f"{service.url}/v1/files", headers={"X-API-Key": keys["alice"]}, timeout=10)
    b = requests.get(f"{service.url}/v1/files",
                     headers={"Authorization": f"Bearer {keys['alice']}"}, timeout=10)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()


@pytest.mark.parametrize("headers", [
    {},
    {"X-API-Key": ""},
    {"X-API-Key": "sk_live_" + "x" * 32},
    {"X-API-Key": "not-a-key"},
    {"Authorization": "Bearer sk_live_wrongwrongwrongwrongwrongwrong"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_missing_or_bad_keys_are_401_with_a_generic_message(service: ServedApp,
                                                            headers: dict[str, str]) -> None:
    """Every authentication failure looks the same to the caller."""
    response = requests.get(f"{service.url}/v1/files", headers=headers, timeout=10)
    assert response.status_code == 401
    error = error_of(response)
    assert error["type"] == "unauthorized"
    assert error["message"] == "Missing or invalid API key."


def test_personal_files_are_visible_only_to_their_owner(service: ServedApp, corpus: Path,
                                                        keys: dict[str, str]) -> None:
    """A personal file: the owner sees it; a colleague and another workspace get 404."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx", key=keys["alice"])["id"]
    assert service.request("GET", f"/v1/files/{file_id}", key=keys["alice"]).status_code == 200
    for other in ("bob", "carol"):
        for method, path, data in (("GET", f"/v1/files/{file_id}", None),
                                   ("POST", f"/v1/files/{file_id}/convert", {"format": "pdf"}),
                                   ("DELETE", f"/v1/files/{file_id}", None)):
            response = service.request(method, path, key=keys[other], data=data)
            assert response.status_code == 404, (other, method, response.text)
            assert error_of(response)["type"] == "not_found"
        listed = service.request("GET", "/v1/files?limit=100", key=keys[other]).json()["data"]
        assert file_id not in {f["id"] for f in listed}


def test_workspace_files_are_visible_to_the_workspace_only(service: ServedApp, corpus: Path,
                                                           keys: dict[str, str]) -> None:
    """A workspace file: every key of acme sees and converts it; globex does not."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx", key=keys["alice"],
                                scope="workspace")["id"]
    assert service.request("GET", f"/v1/files/{file_id}", key=keys["bob"]).json()["scope"] == (
        "workspace")
    converted = service.convert(file_id, "txt", key=keys["bob"])
    assert converted.status_code == 200, converted.text
    listed = service.request("GET", "/v1/files?limit=100", key=keys["bob"]).json()["data"]
    assert file_id in {f["id"] for f in listed}
    assert service.request("GET", f"/v1/files/{file_id}", key=keys["carol"]).status_code == 404


def test_list_is_newest_first_with_cursor_pagination(service: ServedApp, corpus: Path) -> None:
    """Pages of 2 walk every file once, newest first."""
    key = service.create_key("paging", "pat")
    ids = [service.upload_ok(corpus / "rtf/Headings.rtf", key=key)["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/files?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = service.request("GET", query, key=key).json()
        seen += [f["id"] for f in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    bad = service.request("GET", "/v1/files?cursor=%%%", key=key)
    assert bad.status_code == 400 and error_of(bad)["field"] == "cursor"


def test_delete_removes_the_file_and_its_artifacts(service: ServedApp, corpus: Path) -> None:
    """After DELETE the file is gone and old download links stop working."""
    file_id = service.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    link = service.convert(file_id, "pdf").json()["download_url"]
    assert requests.get(link, timeout=30).status_code == 200
    assert service.request("DELETE", f"/v1/files/{file_id}").status_code == 204
    assert service.request("GET", f"/v1/files/{file_id}").status_code == 404
    gone = requests.get(link, timeout=30)
    assert gone.status_code == 404 and error_of(gone)["type"] == "not_found"
