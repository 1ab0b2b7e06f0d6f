"""Conversion options: each declared once in conversion_matrix.yaml, parsed and normalised here.

An option has a type (which values it takes), a default, and a destination: the
PDF export filter's FilterData, the engine's load and layout step, the PNG
renderer, or the CSV writer. Parsing turns every accepted spelling into one
canonical value (``"90"`` and ``90``, ``true`` and ``"true"``), so equal options
share one cached artifact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from converter.errors import InvalidRequest

TYPES = ("bool", "int", "choice", "page_range", "pages", "sheet", "secret")
DESTINATIONS = ("filter_data", "engine", "render", "csv", "load")

_PAGE_RANGE = re.compile(r"^\d+(-\d*)?(,\d+(-\d*)?)*$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
# A form field or JSON string of a page selection; "all" is spelled out by callers.
_MAX_TEXT = 200


class OptionError(ValueError):
    """An option declaration in the matrix is malformed (raised at start-up)."""


@dataclass(frozen=True)
class OptionSpec:
    """One caller-settable option: its type, range, default and where it goes."""

    name: str
    type: str
    help: str
    destination: str
    target_name: str = ""
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    also: dict[str, Any] = field(default_factory=dict)

    def parse(self, raw: Any) -> Any:
        """The canonical value of one caller value; InvalidRequest naming options.<name>."""
        where = f"options.{self.name}"
        if isinstance(raw, str) and len(raw) > _MAX_TEXT and self.type != "secret":
            raise InvalidRequest(f"{where} is too long ({self.help})", field=where)
        parser = getattr(self, f"_parse_{self.type}")
        value: Any = parser(raw, where)
        return value

    def describe(self) -> dict[str, Any]:
        """The public JSON shape of this option in GET /v1/formats."""
        out: dict[str, Any] = {"type": self.type, "help": self.help}
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = [_choice_value(c) for c in self.choices]
        return out

    # ---------------------------------------------------------------- parsers by type
    def _parse_bool(self, raw: Any, where: str) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise InvalidRequest(f"{where} must be true or false ({self.help})", field=where,
                             valid_values=[True, False])

    def _parse_int(self, raw: Any, where: str) -> int:
        text = str(raw).strip()
        if isinstance(raw, bool) or not re.fullmatch(r"[+-]?\d{1,9}", text):
            raise InvalidRequest(f"{where} must be a whole number{self._range_text()} "
                                 f"({self.help})", field=where, **self._range_details())
        value = int(text)
        if self.choices and str(value) not in self.choices:
            raise InvalidRequest(
                f"{where} must be one of {', '.join(self.choices)} ({self.help})",
                field=where, valid_values=[int(c) for c in self.choices])
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise InvalidRequest(f"{where} must be{self._range_text()} ({self.help})",
                                 field=where, **self._range_details())
        return value

    def _parse_choice(self, raw: Any, where: str) -> str:
        key = str(raw).strip()
        if key not in self.choices:
            raise InvalidRequest(
                f"{where} must be one of {', '.join(self.choices)} ({self.help})",
                field=where, valid_values=list(self.choices))
        return key

    def _parse_page_range(self, raw: Any, where: str) -> str:
        text = re.sub(r"\s+", "", str(raw)).replace(";", ",")
        if isinstance(raw, bool) or not _PAGE_RANGE.match(text) or _has_page_zero(text):
            raise InvalidRequest(f"{where} must look like 1-3,5 with pages from 1 "
                                 f"({self.help})", field=where)
        # A bare page number would travel to the export filter as an integer (unoserver's
        # option convention); LibreOffice wants PageRange as text, and "2-2" means page 2.
        return f"{text}-{text}" if text.isdecimal() else text

    def _parse_pages(self, raw: Any, where: str) -> str:
        text = re.sub(r"\s+", "", str(raw)).lower()
        if text == "all":
            return text
        if isinstance(raw, bool) or not _PAGE_RANGE.match(text) or _has_page_zero(text):
            raise InvalidRequest(f"{where} must be all, a page number or a range such as "
                                 f"1-3,5 ({self.help})", field=where)
        return text

    def _parse_sheet(self, raw: Any, where: str) -> int | str:
        if isinstance(raw, bool):
            raise InvalidRequest(f"{where} must be a 1-based sheet number, a sheet name or "
                                 f"all ({self.help})", field=where)
        if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdecimal()):
            number = int(raw)
            if number < 1:
                raise InvalidRequest(f"{where}: sheet numbers start at 1 ({self.help})",
                                     field=where)
            return number
        text = str(raw)
        if not text.strip():
            raise InvalidRequest(f"{where} must not be empty ({self.help})", field=where)
        return "all" if text.strip().lower() == "all" else text

    def _parse_secret(self, raw: Any, where: str) -> str:
        if not isinstance(raw, str) or not raw or len(raw) > 1024:
            raise InvalidRequest(f"{where} must be a non-empty string of at most 1024 "
                                 "characters", field=where)
        return raw

    def _range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum} to {self.maximum}"
        return ""

    def _range_details(self) -> dict[str, Any]:
        if self.choices:
            return {"valid_values": [int(c) for c in self.choices]}
        return {k: v for k, v in (("minimum", self.minimum), ("maximum", self.maximum))
                if v is not None}


def _has_page_zero(text: str) -> bool:
    return any(part == "0" or part.startswith("0") for part in re.split(r"[,-]", text) if part)


def _choice_value(key: str) -> Any:
    return int(key) if key.isdecimal() else key


def declare(name: str, raw: Any, where: str) -> OptionSpec:
    """Validate one option declaration from the matrix YAML."""
    if not isinstance(raw, dict):
        raise OptionError(f"{where} must be a mapping")
    otype = raw.get("type")
    if otype not in TYPES:
        raise OptionError(f"{where}.type must be one of {', '.join(TYPES)}, got {otype!r}")
    destinations = [d for d in DESTINATIONS if d in raw]
    if len(destinations) != 1:
        raise OptionError(f"{where} must name exactly one destination: "
                          f"{', '.join(DESTINATIONS)}")
    destination = destinations[0]
    choices = raw.get("choices") or {}
    if isinstance(choices, list):
        choices = {str(c): c for c in choices}
    if otype == "choice" and not choices:
        raise OptionError(f"{where}.choices is required for type choice")
    spec = OptionSpec(
        name=name, type=otype, help=str(raw.get("help", "")), destination=destination,
        target_name=str(raw[destination]), default=raw.get("default"),
        minimum=raw.get("minimum"), maximum=raw.get("maximum"),
        choices={str(k): v for k, v in choices.items()}, also=dict(raw.get("also") or {}),
    )
    if spec.default is not None:
        try:
            canonical = spec.parse(spec.default)
        except InvalidRequest as exc:
            raise OptionError(f"{where}.default is invalid: {exc.message}") from None
        object.__setattr__(spec, "default", canonical)
    return spec


def normalise(specs: dict[str, OptionSpec], given: dict[str, Any], target: str,
              ) -> dict[str, Any]:
    """Canonical values of the given options (defaults dropped); 400 for unknown ones."""
    unknown = sorted(set(given) - set(specs))
    if unknown:
        valid = ", ".join(specs) or "none"
        raise InvalidRequest(
            f"Unknown option {unknown[0]!r} for {target}; valid options: {valid}",
            field=f"options.{unknown[0]}", valid_options=list(specs))
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        raw = given.get(name)
        if raw is None or raw == "":
            continue
        value = spec.parse(raw)
        # An explicit default is the same conversion as an omitted option: one artifact.
        if value != spec.default:
            out[name] = value
    return out
