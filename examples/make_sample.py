"""Writes examples/sample.docx: a small two-page Word document for the README walk-through.

The document is written from scratch (no corpus file is copied), byte for byte the same on
every run: `python3 examples/make_sample.py [OUT]` (OUT defaults to examples/sample.docx).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).with_name("sample.docx")
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006"

WML = "application/vnd.openxmlformats-officedocument.wordprocessingml"
CONTENT_TYPES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="{PKG}/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="{WML}.document.main+xml"/>
<Override PartName="/word/styles.xml" ContentType="{WML}.styles+xml"/>
</Types>"""

ROOT_RELS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="{PKG}/relationships">
<Relationship Id="rId1" Type="{R}/officeDocument" Target="word/document.xml"/>
</Relationships>"""

DOCUMENT_RELS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="{PKG}/relationships">
<Relationship Id="rId1" Type="{R}/styles" Target="styles.xml"/>
</Relationships>"""

STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="{W}">
<w:docDefaults><w:rPrDefault><w:rPr>
<w:rFonts w:ascii="Liberation Sans" w:hAnsi="Liberation Sans"/><w:sz w:val="22"/>
</w:rPr></w:rPrDefault><w:pPrDefault><w:pPr><w:spacing w:after="160"/></w:pPr></w:pPrDefault>
</w:docDefaults>
<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/></w:style>
<w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/><w:basedOn w:val="Normal"/>
<w:rPr><w:b/><w:color w:val="2656C9"/><w:sz w:val="44"/></w:rPr></w:style>
<w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/>
<w:basedOn w:val="Normal"/><w:pPr><w:spacing w:before="240"/></w:pPr>
<w:rPr><w:b/><w:sz w:val="30"/></w:rPr></w:style>
</w:styles>"""


def paragraph(text: str, style: str | None = None, page_break_before: bool = False) -> str:
    """One w:p with an optional paragraph style."""
    props = (f'<w:pStyle w:val="{style}"/>' if style else "") + (
        "<w:pageBreakBefore/>" if page_break_before else "")
    ppr = f"<w:pPr>{props}</w:pPr>" if props else ""
    return f'<w:p>{ppr}<w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'


def table(rows: list[tuple[str, str]]) -> str:
    """A bordered two-column table, first row bold."""
    border = "".join(f'<w:{side} w:val="single" w:sz="4" w:color="999999"/>'
                     for side in ("top", "left", "bottom", "right", "insideH", "insideV"))
    out = [f'<w:tbl><w:tblPr><w:tblW w:w="5000" w:type="pct"/><w:tblBorders>{border}'
'</w:tblBorders></w:tblPr><w:tblGrid><w:gridCol w:w="3000"/><w:gridCol w:w="6000"/>'
           "</w:tblGrid>"]
    for number, (left, right) in enumerate(rows):
        bold = "<w:rPr><w:b/></w:rPr>" if number == 0 else ""
        cells = "".join(f'<w:tc><w:p><w:r>{bold}<w:t xml:space="preserve">{escape(text)}'
                        "</w:t></w:r></w:p></w:tc>" for text in (left, right))
        out.append(f"<w:tr>{cells}</w:tr>")
    out.append("</w:tbl>")
    return "".join(out)


def document() -> str:
    """word/document.xml: a title, some text and a table on page 1; page 2 after a break."""
    body = "".join([
        paragraph("converter sample document", "Title"),
        paragraph("This short Word document lives in the repository so that the README "
                  "walk-through works from a plain clone. It was written by "
                  "examples/make_sample.py."),
        paragraph("What it contains", "Heading1"),
        table([("part", "purpose"), ("page 1", "a title, text and this table"),
               ("page 2", "a second page, to try page_range")]),
        paragraph("This is page two", "Heading1", page_break_before=True),
        paragraph("Convert only this page with the option page_range set to 2."),
    ])
    section = ('<w:sectPr><w:pgSz w:w="11906" w:h="16838"/><w:pgMar w:top="1440" '
               'w:right="1440" w:bottom="1440" w:left="1440" w:header="708" w:footer="708" '
               'w:gutter="0"/></w:sectPr>')
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<w:document xmlns:w="{W}" xmlns:r="{R}"><w:body>{body}{section}'
            "</w:body></w:document>")


def main(out: Path = OUT) -> None:
    """Write the sample with fixed timestamps, so a re-run changes nothing."""
    parts = {"[Content_Types].xml": CONTENT_TYPES, "_rels/.rels": ROOT_RELS,
             "word/_rels/document.xml.rels": DOCUMENT_RELS, "word/styles.xml": STYLES,
             "word/document.xml": document()}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in parts.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("utf-8"))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
