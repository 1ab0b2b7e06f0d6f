"""Documents the option tests write themselves: each carries the feature an option acts on."""

from __future__ import annotations

import base64
import io
import random

from PIL import Image

from tests.support.flat_odf import flat_odf

_NAMESPACES = {
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "fo": "urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
}


def _with_namespaces(document: bytes, head: str = "") -> bytes:
    """Add the namespaces flat_odf does not declare (and optional head elements)."""
    text = document.decode()
    root = text[text.index("<office:document "):text.index(">", text.index("<office:document "))]
    missing = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in _NAMESPACES.items()
                       if f"xmlns:{prefix}=" not in root)
    text = text.replace("<office:document ", f"<office:document {missing} ", 1)
    if head:
        text = text.replace("<office:body>", head + "<office:body>", 1)
    return text.encode()


def indexed_document() -> bytes:
    """A text with an empty table of contents, a heading and a cached bibliography.

    The bibliography's entry exists only as stored index text: no bibliography mark
    in the document backs it, as with a Word bibliography whose sources LibreOffice
    cannot read, so regenerating it empties it.
    """
    extra = (
        '<text:table-of-content text:name="TOC1"><text:table-of-content-source '
        'text:outline-level="3"><text:index-title-template>Contents</text:index-title-template>'
        "</text:table-of-content-source><text:index-body/></text:table-of-content>"
        '<text:h text:outline-level="1">Chapter Alpha</text:h><text:p>Body text.</text:p>'
        '<text:bibliography text:name="Bibliography1"><text:bibliography-source>'
        "<text:index-title-template>Works cited</text:index-title-template>"
        "</text:bibliography-source><text:index-body><text:p>Knuth, The Art of Computer "
        "Programming, cached entry</text:p></text:index-body></text:bibliography>")
    return flat_odf("fodt", "Indexed document", extra)


def headed_document() -> bytes:
    """Three headings with text under each (bookmarks), and a comment (notes)."""
    parts = []
    for n in range(1, 4):
        parts.append(f'<text:h text:outline-level="1">Heading number {n}</text:h>'
                     f"<text:p>Paragraph under heading {n}.</text:p>")
    parts.append('<text:p>Commented text<office:annotation><dc:creator>Reviewer</dc:creator>'
                 "<text:p>A reviewer note</text:p></office:annotation> here.</text:p>")
    return _with_namespaces(flat_odf("fodt", "Headed document", "".join(parts)))


def noise_png(size: int, seed: int = 7) -> bytes:
    """A PNG of random pixels: incompressible, so image settings show in the PDF's size."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_document(size: int = 1200) -> bytes:
    """A text holding one large photo-like image shown 6 cm wide (about 500 dpi)."""
    data = base64.b64encode(noise_png(size)).decode()
    frame = ('<text:p><draw:frame draw:name="img1" text:anchor-type="paragraph" '
             'svg:width="6cm" svg:height="6cm"><draw:image><office:binary-data>'
             f"{data}</office:binary-data></draw:image></draw:frame></text:p>")
    return flat_odf("fodt", "Image document", frame)


def blank_page_document() -> bytes:
    """Two pages of text where the second starts on page number 3: LibreOffice inserts
    an empty page 2 so that an odd page stays a right-hand page."""
    styles = ('<office:automatic-styles><style:style style:name="P3" style:family="paragraph" '
              'style:master-page-name="Standard"><style:paragraph-properties '
              'style:page-number="3"/></style:style></office:automatic-styles>')
    body = '<text:p text:style-name="P3">Text on page three</text:p>'
    return _with_namespaces(flat_odf("fodt", "Text on page one", body), styles)


def deck(slides: int) -> bytes:
    """A flat ODF presentation with the given number of slides, each titled by number."""
    first, *rest = [f"Slide number {n}" for n in range(1, slides + 1)]
    pages = "".join(
        f'<draw:page draw:name="s{n}"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" '
        f'svg:height="4cm"><draw:text-box><text:p>{title}</text:p></draw:text-box>'
        "</draw:frame></draw:page>" for n, title in enumerate(rest, start=2))
    return flat_odf("fodp", first, "").replace(
        b"</office:presentation>", pages.encode() + b"</office:presentation>", 1)
