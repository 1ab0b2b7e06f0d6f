"""CSV of one sheet or of every sheet: the xlsx fast path, or LibreOffice.

``sheet`` is a 1-based number, a sheet name or ``all``; ``all`` gives a ZIP with
one CSV per sheet named ``01-<sheet name>.csv``. xlsx workbooks are read
directly (openpyxl, cached values) unless a formula has no cached value, which
only LibreOffice can compute; every other workbook goes through LibreOffice.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from converter.errors import InvalidRequest, UnprocessableDocument
from converter.matrix import ExportPlan
from converter.service import xlsx_csv
from converter.service.production import UNKNOWN_DEMAND, Demand, Made, Producer

logger = logging.getLogger("converter.csv")
ZIP = "application/zip"
BOM = b"\xef\xbb\xbf"
_SEPARATORS = {",": ",", ";": ";", "tab": "\t", "|": "|"}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
# LibreOffice's "save cell contents as shown" token. False writes the cell values
# themselves, which is what the fast path reads, so both paths agree cell by cell.
AS_SHOWN = "false"


@dataclass(frozen=True)
class Selection:
    """The sheets a request selects: (0-based index, name) in workbook order."""

    sheets: list[tuple[int, str]]
    everything: bool


def safe_sheet_file(position: int, name: str) -> str:
    """``01-<name>.csv`` with the name made safe for any file system."""
    cleaned = _UNSAFE.sub("_", name).strip(" .") or "sheet"
    return f"{position:02d}-{cleaned[:100]}.csv"


def select(spec: int | str, names: list[str]) -> Selection:
    """Resolve a ``sheet`` option against the workbook's sheet names; 400 when unknown."""
    if spec == "all":
        return Selection(list(enumerate(names)), True)
    if isinstance(spec, int):
        if 1 <= spec <= len(names):
            return Selection([(spec - 1, names[spec - 1])], False)
    elif spec in names:
        return Selection([(names.index(spec), spec)], False)
    raise InvalidRequest(
        f"options.sheet: the workbook has no sheet {spec!r}; its sheets are "
        f"{', '.join(repr(n) for n in names)} (or a number from 1 to {len(names)}, or all)",
        field="options.sheet", valid_values=[*names, "all"])


def media_type(encoding: str) -> str:
    """Content-Type of one CSV in the given encoding."""
    charset = "windows-1252" if encoding == "windows-1252" else "utf-8"
    return f"text/csv; charset={charset}"


class CsvExporter:
    """Writes the CSV (or ZIP of CSVs) a plan asks for."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    def export(self, source: Path, plan: ExportPlan, scratch: Path, deadline: float,
               encrypted: bool, names: list[str] | None,
               learn: Callable[[list[str]], None], demand: Demand = UNKNOWN_DEMAND) -> Made:
        """Make the CSV output of plan from source (a local copy of the workbook)."""
        settings = plan.settings
        fast = plan.source == "xlsx" and settings["csv_engine"] == "auto" and not encrypted
        if names is None and plan.source == "xlsx" and not encrypted:
            names = self._xlsx_names(source)
            if names is not None:
                learn(names)
        if names is None and isinstance(settings["sheet"], int):
            # The names could not be read; a sheet number still means something to LibreOffice.
            names = [f"Sheet{n}" for n in range(1, settings["sheet"] + 1)]
        if names is None:
            raise UnprocessableDocument(
                "The sheet names of this workbook could not be read; ask for a sheet by "
                "number (options.sheet=1, 2...)")
        chosen = select(settings["sheet"], names)
        separator = _SEPARATORS[str(settings["delimiter"])]
        encoding = str(settings["encoding"])
        outputs: list[Path] | None = None
        produced_by = "libreoffice"
        if fast:
            try:
                outputs = self._fast(source, chosen, scratch, separator, encoding)
                produced_by = "openpyxl"
            except xlsx_csv.NeedsLibreOffice:
                outputs = None
            except Exception:  # openpyxl meets workbooks it cannot read; LibreOffice may
                logger.warning("xlsx fast path failed; converting with LibreOffice",
                               exc_info=True)
                outputs = None
        if outputs is None:
            outputs = self._libreoffice(source, plan, chosen, scratch, deadline, encrypted,
                                        encoding, demand)
        if not chosen.everything:
            return Made(outputs[0], media_type(encoding), produced_by)
        archive = scratch / "sheets.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for position, ((_index, name), path) in enumerate(zip(chosen.sheets, outputs,
                                                                   strict=True), start=1):
                zf.write(path, safe_sheet_file(position, name))
        return Made(archive, ZIP, produced_by)

    @staticmethod
    def _xlsx_names(source: Path) -> list[str] | None:
        try:
            return list(xlsx_csv.sheet_names(source))
        except xlsx_csv.NeedsLibreOffice:
            return None  # openpyxl cannot load it; sheet numbers still work

    @staticmethod
    def _fast(source: Path, chosen: Selection, scratch: Path, separator: str,
              encoding: str) -> list[Path]:
        outputs = []
        for index, _name in chosen.sheets:
            path = scratch / f"fast-{index}.csv"
            with path.open("wb") as out:
                xlsx_csv.write_csv(source, index, out, separator, encoding)
            outputs.append(path)
        return outputs

    def _libreoffice(self, source: Path, plan: ExportPlan, chosen: Selection, scratch: Path,
                     deadline: float, encrypted: bool, encoding: str,
                     demand: Demand) -> list[Path]:
        template = plan.filter_options.replace("{as_shown}", AS_SHOWN)
        if not chosen.everything:
            index = chosen.sheets[0][0]
            path = self.producer.export(source, plan, scratch, deadline, encrypted,
                                        template.replace("{sheet}", str(index + 1)),
                                        demand=demand)
            return [_with_bom(path) if encoding == "utf-8-sig" else path]
        # -1 asks LibreOffice for every sheet in one load: <stem>-<sheet name>.csv each.
        target = self.producer.export(source, plan, scratch, deadline, encrypted,
                                      template.replace("{sheet}", "-1"), many_outputs=True,
                                      demand=demand)
        outputs = []
        for _index, name in chosen.sheets:
            path = target.with_name(f"{target.stem}-{name}{target.suffix}")
            if not path.exists() and len(chosen.sheets) == 1 and target.exists():
                path = target  # one sheet: the bridge moved it to the requested name
            if not path.exists():
                raise UnprocessableDocument(f"LibreOffice wrote no CSV for sheet {name!r}")
            outputs.append(_with_bom(path) if encoding == "utf-8-sig" else path)
        return outputs


def _with_bom(path: Path) -> Path:
    """LibreOffice writes UTF-8 without a byte-order mark; utf-8-sig asks for one."""
    marked = path.with_name(path.stem + "-bom" + path.suffix)
    with path.open("rb") as src, marked.open("wb") as out:
        head = src.read(3)
        out.write(BOM if head != BOM else b"")
        out.write(head)
        while chunk := src.read(1 << 20):
            out.write(chunk)
    path.unlink()
    return marked
