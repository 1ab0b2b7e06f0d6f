"""Conversion options from a request: the ``options`` JSON object, or top-level form fields."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from converter.errors import InvalidRequest

# Form fields that are part of the request itself rather than options of the conversion.
CONVERT_FIELDS = ("format", "options")
ONESHOT_FIELDS = ("format", "options", "file", "url", "store", "scope")


def parse_flag(name: str, raw: str | None) -> bool:
    """A boolean request field (true/false, 1/0, yes/no); absent means false."""
    text = (raw or "false").strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidRequest(f"{name} must be true or false", field=name,
                         valid_values=[True, False])


def parse_options(raw: Any) -> dict[str, Any]:
    """Options as a JSON object (or a JSON-encoded string of one, from a form)."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidRequest("options must be a JSON object", field="options") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("options must be a JSON object", field="options")
    return raw


def request_options(reserved: tuple[str, ...]) -> dict[str, Any]:
    """The request's options: JSON ``options``, or form ``options`` plus top-level fields.

    curl users write ``-F landscape=true``: every form field that is not one of the
    request's own fields is taken as an option of the same name, so an unknown one
    is refused by the matrix like any other unknown option.
    """
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        return parse_options(body.get("options"))
    options = parse_options(request.form.get("options"))
    for name in request.form:
        if name in reserved:
            continue
        if name in options:
            raise InvalidRequest(f"{name} is given both in options and as a form field; "
                                 "give it once", field=name)
        options[name] = request.form[name]
    return options
