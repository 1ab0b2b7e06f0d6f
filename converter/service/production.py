"""Making one output file from a local source: LibreOffice export, CSV, or PNG pages.

The conversion service decides whether anything needs making (cache, single
flight); this module only makes it, inside a scratch directory it is given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter import cpu_gate, metrics
from converter.engine.pool import EngineJob
from converter.engine.scheduler import ANONYMOUS, Tenant
from converter.errors import PasswordIncorrect, UnprocessableDocument
from converter.matrix import ExportPlan
from converter.service import png_render


@dataclass(frozen=True)
class Made:
    """An output file in scratch space, its media type and the path that made it."""

    path: Path
    media_type: str
    produced_by: str
    # Page count of a PDF made with default options (for the file's metadata).
    pages: int | None = None


@dataclass(frozen=True)
class Demand:
    """Who a LibreOffice call is for, and what it is estimated to cost (seconds)."""

    tenant: Tenant = ANONYMOUS
    cost: float = 1.0


UNKNOWN_DEMAND = Demand()

# Rough LibreOffice seconds per MiB of source and per page, fitted to the corpus'
# FILES.tsv (a 570 KB 68-slide deck takes about 8 s, a 12 KB two-page docx 0.1 s).
# Only the order of magnitude matters: it weights fair sharing and marks heavy jobs.
_BASE_SECONDS = 0.1
_SECONDS_PER_MIB = 4.0
_SECONDS_PER_PAGE = 0.01


def estimate_cost(size_bytes: int, pages: int | None = None) -> float:
    """Estimated LibreOffice seconds for a source of this size (and page count, if known)."""
    return round(_BASE_SECONDS + size_bytes / 2**20 * _SECONDS_PER_MIB
                 + (pages or 0) * _SECONDS_PER_PAGE, 3)


class Producer:
    """Runs the engine (or a faster path) for one plan."""

    def __init__(self, engine: Any, max_png_pages: int) -> None:
        self.engine = engine
        self.max_png_pages = max_png_pages
        self._lock = threading.Lock()
        self.engine_calls = 0

    def export(self, source: Path, plan: ExportPlan, scratch: Path, deadline: float,
               encrypted: bool, filter_options: str | None = None,
               many_outputs: bool = False, demand: Demand = UNKNOWN_DEMAND) -> Path:
        """LibreOffice export of source to scratch/<name>.<target>; password errors mapped."""
        target = scratch / f"result.{plan.target}"
        job = EngineJob(import_filter=plan.import_filter, export_filter=plan.export_filter,
                        filter_options=filter_option_list(plan, filter_options),
                        password=plan.password if encrypted else None,
                        extras=dict(plan.engine_options), many_outputs=many_outputs,
                        source=plan.source, target=plan.target, tenant=demand.tenant,
                        cost=demand.cost)
        with self._lock:
            self.engine_calls += 1
        metrics.ENGINE_CALLS.inc()
        try:
            with cpu_gate.released():  # seconds of waiting on LibreOffice
                self.engine.convert(source, target, job, deadline)
        except UnprocessableDocument:
            if encrypted:
                # The detector found encryption; LibreOffice refusing to open it with the
                # password given means the password is wrong.
                raise PasswordIncorrect("options.password does not open this encrypted "
                                        "document", field="options.password") from None
            raise
        return target

    def document(self, source: Path, plan: ExportPlan, scratch: Path, deadline: float,
                 encrypted: bool, demand: Demand = UNKNOWN_DEMAND) -> Made:
        """A plain LibreOffice export (PDF, HTML, TXT, office formats)."""
        path = self.export(source, plan, scratch, deadline, encrypted, demand=demand)
        return Made(path, plan.media_type, "libreoffice")

    def png(self, pdf: Path, plan: ExportPlan, scratch: Path, timeout: float) -> Made:
        """PNG pages drawn from the family's PDF."""
        with cpu_gate.released():  # pdftoppm draws in a process of its own
            rendered = png_render.render(pdf, str(plan.settings["pages"]),
                                         int(plan.settings["dpi"]), scratch,
                                         self.max_png_pages, timeout)
        return Made(rendered.path, rendered.media_type, "pdf2image")


def filter_option_list(plan: ExportPlan, filter_options: str | None = None) -> list[str]:
    """unoserver-style filter options: FilterData as Name=value, then the options string."""
    options = [f"{name}={_option_text(value)}" for name, value in plan.filter_data.items()]
    text = plan.filter_options if filter_options is None else filter_options
    if text:
        options.append(text)
    return options


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
