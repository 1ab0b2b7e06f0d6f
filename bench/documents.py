"""Which corpus documents the benchmark converts, read from ../shared/corpus at run time."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FORMATS = ("docx", "doc", "xlsx", "xls", "pptx", "ppt", "odt", "ods", "odp", "rtf")
FAMILY = {"docx": "writer", "doc": "writer", "odt": "writer", "rtf": "writer",
          "xlsx": "calc", "xls": "calc", "ods": "calc",
          "pptx": "impress", "ppt": "impress", "odp": "impress"}


@dataclass(frozen=True)
class Doc:
    """One corpus document and what FILES.tsv says about it."""

    name: str  # relative to the corpus, e.g. "docx/SampleDoc.docx"
    path: Path
    fmt: str
    size: int
    lo_seconds: float

    @property
    def family(self) -> str:
        """writer, calc or impress."""
        return FAMILY[self.fmt]


def heavy_names(corpus: Path = CORPUS) -> set[str]:
    """The files README.md lists under "Heavy files for benchmarks"."""
    text = (corpus / "README.md").read_text(encoding="utf-8")
    start = text.find("Heavy files for benchmarks")
    if start < 0:
        return set()
    section = text[start:text.find("\n\n**", start + 1)]
    return set(re.findall(r"^\s*\|\s*`([^`]+)`\s*\|", section, flags=re.MULTILINE))


def all_docs(corpus: Path = CORPUS) -> list[Doc]:
    """Every convertible document in FILES.tsv order (bad/ excluded)."""
    if not (corpus / "FILES.tsv").exists():
        raise SystemExit(f"corpus not found at {corpus} (expected FILES.tsv there)")
    docs = []
    with (corpus / "FILES.tsv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            fmt = row["local_name"].split("/", 1)[0]
            if fmt not in FORMATS or row.get("lo7.4_pdf") != "yes":
                continue
            docs.append(Doc(name=row["local_name"], path=corpus / row["local_name"], fmt=fmt,
                            size=int(row["bytes"]), lo_seconds=float(row["lo7.4_seconds"])))
    return docs


def select(per_format: int, heavy: bool = False, corpus: Path = CORPUS) -> list[Doc]:
    """The first ``per_format`` documents of each format, skipping heavy ones unless asked."""
    skip = set() if heavy else heavy_names(corpus)
    chosen: list[Doc] = []
    for fmt in FORMATS:
        of_fmt = [d for d in all_docs(corpus) if d.fmt == fmt and d.name not in skip]
        chosen.extend(of_fmt[:per_format])
    heavy_chosen = [d for d in all_docs(corpus) if d.name in heavy_names(corpus)] if heavy else []
    return chosen + [d for d in heavy_chosen if d not in chosen]


def mixed_batch(docs: list[Doc], size: int) -> list[Doc]:
    """``size`` documents cycling through the formats, so every client sees a mix."""
    by_fmt = {fmt: [d for d in docs if d.fmt == fmt and d.lo_seconds < 3.0] for fmt in FORMATS}
    by_fmt = {fmt: ds for fmt, ds in by_fmt.items() if ds}
    batch: list[Doc] = []
    i = 0
    while len(batch) < size and by_fmt:
        for ds in by_fmt.values():
            if len(batch) < size:
                batch.append(ds[i % len(ds)])
        i += 1
    return batch
