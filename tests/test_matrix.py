"""The matrix loader: validation errors say what is wrong where; options normalise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from converter.errors import InvalidRequest
from converter.matrix import DEFAULT_PATH, MatrixError, load, parse


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DEFAULT_PATH.read_text())
    return loaded


def test_issue_minimum_pairs_are_present() -> None:
    """The pairs the service promised from the start are all in the YAML."""
    minimum = {"xlsx": {"pdf", "csv", "png", "html"}, "xls": {"pdf", "csv", "xlsx", "html"},
               "docx": {"pdf", "html", "txt", "odt"}, "doc": {"pdf", "docx", "html", "txt"},
               "pptx": {"pdf", "png", "odp"}, "ppt": {"pdf", "pptx", "png"},
               "odt": {"pdf", "docx", "html", "txt"}, "ods": {"pdf", "xlsx", "csv", "html"},
               "odp": {"pdf", "pptx", "png"}, "rtf": {"pdf", "docx", "odt", "html", "txt"}}
    matrix = load()
    for source, targets in minimum.items():
        assert targets <= set(matrix.valid_targets(source)), source


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("sources"), "matrix.sources is missing"),
    (lambda d: d["sources"]["docx"].update(family="draw"), "sources.docx.family 'draw'"),
    (lambda d: d["sources"]["docx"]["targets"].append("mp3"), "sources.docx.targets: 'mp3'"),
    (lambda d: d["sources"]["docx"].pop("import_filter"), "sources.docx.import_filter"),
    (lambda d: d["families"]["writer"]["pdf"].pop("filter"), "families.writer.pdf.filter"),
    (lambda d: d["sources"]["docx"].update(targets=[]), "sources.docx.targets is empty"),
    (lambda d: d["options"]["pdfa"].update(type="magic"), "options.pdfa.type"),
    (lambda d: d["options"]["quality"].update(default=500), "options.quality.default"),
    (lambda d: d["options"]["dpi"].pop("render"), "options.dpi must name exactly one"),
    (lambda d: d["families"]["writer"]["pdf"]["options"].append("nope"),
     "families.writer.pdf.options: 'nope' is not declared"),
    (lambda d: d["families"]["writer"]["png"].update(render="gif"),
     "families.writer.png.render: 'gif'"),
])
def test_invalid_matrix_names_the_path(mutate: Any, message: str) -> None:
    """Start-up errors point at the YAML path to fix."""
    document = _document()
    mutate(document)
    with pytest.raises(MatrixError, match=message.replace(".", r"\.").replace("'", "'")):
        parse(document)


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    """YAML would silently keep the last duplicate; the loader refuses it."""
    text = DEFAULT_PATH.read_text()
    dup = tmp_path / "matrix.yaml"
    dup.write_text(text + "\n  docx:\n    family: writer\n")
    with pytest.raises(MatrixError, match="duplicate key 'docx'"):
        load(dup)


def test_options_are_validated_and_normalised() -> None:
    """Whitespace and single pages normalise; unknown options and bad values name the field."""
    matrix = load()
    assert matrix.plan("docx", "PDF", {"page_range": " 2 "}).options == {"page_range": "2-2"}
    assert matrix.plan("docx", "pdf", {"pdfa": 2}).filter_data["SelectPdfVersion"] == 2
    assert matrix.plan("xlsx", "csv", {}).settings["sheet"] == 1
    assert matrix.plan("xlsx", "csv", {"sheet": "3"}).settings["sheet"] == 3
    for options, field in (({"sheet": 0}, "options.sheet"), ({"dpi": 300}, "options.dpi")):
        with pytest.raises(InvalidRequest) as caught:
            matrix.plan("xlsx", "csv", options)
        assert caught.value.details["field"] == field
