"""Hostile documents cannot make the service read local files, fetch URLs or run macros.

Each attack document (tests/support/attacks.py) is uploaded to the real served app
and converted to every target GET /v1/formats offers for it; every artifact is
downloaded and searched for the content of /etc/passwd, for the pixels of a local
image the document links to and for the canary's answer. A canary HTTP server
counts every connection, and the macro must not leave its marker file.

The CONTROL tests send the same documents through a bare unoserver (LibreOffice's
defaults, no profile of ours) and assert that there the attacks do work: they show
that the clean results on our side come from the hardening, not from inert documents.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import time
import xmlrpc.client
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from pypdf import PdfReader
from pypdf.generic import StreamObject

from converter.engine.ports import PortReservation
from tests.support.attacks import (
    CANARY_BODY,
    CANARY_COLOURS,
    SECRET_COLOURS,
    Attack,
    Canary,
    build_attacks,
    checker_png,
)
from tests.support.served import ServedApp

UNOSERVER = Path(__import__("sys").executable).with_name("unoserver")
NAMES = [a.name for a in build_attacks("http://127.0.0.1:1", Path("/x.png"), Path("/x"))]
# Lines of the real /etc/passwd long enough not to occur by chance in a document.
PASSWD_LINES = [line for line in Path("/etc/passwd").read_text().splitlines() if len(line) >= 20]
LOCAL_IMAGE = "pixels of the linked local image"
CANARY_IMAGE = "pixels of the image the canary serves"


@dataclass
class Hostile:
    """The attack documents of one canary, and what a leak of each would look like."""

    folder: Path
    secret_png: Path
    marker: Path
    attacks: dict[str, Attack]

    def write(self, attack: Attack) -> Path:
        """The attack document as a file, for uploading."""
        path = self.folder / attack.filename
        path.write_bytes(attack.data)
        return path


def _hostile(folder: Path, canary: Canary) -> Hostile:
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "secret-local-image.png"
    secret.write_bytes(checker_png(SECRET_COLOURS))
    marker = folder / "macro-ran.marker"
    attacks = {a.name: a for a in build_attacks(canary.url, secret, marker)}
    assert not marker.exists() and "root:x:0:0:" in Path("/etc/passwd").read_text()
    return Hostile(folder, secret, marker, attacks)


# ------------------------------------------------------------------ leak detection


def _colour_pixels(image: Image.Image, colours: tuple[tuple[int, int, int], ...]) -> int:
    """Pixels within JPEG-noise distance of any of colours."""
    counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(n for n, (r, g, b) in counts
               if any(abs(r - cr) + abs(g - cg) + abs(b - cb) <= 60 for cr, cg, cb in colours))


def _pdf_parts(data: bytes) -> tuple[list[str], list[Image.Image]]:
    reader = PdfReader(io.BytesIO(data))
    texts = [" ".join(page.extract_text() or "" for page in reader.pages)]
    for number in range(1, int(reader.trailer["/Size"])):
        try:
            obj = reader.get_object(number)
        except Exception:  # free or broken xref entries hold nothing to leak
            continue
        if isinstance(obj, StreamObject):
            texts.append(obj.get_data().decode("latin-1"))
    images = [img.image for page in reader.pages for img in page.images if img.image]
    return texts, images


def _zip_parts(data: bytes) -> tuple[list[str], list[Image.Image]]:
    texts, images = [], []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            member = zf.read(name)
            texts.append(member.decode("utf-8", "replace"))
            try:
                images.append(Image.open(io.BytesIO(member)))
            except Exception:  # not an image
                pass
    return texts, images


def _html_parts(data: bytes) -> tuple[list[str], list[Image.Image]]:
    text = data.decode("utf-8", "replace")
    blobs = [base64.b64decode(blob) for blob in
             re.findall(r"data:image/[\w.+-]+;base64,([A-Za-z0-9+/=\s]+)", text)]
    images = []
    for blob in blobs:
        try:
            images.append(Image.open(io.BytesIO(blob)))
        except Exception:
            # LibreOffice writes a bare PNG signature for a picture it could not load.
            assert len(blob) <= 64, f"embedded image that cannot be inspected: {blob[:40]!r}"
    return [text], images


def leaks(target: str, data: bytes) -> list[str]:
    """What of /etc/passwd, the local image or the canary's answer the artifact carries."""
    if target == "pdf":
        texts, images = _pdf_parts(data)
    elif target == "png":
        texts, images = [], [Image.open(io.BytesIO(data))]
    elif data.startswith(b"PK\x03\x04"):
        texts, images = _zip_parts(data)
    else:
        texts, images = _html_parts(data)
    texts.append(data.decode("latin-1"))
    found = []
    for text in texts:
        found += [f"/etc/passwd line {line!r}" for line in PASSWD_LINES if line in text]
        found += ["/etc/passwd root entry"] if "root:x:0:0" in text else []
        found += ["canary response body"] if CANARY_BODY in text else []
    for image in images:
        if _colour_pixels(image, SECRET_COLOURS) >= 200:
            found.append(f"{LOCAL_IMAGE} in a {image.width}x{image.height} image")
        if _colour_pixels(image, CANARY_COLOURS) >= 200:
            found.append(f"{CANARY_IMAGE} in a {image.width}x{image.height} image")
    return sorted(set(found))


