"""The OpenAPI description: the hand-written openapi.yaml plus what the matrix declares.

Routes, bodies, responses and the error envelope are written once in openapi.yaml; the
source and target formats, each option's schema and the artifact media types are declared
once in conversion_matrix.yaml and copied in here, so the description cannot drift from
what the service accepts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from converter.matrix import Matrix
from converter.options import OptionSpec

TEMPLATE = Path(__file__).resolve().with_name("openapi.yaml")
# Several pages (PNG) or every sheet (CSV) come back as one ZIP of files.
ZIP = "application/zip"
# Page selections as the option parsers accept them once whitespace is dropped.
_RANGE = r"[0-9]+(-[0-9]*)?(,[0-9]+(-[0-9]*)?)*"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The hand-written part of the description."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def option_schema(spec: OptionSpec) -> dict[str, Any]:
    """The JSON Schema of one option's value, from its declaration."""
    described = spec.describe()
    schema: dict[str, Any]
    if spec.type == "bool":
        schema = {"type": "boolean"}
    elif spec.type in ("int", "choice") and "choices" in described:
        choices = described["choices"]
        kinds = {"integer" if isinstance(c, int) else "string" for c in choices}
        schema = {"type": kinds.pop() if len(kinds) == 1 else sorted(kinds), "enum": choices}
    elif spec.type == "int":
        schema = {"type": "integer"}
        for bound in ("minimum", "maximum"):
            if bound in described:
                schema[bound] = described[bound]
    elif spec.type == "page_range":
        schema = {"type": "string", "pattern": f"^{_RANGE}$", "maxLength": 200}
    elif spec.type == "pages":
        schema = {"type": "string", "pattern": f"^(all|{_RANGE})$", "maxLength": 200}
    elif spec.type == "sheet":
        schema = {"oneOf": [{"type": "integer", "minimum": 1},
                            {"type": "string", "minLength": 1, "maxLength": 200,
                             "pattern": r"\S"}]}
    else:  # secret: the password of an encrypted source, never echoed back
        schema = {"type": "string", "minLength": 1, "maxLength": 1024, "format": "password",
                  "writeOnly": True}
    schema["description"] = spec.help
    if "default" in described:
        schema["default"] = described["default"]
    return schema


def artifact_media_types(matrix: Matrix) -> list[str]:
    """Every Content-Type an artifact can have, without parameters (charset)."""
    found = {target.media_type.split(";")[0].strip()
             for targets in matrix.families.values() for target in targets.values()}
    return sorted(found | {ZIP})


def build(matrix: Matrix, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The complete OpenAPI 3.1 description for this matrix."""
    spec = copy.deepcopy(template if template is not None else load_template())
    # The header sets exist only to be aliased from responses; they are not OpenAPI.
    spec.pop("x-header-sets", None)
    schemas = spec["components"]["schemas"]
    schemas["SourceFormat"]["enum"] = list(matrix.sources)
    schemas["TargetFormat"]["enum"] = sorted(
        {t for source in matrix.sources.values() for t in source.targets})
    schemas["ConversionOptions"]["properties"] = {
        name: option_schema(option) for name, option in matrix.options.items()}
    schemas["ConversionOptions"]["additionalProperties"] = False
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    for name in ("Converted", "Download"):
        spec["components"]["responses"][name]["content"] = {
            media_type: {"schema": dict(binary, contentMediaType=media_type)}
            for media_type in artifact_media_types(matrix)}
    return spec
