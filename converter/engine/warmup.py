"""What an engine instance converts before it is ready: a tiny real document per format.

Storing a factory-new document (``private:factory/swriter``) loads LibreOffice's modules
but none of its import filters, so the first real docx or xlsx still paid for them. The
bridge therefore writes one small document of each format below (with LibreOffice itself,
once per instance folder), then converts each exactly as a request does: the hardened
load naming the same import filter the conversion matrix names, the index update, and
the exports the service asks for most. This module holds only the recipe and the code
that fills the documents; it does not import uno (the bridge passes in what it needs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Bumped when the samples change, so an instance folder's older files are not reused.
VERSION = 3

# The PDF export's default FilterData as the service sends it, and the CSV export's
# filter options for the default sheet (1), delimiter and encoding (conversion_matrix.yaml
# and service/csv_export.py).
PDF_OPTIONS = ("PDFUACompliance=false", "ExportBookmarks=true", "ExportNotes=false",
               "ExportFormFields=true", "UseLosslessCompression=false", "Quality=90")
CSV_OPTIONS = ("44,34,76,1,,0,false,true,false,false,false,1",)
# Fonts office documents name most; each is substituted (Carlito, Liberation) on first use.
FONTS = ("Calibri", "Arial", "Times New Roman")
# Default Asian and complex-script fonts of Word and older LibreOffice templates, with a word
# of each script: their first use loads Noto CJK and Noto Devanagari.
SCRIPT_FONTS = (("CharFontNameAsian", "SimSun", "中文"),
                ("CharFontNameAsian", "Microsoft YaHei", "文字"),
                ("CharFontNameComplex", "Mangal", "हिन्दी"))


@dataclass(frozen=True)
class Export:
    """One export of a warm-up sample."""

    extension: str
    filter: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    """One warm-up document: its family, its format and the filter that reads and writes it."""

    family: str  # writer, calc or impress (LibreOffice's factory name is derived)
    extension: str
    filter: str  # the import filter requests name; it is also the filter that writes it
    exports: tuple[Export, ...]

    @property
    def factory(self) -> str:
        """The private:factory URL of an empty document of this family."""
        return {"writer": "private:factory/swriter", "calc": "private:factory/scalc",
                "impress": "private:factory/simpress"}[self.family]

    @property
    def filename(self) -> str:
        """The sample's file name in the instance's warm-up folder."""
        return f"sample-v{VERSION}.{self.extension}"


def _pdf(family: str) -> Export:
    return Export("pdf", f"{family}_pdf_Export", PDF_OPTIONS)


CSV = Export("csv", "Text - txt - csv (StarCalc)", CSV_OPTIONS)

SAMPLES = (
    Sample("writer", "docx", "MS Word 2007 XML", (_pdf("writer"),)),
    Sample("writer", "odt", "writer8", (_pdf("writer"),)),
    Sample("calc", "xlsx", "Calc MS Excel 2007 XML", (_pdf("calc"), CSV)),
    Sample("calc", "ods", "calc8", (_pdf("calc"), CSV)),
    Sample("impress", "pptx", "Impress MS PowerPoint 2007 XML", (_pdf("impress"),)),
    Sample("impress", "odp", "impress8", (_pdf("impress"),)),
)

# Makes a UNO struct: (type name, *field values), i.e. uno.createUnoStruct.
Struct = Callable[..., Any]


def fill(family: str, document: Any, struct: Struct) -> None:
    """Put a little real content in a factory-new document: text in common fonts, a
    table, numbers and a formula, a text shape on a slide."""
    if family == "writer":
        _fill_writer(document)
    elif family == "calc":
        _fill_calc(document)
    else:
        _fill_impress(document, struct)


def _fill_writer(document: Any) -> None:
    text = document.getText()
    cursor = text.createTextCursor()
    for font in FONTS:
        cursor.setPropertyValue("CharFontName", font)
        text.insertString(cursor, f"Warm-up paragraph in {font}.", False)
        text.insertControlCharacter(cursor, 0, False)  # PARAGRAPH_BREAK
    for prop, font, word in SCRIPT_FONTS:
        cursor.setPropertyValue(prop, font)
        text.insertString(cursor, f"{word} ", False)
    text.insertControlCharacter(cursor, 0, False)
    table = document.createInstance("com.sun.star.text.TextTable")
    table.initialize(2, 2)
    text.insertTextContent(cursor, table, False)
    for name, value in (("A1", "cell"), ("B1", "1"), ("A2", "cell"), ("B2", "2")):
        table.getCellByName(name).setString(value)


def _fill_calc(document: Any) -> None:
    sheet = document.getSheets().getByIndex(0)
    for row, font in enumerate(FONTS):
        label = sheet.getCellByPosition(0, row)
        label.setString(f"warm-up {font}")
        label.setPropertyValue("CharFontName", font)
        sheet.getCellByPosition(1, row).setValue(row + 1.5)
    sheet.getCellByPosition(1, len(FONTS)).setFormula(f"=SUM(B1:B{len(FONTS)})")


def _fill_impress(document: Any, struct: Struct) -> None:
    # Title and content placeholders (as most decks' layouts have), a bulleted outline,
    # then a free text shape: what a real pptx makes the import and layout go through.
    page = document.getDrawPages().getByIndex(0)
    page.Layout = 1  # AUTOLAYOUT_TITLE_CONTENT
    for index in range(page.getCount()):
        placeholder = page.getByIndex(index)
        placeholder.setString("Warm-up title" if index == 0 else
                              "First bullet\nSecond bullet\nThird bullet")
    shape = document.createInstance("com.sun.star.drawing.TextShape")
    page.add(shape)
    shape.setSize(struct("com.sun.star.awt.Size", 12000, 3000))
    shape.setPosition(struct("com.sun.star.awt.Point", 2000, 15000))
    shape.setString("Warm-up text")
    shape.setPropertyValue("CharFontName", FONTS[0])