# ------------------------------------------------------------------ our service


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    """The canary our service must never reach."""
    server = Canary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile(canary: Canary, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """Attack documents aimed at our canary."""
    return _hostile(tmp_path_factory.mktemp("hostile"), canary)


@pytest.fixture(scope="module")
def formats(service: ServedApp) -> dict[str, Any]:
    """The conversion matrix as the service publishes it."""
    response = service.request("GET", "/v1/formats")
    assert response.status_code == 200, response.text
    sources: dict[str, Any] = response.json()["sources"]
    return sources


@pytest.mark.engine
@pytest.mark.parametrize("name", NAMES)
def test_hostile_document_converts_without_leaking(
    service: ServedApp, canary: Canary, hostile: Hostile, formats: dict[str, Any], name: str,
) -> None:
    """Every target converts, nothing is fetched or read, no macro runs."""
    attack = hostile.attacks[name]
    before = canary.seen()
    upload = service.upload(hostile.write(attack))
    assert upload.status_code == 201, upload.text
    assert upload.json()["format"] == attack.source
    targets = list(formats[attack.source]["targets"])
    assert targets
    found: dict[str, list[str]] = {}
    for target in targets:
        response = service.convert(upload.json()["id"], target)
        assert response.status_code == 200, (target, response.text)
        body = response.json()
        download = requests.get(body["download_url"], timeout=60)
        assert download.status_code == 200 and len(download.content) == body["size_bytes"]
        if leaked := leaks(target, download.content):
            found[target] = leaked
    # A fetch LibreOffice starts in the background would land just after the export.
    time.sleep(0.5)
    connections, requests_seen = canary.seen()
    assert (connections, requests_seen) == before, (
        f"the canary was reached: {requests_seen[len(before[1]):]}")
    assert not found, found
    assert not hostile.marker.exists(), "the document's macro ran"


# Results the documents were saved with: (kept as saved, may be replaced by an error).
# Calc always recomputes WEBSERVICE and DDE on load, whatever the recalculation
# setting; with links blocked the recomputation yields an error, never fetched data.
CACHED: dict[str, tuple[list[str], list[str]]] = {
    "docx-include-fields": (["cached-pic", "cached-local-pic", "cached-include",
                             "cached-include-http"], []),
    "docx-dde": (["cached-dde", "cached-dde-manual"], []),
    "odt-links": (["cached-section", "cached-section-http"], ["cached-dde"]),
    "rtf-includepicture": (["cached-pic", "cached-local-pic", "cached-include"], []),
    "xlsx-webservice": ([], ["cached-ws-http", "cached-ws-path", "cached-ws-file"]),
    "xlsx-external-link": (["cached-external"], []),
    "ods-webservice": ([], ["cached-ws-http", "cached-ws-path", "cached-ws-file"]),
    "ods-dde-links": ([], ["cached-dde", "cached-ws-http"]),
}
LABELS = {"Hostile", "document", "RTF", "Sheet1", "Page", "1"}
CALC_ERRORS = {"Err:540", "#VALUE!", "#N/A", "#NAME?"}


@pytest.mark.engine
@pytest.mark.parametrize("name", list(CACHED))
def test_links_and_formulas_are_not_refreshed(service: ServedApp, hostile: Hostile,
                                              name: str) -> None:
    """The PDF shows only the saved results (or Calc's error for a blocked link)."""
    upload = service.upload_ok(hostile.write(hostile.attacks[name]))
    response = service.convert(upload["id"], "pdf")
    assert response.status_code == 200, response.text
    pdf = requests.get(response.json()["download_url"], timeout=60).content
    words = set(" ".join(page.extract_text() or ""
                         for page in PdfReader(io.BytesIO(pdf)).pages).split())
    kept, replaceable = CACHED[name]
    assert set(kept) <= words, words
    unexpected = words - LABELS - set(kept) - set(replaceable) - CALC_ERRORS
    assert not unexpected, unexpected


# Reads configuration values from a running LibreOffice (argv: UNO port, JSON list of
# [node path, property]); run by Debian's python3, which has the uno module.
CONFIG_READER = """
import json, sys, uno
from com.sun.star.beans import PropertyValue
local = uno.getComponentContext()
resolver = local.ServiceManager.createInstanceWithContext(
    "com.sun.star.bridge.UnoUrlResolver", local)
ctx = resolver.resolve(
    f"uno:socket,host=127.0.0.1,port={sys.argv[1]};urp;StarOffice.ComponentContext")
provider = ctx.ServiceManager.createInstanceWithContext(
    "com.sun.star.configuration.ConfigurationProvider", ctx)
values = []
for path, name in json.loads(sys.argv[2]):
    try:
        node = provider.createInstanceWithArguments(
            "com.sun.star.configuration.ConfigurationAccess",
            (PropertyValue(Name="nodepath", Value=path),))
        values.append(node.getByName(name))
    except Exception as exc:
        values.append(f"unreadable: {exc}")
print(json.dumps(values))
"""


@pytest.mark.engine
def test_running_engines_use_the_hardened_profile(service: ServedApp) -> None:
    """Each live LibreOffice reads every setting of profile.HARDENING and has PROXY_ENV.

    A misspelt path or property in registrymodifications.xcu is silently ignored by
    LibreOffice, so the settings are read back from the engines the service runs.
    """
    from converter.engine.profile import HARDENING, PROXY_ENV

    expected = [int(v) if kind == "int" else v == "true" if kind == "boolean" else v
                for _path, _name, kind, v in HARDENING]
    pids = service.soffice_pids()
    assert pids
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if item)
        assert {k: environ.get(k) for k in PROXY_ENV} == PROXY_ENV
        port = re.search(r"--accept=socket,host=127\.0\.0\.1,port=(\d+)", cmdline)
        assert port, cmdline
        done = subprocess.run(
            ["/usr/bin/python3", "-c", CONFIG_READER, port.group(1),
             json.dumps([[path, name] for path, name, _kind, _v in HARDENING])],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        read = json.loads(done.stdout)
        wrong = {f"{path}:{name}": got for (path, name, _k, _v), got, want
                 in zip(HARDENING, read, expected, strict=True) if got != want}
        assert not wrong, wrong


# ------------------------------------------------------------------ the control


@pytest.fixture(scope="module")
def control_canary() -> Iterator[Canary]:
    """The canary the bare unoserver is expected to reach."""
    server = Canary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def bare_unoserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """CONTROL: unoserver with LibreOffice's defaults (fresh profile, no proxy).

    Yields (unoserver's XML-RPC port, its LibreOffice's UNO port)."""
    folder = tmp_path_factory.mktemp("bare-unoserver")
    # Held while unoserver runs: both of its listeners bind with SO_REUSEADDR.
    reserved = [PortReservation(), PortReservation()]
    port, uno_port = (r.port for r in reserved)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with open(folder / "unoserver.log", "wb") as log:
        proc = subprocess.Popen(
            [str(UNOSERVER), "--port", str(port), "--uno-port", str(uno_port),
             "--user-installation", str(folder / "profile")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (folder / "unoserver.log").read_text()
            try:
                xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}").info()
                break
            except OSError:
                assert time.monotonic() < deadline, "bare unoserver did not start"
                time.sleep(0.3)
        yield port, uno_port
    finally:
        os.killpg(proc.pid, 9)  # unoserver and the soffice it started share the group
        proc.wait(timeout=30)


# What LibreOffice's defaults let through, measured on 7.4.7: (canary path, local image).
CONTROL_REPRODUCES = {
    "docx-external-images": ("/docx-blip.png", True),
    "odt-xlink-images": ("/odt-xlink.png", True),
    "fodt-xlink": ("/fodt-xlink.png", True),
    "rtf-includepicture": (None, True),
}


@pytest.mark.engine
@pytest.mark.parametrize("name", list(CONTROL_REPRODUCES))
def test_control_bare_unoserver_is_vulnerable(
    bare_unoserver: tuple[int, int], control_canary: Canary, tmp_path: Path, name: str,
) -> None:
    """CONTROL: without our hardening the same document fetches and embeds what it links."""
    from unoserver.client import UnoClient

    hostile = _hostile(tmp_path, control_canary)
    before = control_canary.seen()
    pdf = UnoClient(port=str(bare_unoserver[0])).convert(
        indata=hostile.attacks[name].data, convert_to="pdf")
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF-")
    path, embeds_local = CONTROL_REPRODUCES[name]
    _connections, seen = control_canary.seen()
    fetched = [p for _method, p in seen[len(before[1]):]]
    found = leaks("pdf", pdf)
    if path is not None:
        assert path in fetched, fetched
        assert f"{CANARY_IMAGE} in a 96x96 image" in found, found
    if embeds_local:
        assert f"{LOCAL_IMAGE} in a 96x96 image" in found, found


# Opens a document the way an interactive user who allows macros does: visible (not
# Hidden) and with MacroExecutionMode ALWAYS_EXECUTE_NO_WARN (4). Run by Debian's
# python3, which has LibreOffice's uno module. The connection is retried (LibreOffice
# may still be busy with another test's document when the UNO port is first tried),
# and the interpreter leaves with os._exit: python3-uno can segfault (-11) tearing down
# a live remote bridge at exit, after the work is done, which made this test flaky.
MACRO_RUNNER = """
import os, sys, time, uno
from com.sun.star.beans import PropertyValue
from com.sun.star.connection import NoConnectException
local = uno.getComponentContext()
resolver = local.ServiceManager.createInstanceWithContext(
    "com.sun.star.bridge.UnoUrlResolver", local)
deadline = time.monotonic() + 60
while True:
    try:
        ctx = resolver.resolve(
            f"uno:socket,host=127.0.0.1,port={sys.argv[1]};urp;StarOffice.ComponentContext")
        break
    except NoConnectException:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(sys.argv[2]), "_blank", 0,
                                   (PropertyValue(Name="MacroExecutionMode", Value=4),))
doc.close(True)
print("closed", flush=True)
os._exit(0)
"""


@pytest.mark.engine
def test_control_macro_document_runs_its_macro_when_allowed(
    bare_unoserver: tuple[int, int], control_canary: Canary, tmp_path: Path,
) -> None:
    """CONTROL: the macro document is live: a loader that allows macros writes the marker."""
    hostile = _hostile(tmp_path, control_canary)
    path = hostile.write(hostile.attacks["odt-macro"])
    done = subprocess.run(["/usr/bin/python3", "-c", MACRO_RUNNER, str(bare_unoserver[1]),
                           str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "closed" in done.stdout, (done.returncode, done.stderr)
    assert hostile.marker.read_text().strip() == "macro ran"
