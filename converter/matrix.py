"""The conversion matrix: conversion_matrix.yaml loaded, validated and queried.

No source/target pair is known to Python except through this file. Start-up
fails with a MatrixError that names the YAML path that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from converter.errors import InvalidRequest
from converter.options import OptionError, OptionSpec, declare, normalise

# Package data, so that a regular (non-editable) install finds it beside this module.
DEFAULT_PATH = Path(__file__).resolve().with_name("conversion_matrix.yaml")


class MatrixError(Exception):
    """conversion_matrix.yaml is malformed; the message names the offending path."""


@dataclass(frozen=True)
class TargetSpec:
    """What the engine needs to produce one target from one family of documents."""

    extension: str
    filter: str
    media_type: str
    filter_options: str = ""
    options: dict[str, OptionSpec] = field(default_factory=dict)
    # "pdf" when the target is drawn page by page from the family's PDF.
    render_from: str = ""


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
    family: str
    import_filter: str
    export_filter: str
    filter_options: str
    filter_data: dict[str, Any]
    media_type: str
    # Canonical non-default options, password excluded: what cache keys and rows see.
    options: dict[str, Any]
    # Every option of the target with its default filled in, for the layers that act on them.
    settings: dict[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)
    engine_options: dict[str, Any] = field(default_factory=dict)
    render_from: str = ""


class Matrix:
    """Queries over the validated matrix."""

    def __init__(self, sources: dict[str, SourceSpec],
                 families: dict[str, dict[str, TargetSpec]],
                 options: dict[str, OptionSpec] | None = None) -> None:
        self.sources = sources
        self.families = families
        self.options = options or {}

    def source(self, name: str) -> SourceSpec:
        """Return a source format or raise InvalidRequest listing the known ones."""
        spec = self.sources.get(name)
        if spec is None:
            raise InvalidRequest(
                f"Unsupported source format {name!r}; supported: {', '.join(self.sources)}",
                field="file", valid_formats=list(self.sources))
        return spec

    def valid_targets(self, source: str) -> list[str]:
        """Targets offered for a source format."""
        return list(self.source(source).targets)

    def target(self, source: str, target: str) -> TargetSpec:
        """The TargetSpec of a pair, or InvalidRequest listing the valid targets."""
        spec = self.source(source)
        target = (target or "").strip().lower().lstrip(".")
        if not target:
            raise InvalidRequest(
                f"format is required; valid targets for {source}: {', '.join(spec.targets)}",
                field="format", valid_targets=list(spec.targets))
        if target not in spec.targets:
            raise InvalidRequest(
                f"Cannot convert {source} to {target!r}; valid targets for {source}: "
                f"{', '.join(spec.targets)}", field="format", valid_targets=list(spec.targets))
        return self.families[spec.family][target]

    def plan(self, source: str, target: str, options: dict[str, Any] | None = None,
             ) -> ExportPlan:
        """Resolve a source→target pair and caller options into an ExportPlan."""
        spec = self.source(source)
        tspec = self.target(source, target)
        given = dict(options or {})
        canonical = normalise(tspec.options, given, tspec.extension)
        settings = {name: canonical.get(name, o.default) for name, o in tspec.options.items()
                    if o.type != "secret"}
        filter_data: dict[str, Any] = {}
        engine_options: dict[str, Any] = {}
        csv: dict[str, str] = {}
        for name, ospec in tspec.options.items():
            value = settings.get(name)
            if value is None:
                continue
            if ospec.destination == "filter_data":
                filter_data[ospec.target_name] = (
                    ospec.choices[value] if ospec.type == "choice" else value)
                if value is not False:
                    filter_data.update(ospec.also)
            elif ospec.destination == "engine" and value:
                engine_options[ospec.target_name] = value
            elif ospec.destination == "csv" and ospec.type == "choice":
                csv[ospec.target_name] = str(ospec.choices[value])
        filter_options = tspec.filter_options
        for name, value in csv.items():
            filter_options = filter_options.replace("{" + name + "}", value)
        password = canonical.pop("password", None)
        return ExportPlan(
            source=source, target=tspec.extension, family=spec.family,
            import_filter=spec.import_filter, export_filter=tspec.filter,
            filter_options=filter_options, filter_data=filter_data,
            media_type=tspec.media_type, options=canonical, settings=settings,
            password=password, engine_options=engine_options, render_from=tspec.render_from)

    def media_type(self, source: str, target: str) -> str:
        """Content-Type of an artifact of this pair (for one file; ZIPs are decided later)."""
        return self.families[self.source(source).family][target].media_type

    def describe(self) -> dict[str, Any]:
        """The public JSON shape of GET /v1/formats."""
        out: dict[str, Any] = {}
        for name, spec in self.sources.items():
            out[name] = {
                "media_type": spec.media_type,
                "family": spec.family,
                "targets": {
                    t: {
                        "media_type": self.families[spec.family][t].media_type,
                        "options": {o.name: o.describe()
                                    for o in self.families[spec.family][t].options.values()},
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


def parse(document: Any) -> Matrix:
    """Validate a parsed YAML document and build a Matrix."""
    declared_raw = document.get("options") if isinstance(document, dict) else None
    declared: dict[str, OptionSpec] = {}
    for name, raw in (declared_raw or {}).items():
        try:
            declared[str(name)] = declare(str(name), raw, f"options.{name}")
        except OptionError as exc:
            raise MatrixError(str(exc)) from None
    families_raw = _need(document, "families", "matrix", dict)
    families: dict[str, dict[str, TargetSpec]] = {}
    for family, targets in families_raw.items():
        where = f"families.{family}"
        if not isinstance(targets, dict) or not targets:
            raise MatrixError(f"{where} must map target extensions to filters")
        families[family] = {}
        for ext, raw in targets.items():
            twhere = f"{where}.{ext}"
            render_from = str(raw.get("render", "")) if isinstance(raw, dict) else ""
            if render_from and render_from not in targets:
                raise MatrixError(f"{twhere}.render: {render_from!r} is not a target of {where}")
            names = raw.get("options") or [] if isinstance(raw, dict) else []
            if not isinstance(names, list):
                raise MatrixError(f"{twhere}.options must list option names")
            for option in names:
                if option not in declared:
                    raise MatrixError(f"{twhere}.options: {option!r} is not declared under "
                                      f"options (known: {', '.join(declared)})")
            families[family][str(ext)] = TargetSpec(
                extension=str(ext),
                filter="" if render_from else _need(raw, "filter", twhere, str),
                media_type=_need(raw, "media_type", twhere, str),
                filter_options=str(raw.get("filter_options", "")),
                options={str(n): declared[n] for n in names}, render_from=render_from,
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
    return Matrix(sources, families, declared)


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
