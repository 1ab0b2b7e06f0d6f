"""Encrypted sources: 400 password_required / password_incorrect, and the password never kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from msoffcrypto.format.ooxml import OOXMLFile

from tests.support.outputs import pdf_text
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine

PASSWORD = "Tr0ub4dor&3-zebra"


def encrypt_ooxml(source: Path, target: Path, password: str = PASSWORD) -> Path:
    """Encrypt an OOXML document the way Office does (agile encryption), at test time."""
    with source.open("rb") as plain, target.open("wb") as out:
        OOXMLFile(plain).encrypt(password, out)
    return target


# (corpus source, phrase of its text) for OOXML generated encrypted at test time, and
# corpus files that are encrypted already (ODF and the 97-2003 formats).
GENERATED = [("docx/SampleDoc.docx", "I am a test document"),
             ("xlsx/SampleSS.xlsx", "Test spreadsheet"),
             ("pptx/SampleShow.pptx", "Title of the first slide")]
ENCRYPTED = [("bad/encrypted-with-pwd_hello.odt", "hello"),
             ("bad/password.xls", "password"),
             ("bad/password_password_cryptoapi.doc", "password")]


def _cases(corpus: Path, tmp_path: Path) -> list[tuple[Path, str]]:
    cases = [(encrypt_ooxml(corpus / rel, tmp_path / f"locked-{Path(rel).name}"), PASSWORD)
             for rel, _phrase in GENERATED]
    return cases + [(corpus / rel, password) for rel, password in ENCRYPTED]


def test_encrypted_documents(service: ServedApp, corpus: Path, tmp_path: Path) -> None:
    """Upload says encrypted; no password → 400 password_required; wrong → password_incorrect;
    the right one converts, and a wrong one never reaches the artifact it made."""
    phrases = [phrase for _rel, phrase in GENERATED] + [None] * len(ENCRYPTED)
    for (path, password), phrase in zip(_cases(corpus, tmp_path), phrases, strict=True):
        uploaded = service.upload_ok(path)
        assert uploaded["encrypted"] is True, path.name
        file_id = uploaded["id"]
        missing = service.convert(file_id, "pdf")
        assert missing.status_code == 400, (path.name, missing.text)
        assert error_of(missing)["type"] == "password_required"
        wrong = service.convert(file_id, "pdf", password="not-" + password)
        assert wrong.status_code == 400, (path.name, wrong.text)
        assert error_of(wrong)["type"] == "password_incorrect"
        right = service.convert(file_id, "pdf", password=password)
        assert right.status_code == 200, (path.name, right.text)
        pdf = requests.get(right.json()["download_url"], timeout=60).content
        assert pdf.startswith(b"%PDF")
        if phrase:
            assert phrase in pdf_text(pdf)
        again = service.convert(file_id, "pdf", password=password)
        assert again.json()["cached"] is True
        assert service.convert(file_id, "pdf", password="x").status_code == 400


def test_one_shot_with_a_password(service: ServedApp, corpus: Path, tmp_path: Path) -> None:
    """POST /v1/convert opens an encrypted xlsx with options.password and answers CSV."""
    locked = encrypt_ooxml(corpus / "xlsx/SampleSS.xlsx", tmp_path / "locked.xlsx")
    with locked.open("rb") as fh:
        response = service.request("POST", "/v1/convert", files={"file": fh},
                                   data={"format": "csv", "options": json.dumps(
                                       {"password": PASSWORD})})
    assert response.status_code == 200, response.text
    assert "Test spreadsheet" in response.content.decode()
    with locked.open("rb") as fh:
        refused = service.request("POST", "/v1/convert", files={"file": fh},
                                  data={"format": "csv"})
    assert error_of(refused)["type"] == "password_required"


def test_runs_refuse_passwords(service: ServedApp, corpus: Path, tmp_path: Path) -> None:
    """A run is stored and a password never is: runs answer 400 naming options.password."""
    locked = encrypt_ooxml(corpus / "docx/SampleDoc.docx", tmp_path / "run.docx")
    file_id = service.upload_ok(locked)["id"]
    response = service.request("POST", "/v1/runs", json={
        "file_id": file_id, "format": "pdf", "options": {"password": PASSWORD}})
    assert response.status_code == 400
    assert error_of(response)["field"] == "options.password"


def test_password_is_never_stored_or_logged(serve: type[ServedApp], corpus: Path,
                                            tmp_path: Path) -> None:
    """A full lifecycle at DEBUG logging, then the password is searched for everywhere."""
    app = serve(env={"CONVERTER_LOG_LEVEL": "DEBUG"}, workers=1).start()
    secret = "UniqueSecret-" + "q7Zx91"
    locked = encrypt_ooxml(corpus / "docx/SampleDoc.docx", tmp_path / "secret.docx", secret)
    file_id = app.upload_ok(locked)["id"]
    for password in (secret, "wrong-" + secret):
        response = app.convert(file_id, "pdf", password=password)
        assert response.status_code in (200, 400), response.text
    converted = app.convert(file_id, "png", password=secret)
    assert converted.status_code == 200, converted.text
    requests.get(converted.json()["download_url"], timeout=60).raise_for_status()
    with locked.open("rb") as fh:
        assert app.request("POST", "/v1/convert", files={"file": fh}, data={
            "format": "pdf", "password": secret, "store": "true"}).status_code == 200
    app.stop()
    needle = secret.encode()
    searched = 0
    for path in app.data_dir.rglob("*"):
        if path.is_file():
            searched += 1
            data = path.read_bytes()
            assert needle not in data, f"the password is in {path}"
            assert needle.decode().encode("utf-16-le") not in data, f"the password is in {path}"
    assert searched > 3 and (app.data_dir / "converter.db").exists()
    assert secret not in app.log() and len(app.log()) > 0
