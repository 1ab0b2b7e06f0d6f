"""Arabic, Hebrew, Devanagari and Thai text converts to PDF in a Noto font for its script.

Without fonts-noto-core, Devanagari and Thai have no font at all (boxes); without the
engine's fonts.conf, Arabic and Hebrew fall back to DejaVu Sans. The check reads the fonts
the PDF embeds (pdffonts). The paragraphs carry their language, as a word processor records
for text typed in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.flat_odf import flat_odf
from tests.support.served import ServedApp

# (script, language, country, a sentence in it, the font-name word pdffonts must show)
SCRIPTS = [
    ("arabic", "ar", "SA", "مرحبا بالعالم، هذا مستند للاختبار", "Arabic"),
    ("hebrew", "he", "IL", "שלום עולם, זהו מסמך לבדיקה", "Hebrew"),
    ("devanagari", "hi", "IN", "नमस्ते दुनिया, यह एक परीक्षण दस्तावेज़ है", "Devanagari"),
    ("thai", "th", "TH", "สวัสดีชาวโลก นี่คือเอกสารทดสอบ", "Thai"),
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install Debian's poppler-utils / fontconfig "
                    "(./run installs them)")
    return path


@pytest.fixture(scope="module", autouse=True)
def _noto_fonts_installed() -> None:
    """Fail loudly, not skip, when the fonts under test are not installed."""
    fc_list = _tool("fc-list")
    missing = []
    for script, lang, _country, _text, word in SCRIPTS:
        families = subprocess.run([fc_list, f":lang={lang}", "family"], capture_output=True,
                                  text=True, check=True, timeout=30).stdout
        if not re.search(rf"Noto \w* ?{word}", families):
            missing.append(script)
    if missing:
        pytest.fail(f"no Noto font for {', '.join(missing)}: install Debian's fonts-noto-core "
                    "(./run test installs APT_PACKAGES)")


def pdf_fonts(pdf: Path) -> list[str]:
    """Font names pdffonts lists for a PDF (subset prefixes removed)."""
    out = subprocess.run([_tool("pdffonts"), str(pdf)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    rows = out.splitlines()[2:]  # a header line and a ---- rule
    return [re.sub(r"^[A-Z]{6}\+", "", row.split()[0]) for row in rows if row.strip()]


@pytest.mark.engine
@pytest.mark.parametrize(("script", "lang", "country", "text", "word"), SCRIPTS,
                         ids=[s[0] for s in SCRIPTS])
def test_script_is_set_in_a_noto_font(service: ServedApp, tmp_path: Path, script: str,
                                      lang: str, country: str, text: str, word: str) -> None:
    """A paragraph in this script and language embeds a Noto font for the script."""
    source = tmp_path / f"{script}.fodt"
    source.write_bytes(flat_odf("fodt", text, complex_language=(lang, country)))
    file_id = service.upload_ok(source)["id"]
    response = service.convert(file_id, "pdf")
    assert response.status_code == 200, response.text
    pdf = tmp_path / f"{script}.pdf"
    pdf.write_bytes(requests.get(response.json()["download_url"], timeout=60).content)
    fonts = pdf_fonts(pdf)
    assert any(re.fullmatch(rf"Noto\w*{word}\w*(-\w+)?", f) for f in fonts), fonts
    # Its glyphs came from the Noto font, not from a fallback that also covers the script.
    assert not [f for f in fonts if f.startswith("DejaVu")], fonts
