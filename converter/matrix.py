"""The conversion matrix: conversion_matrix.yaml loaded, validated and queried.

No source/target pair is known to Python except through this file. Start-up
fails with a MatrixError that names the YAML path that is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from converter.errors import InvalidRequest

# Package data, so that a regular (non-editable) install finds it beside this module.
DEFAULT_PATH = Path(__file__).resolve().with_name("conversion_matrix.yaml")
_PAGE_RANGE = re.compile(r"^\s*\d+(\s*-\s*\d*)?(\s*[,;]\s*\d+(\s*-\s*\d*)?)*\s*$")
_OPTION_TYPES = ("page_range", "choice", "positive_int")
_OPTION_KINDS = ("filter_data", "csv_sheet")


class MatrixError(Exception):
    """conversion_matrix.yaml is malformed; the message names the offending path."""


@dataclass(frozen=True)
class OptionSpec:
    """One caller-settable option of a target and how it reaches the export filter."""

    name: str
    kind: str
    type: str
    help: str
    filter_name: str = ""
    choices: dict[str, Any] = field(default_factory=dict)
    default: Any = None

    def parse(self, raw: Any, where: str) -> Any:
        """Validate one caller value; raise InvalidRequest naming the field."""
        if self.type == "choice":
            key = str(raw)
            if key not in self.choices:
                raise InvalidRequest(
                    f"{where} must be one of {', '.join(self.choices)} ({self.help})",
                    field=where, valid_values=list(self.choices),
                )
            return key
        if self.type == "positive_int":
            if isinstance(raw, bool) or not str(raw).isdigit() or int(raw) < 1:
                raise InvalidRequest(
                    f"{where} must be a positive integer ({self.help})", field=where
                )
            return int(raw)
        text = str(raw)
        if not _PAGE_RANGE.match(text):
            raise InvalidRequest(
                f"{where} must look like 1-3,5 ({self.help})", field=where
            )
        compact = re.sub(r"\s+", "", text)
        # A bare page number would travel to the export filter as an integer (unoserver's
        # option convention); LibreOffice wants PageRange as text, and "2-2" means page 2.
        return f"{compact}-{compact}" if compact.isdecimal() else compact


@dataclass(frozen=True)
class TargetSpec:
    """What the engine needs to produce one target from one family of documents."""

    extension: str
    filter: str
    media_type: str
    filter_options: str = ""
    options: dict[str, OptionSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """One accepted source format."""

    name: str
    family: str
    import_filter: str
    media_type: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class ExportPlan:
    """A resolved conversion: filters and normalised options, ready for the engine."""

    source: str
    target: str
    import_filter: str
    export_filter: str
    filter_options: str
    filter_data: dict[str, Any]
    media_type: str
    options: dict[str, Any]


class Matrix:
    """Queries over the validated matrix."""

    def __init__(self, sources: dict[str, SourceSpec],
                 families: dict[str, dict[str, TargetSpec]]) -> None:
        self.sources = sources
        self.families = families

    def source(self, name: str) -> SourceSpec:
        """Return a source format or raise InvalidRequest listing the known ones."""
        spec = self.sources.get(name)
        if spec is None:
            raise InvalidRequest(
                f"Unsupported source format {name!r}; supported: {', '.join(self.sources)}",
                field="file", valid_formats=list(self.sources),
            )
        return spec

    def valid_targets(self, source: str) -> list[str]:
        """Targets offered for a source format."""
        return list(self.source(source).targets)

    def plan(self, source: str, target: str, options: dict[str, Any] | None = None,
             ) -> ExportPlan:
        """Resolve a source→target pair and caller options into an ExportPlan."""
        spec = self.source(source)
        target = (target or "").strip().lower().lstrip(".")
        if not target:
            raise InvalidRequest(
                f"format is required; valid targets for {source}: {', '.join(spec.targets)}",
                field="format", valid_targets=list(spec.targets),
            )
        if target not in spec.targets:
            raise InvalidRequest(
                f"Cannot convert {source} to {target!r}; valid targets for {source}: "
                f"{', '.join(spec.targets)}",
                field="format", valid_targets=list(spec.targets),
            )
        tspec = self.families[spec.family][target]
        given = dict(options or {})
        unknown = sorted(set(given) - set(tspec.options))
        if unknown:
            valid = ", ".join(tspec.options) or "none"
            raise InvalidRequest(
                f"Unknown option {unknown[0]!r} for {target}; valid options: {valid}",
                field=f"options.{unknown[0]}", valid_options=list(tspec.options),
            )
        normalised: dict[str, Any] = {}
        filter_data: dict[str, Any] = {}
        csv_sheet: Any = None
        for name, ospec in tspec.options.items():
            if name in given and given[name] not in (None, ""):
                value = ospec.parse(given[name], f"options.{name}")
                normalised[name] = value
            elif ospec.default is not None:
                value = ospec.default
            else:
                continue
            if ospec.kind == "filter_data":
                filter_data[ospec.filter_name] = (
                    ospec.choices[value] if ospec.type == "choice" else value
                )
            else:
                csv_sheet = value
        filter_options = tspec.filter_options
        if "{sheet}" in filter_options:
            filter_options = filter_options.replace("{sheet}", str(csv_sheet or 1))
        return ExportPlan(
            source=source, target=target, import_filter=spec.import_filter,
            export_filter=tspec.filter, filter_options=filter_options,
            filter_data=filter_data, media_type=tspec.media_type, options=normalised,
        )

    def media_type(self, source: str, target: str) -> str:
        """Content-Type of an artifact of this pair."""
        return self.families[self.source(source).family][target].media_type

    def describe(self) -> dict[str, Any]:
        """The public JSON shape of GET /v1/formats."""
        out: dict[str, Any] = {}
        for name, spec in self.sources.items():
            out[name] = {
                "media_type": spec.media_type,
                "targets": {
                    t: {
                        "media_type": self.families[spec.family][t].media_type,
                        "options": {
                            o.name: {"help": o.help, **({"choices": list(o.choices)}
                                                        if o.choices else {})}
                            for o in self.families[spec.family][t].options.values()
                        },
                    }
                    for t in spec.targets
                },
            }
        return out


def _need(mapping: Any, key: str, where: str, kind: type) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise MatrixError(f"{where}.{key} is missing")
    value = mapping[key]
    if not isinstance(value, kind):
        raise MatrixError(f"{where}.{key} must be a {kind.__name__}, got {value!r}")
    return value


def _option(name: str, raw: Any, where: str) -> OptionSpec:
    if not isinstance(raw, dict):
        raise MatrixError(f"{where} must be a mapping")
    kind = _need(raw, "kind", where, str)
    otype = _need(raw, "type", where, str)
    if kind not in _OPTION_KINDS:
        raise MatrixError(f"{where}.kind must be one of {_OPTION_KINDS}, got {kind!r}")
    if otype not in _OPTION_TYPES:
        raise MatrixError(f"{where}.type must be one of {_OPTION_TYPES}, got {otype!r}")
    choices = raw.get("choices") or {}
    if otype == "choice" and not choices:
        raise MatrixError(f"{where}.choices is required for type choice")
    return OptionSpec(
        name=name, kind=kind, type=otype, help=str(raw.get("help", "")),
        filter_name=str(raw.get("name", "")), choices={str(k): v for k, v in choices.items()},
        default=raw.get("default"),
    )


def parse(document: Any) -> Matrix:
    """Validate a parsed YAML document and build a Matrix."""
    families_raw = _need(document, "families", "matrix", dict)
    families: dict[str, dict[str, TargetSpec]] = {}
    for family, targets in families_raw.items():
        where = f"families.{family}"
        if not isinstance(targets, dict) or not targets:
            raise MatrixError(f"{where} must map target extensions to filters")
        families[family] = {}
        for ext, raw in targets.items():
            twhere = f"{where}.{ext}"
            options = raw.get("options") or {} if isinstance(raw, dict) else {}
            families[family][str(ext)] = TargetSpec(
                extension=str(ext),
                filter=_need(raw, "filter", twhere, str),
                media_type=_need(raw, "media_type", twhere, str),
                filter_options=str(raw.get("filter_options", "")),
                options={str(n): _option(str(n), o, f"{twhere}.options.{n}")
                         for n, o in options.items()},
            )
    sources_raw = _need(document, "sources", "matrix", dict)
    sources: dict[str, SourceSpec] = {}
    for name, raw in sources_raw.items():
        where = f"sources.{name}"
        family = _need(raw, "family", where, str)
        if family not in families:
            raise MatrixError(
                f"{where}.family {family!r} is not one of {', '.join(families)}"
            )
        targets = _need(raw, "targets", where, list)
        if not targets:
            raise MatrixError(f"{where}.targets is empty")
        for target in targets:
            if target not in families[family]:
                raise MatrixError(
                    f"{where}.targets: {target!r} has no filter in families.{family} "
                    f"(known: {', '.join(families[family])})"
                )
        if len(set(targets)) != len(targets):
            raise MatrixError(f"{where}.targets lists a target twice")
        sources[str(name)] = SourceSpec(
            name=str(name), family=family,
            import_filter=_need(raw, "import_filter", where, str),
            media_type=_need(raw, "media_type", where, str),
            targets=tuple(str(t) for t in targets),
        )
    return Matrix(sources, families)


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys instead of silently keeping the last one."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False,
                   ) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise MatrixError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load(path: Path = DEFAULT_PATH) -> Matrix:
    """Load and validate the matrix file; raise MatrixError with the file and YAML path."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except MatrixError as exc:
        raise MatrixError(f"{path}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise MatrixError(f"{path}: cannot read: {exc}") from None
    try:
        return parse(document)
    except MatrixError as exc:
        raise MatrixError(f"{path}: {exc}") from None
