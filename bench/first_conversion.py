"""``python -m bench.first_conversion``: the first conversion after ready against a warm one.

For each document below, several rounds each start a fresh engine pool of one instance
(new LibreOffice, new profile copy: what a service start or an instance restart does), wait
until the pool is ready (what ``/readyz`` checks of the engine), time the very first
conversion, then the same conversion again a few times (warm; their median). Two warm-up
modes, alternated round by round in the same run:

- ``samples``: the engine's warm-up (converter/engine/warmup.py: a tiny real document of
  each format converted through the request path);
- ``factory``: the warm-up before it, which stored factory-new empty documents to PDF.
  Reproduced by this benchmark only: it replaces the bridge call in its own process with
  those stores over UNO to the same LibreOffice; nothing in the service knows the mode.

It drives the pool in-process (jobs built from the conversion matrix exactly as the
service builds them) rather than over HTTP: upload and download time is the same for the
first and later conversions and would only dilute the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.documents import CORPUS
from bench.stats import median, ratio
from converter import config, matrix
from converter.engine.client import BridgeClient
from converter.engine.pool import EngineJob, EnginePool
from converter.service.csv_export import AS_SHOWN
from converter.service.production import filter_option_list

# (label, corpus document, target): one per family, and CSV for Calc.
CASES = [
    ("docx -> pdf", "docx/SampleDoc.docx", "pdf"),
    ("odt -> pdf", "odt/HelloWorld.odt", "pdf"),
    ("xlsx -> pdf", "xlsx/SampleSS.xlsx", "pdf"),
    ("xlsx -> csv", "xlsx/SampleSS.xlsx", "csv"),
    ("pptx -> pdf", "pptx/SampleShow.pptx", "pdf"),
]
MODES = ("factory", "samples")
_ORIGINAL_WARMUP = BridgeClient.warmup


def log(message: str) -> None:
    """Progress goes to stderr, so stdout is the report alone."""
    print(message, file=sys.stderr, flush=True)


def _factory_warmup(pool: EnginePool) -> Callable[[BridgeClient, float], dict[str, str]]:
    """The pre-samples warm-up: factory-new documents stored to PDF (not the import path)."""
    import uno  # only under a Python with LibreOffice's bindings, as the bridge
    from com.sun.star.beans import PropertyValue
    from unoserver.converter import UnoConverter

    def warm(client: BridgeClient, timeout: float) -> dict[str, str]:
        inst = next(i for i in pool.instances if client.url.endswith(f":{i.rpc_port}/RPC2"))
        desktop = UnoConverter(port=str(inst.uno_port)).desktop
        for factory, flt in (("swriter", "writer_pdf_Export"), ("scalc", "calc_pdf_Export"),
                             ("simpress", "impress_pdf_Export")):
            out = inst.root / f"factory-warmup-{factory}.pdf"
            doc = desktop.loadComponentFromURL(f"private:factory/{factory}", "_blank", 0,
                                               (PropertyValue(Name="Hidden", Value=True),))
            try:
                doc.storeToURL(uno.systemPathToFileUrl(str(out)),
                               (PropertyValue(Name="FilterName", Value=flt),))
            finally:
                doc.close(True)
                out.unlink(missing_ok=True)
        return {}
    return warm


@dataclass
class Row:
    """Timings of one case in one mode."""

    label: str
    mode: str
    firsts: list[float] = field(default_factory=list)
    warms: list[float] = field(default_factory=list)  # median of each round's warm runs
    ready: list[float] = field(default_factory=list)  # start until the pool was ready

    @property
    def ratios(self) -> list[float]:
        """Each round's first over the same round's warm median (drift cancels within one)."""
        return [ratio(f, w) for f, w in zip(self.firsts, self.warms, strict=True)]

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios."""
        return median(self.ratios)


def _job(plan: Any) -> EngineJob:
    # CSV: the first sheet, as service/csv_export.py fills the template by default.
    options = plan.filter_options.replace("{as_shown}", AS_SHOWN).replace("{sheet}", "1")
    return EngineJob(import_filter=plan.import_filter, export_filter=plan.export_filter,
                     filter_options=filter_option_list(plan, options or None),
                     source=plan.source, target=plan.target)


def _round(root: Path, mode: str, doc: Path, plan: Any, warm_runs: int, row: Row) -> None:
    cfg = config.load({"CONVERTER_DATA_DIR": str(root), "CONVERTER_WORKERS": "1",
                       "CONVERTER_RECYCLE_AFTER": "100000"})
    pool = EnginePool(cfg)
    BridgeClient.warmup = (_factory_warmup(pool) if mode == "factory"  # type: ignore[method-assign]
                           else _ORIGINAL_WARMUP)
    started = time.perf_counter()
    pool.start()
    row.ready.append(time.perf_counter() - started)
    job = _job(plan)
    times = []
    try:
        for _ in range(1 + warm_runs):
            with pool.scratch() as scratch:
                source = scratch / f"source.{plan.source}"
                shutil.copyfile(doc, source)
                began = time.perf_counter()
                pool.convert(source, scratch / f"result.{plan.target}", job,
                             time.monotonic() + 120)
                times.append(time.perf_counter() - began)
    finally:
        pool.stop()
        BridgeClient.warmup = _ORIGINAL_WARMUP  # type: ignore[method-assign]
    row.firsts.append(times[0])
    row.warms.append(median(times[1:]))


def main(argv: list[str] | None = None) -> int:
    """Measure both modes side by side and print the table."""
    parser = argparse.ArgumentParser("python -m bench.first_conversion")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh starts per case and mode (default 3)")
    parser.add_argument("--warm", type=int, default=5,
                        help="warm conversions after the first, per round (default 5)")
    parser.add_argument("--only", default="",
                        help="only the cases whose label contains this (e.g. pptx)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.only in c[0]]
    conversions = matrix.load()
    rows = {(label, mode): Row(label, mode) for label, _d, _t in cases for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        root = Path(tmp)
        for rnd in range(args.rounds):
            for label, name, target in cases:
                plan = conversions.plan(name.rsplit(".", 1)[1], target)
                # Alternate which mode goes first, so drift on a shared machine hits both.
                for mode in (MODES if rnd % 2 == 0 else MODES[::-1]):
                    log(f"round {rnd + 1}/{args.rounds} {label} [{mode}]")
                    _round(root, mode, CORPUS / name, plan, args.warm, rows[(label, mode)])
    print(f"First conversion after ready vs warm, {args.rounds} fresh starts per row and "
          f"mode (warm: median of {args.warm} conversions after the first in the same "
          f"start); one instance; times are medians over the starts.\n")
    print("| conversion | warm-up | ready after s | first s | warm s | first / warm "
          "(median of rounds) | rounds' range |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, _d, _t in cases:
        for mode in MODES:
            row = rows[(label, mode)]
            print(f"| {label} | {mode} | {median(row.ready):.2f} | {median(row.firsts):.3f} "
                  f"| {median(row.warms):.3f} | x{row.ratio:.2f} "
                  f"| x{min(row.ratios):.2f}-x{max(row.ratios):.2f} |")
    print("\nfirst/warm ratio, factory -> samples:")
    for label, _d, _t in cases:
        old, new = rows[(label, "factory")].ratio, rows[(label, "samples")].ratio
        verdict = "meets" if new <= 1.2 else "misses"
        print(f"- {label}: x{old:.3f} -> x{new:.3f} ({verdict} the x1.2 goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
