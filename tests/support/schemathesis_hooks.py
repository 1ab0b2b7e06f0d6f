"""Schemathesis hooks for tests/test_openapi_schemathesis.py (SCHEMATHESIS_HOOKS names the file).

Three jobs:
- Keep every request on this machine. ``url`` (URL import) and ``webhook_url`` would make
  the service resolve and connect to whatever host schemathesis invents, so just before
  each request (before_call runs in every phase) the host of each URL in the body is
  replaced with 127.0.0.1, which the address policy refuses (400) before any connection;
  scheme, port, path and query stay as generated.
- Reach the success paths. Random ids only ever find 404, so in half of the positive
  cases the generated ``file_id``, ``run_id`` and download ``token`` are swapped for a
  real file, a completed run and its download that the test made (CONVERTER_ST_FILE_ID,
  CONVERTER_ST_RUN_ID, CONVERTER_ST_TOKEN). Uploads keep schemathesis's own bytes (400
  unsupported format): once a case's body is edited, schemathesis revalidates it and counts
  any binary value as invalid, so a real document would read as bad input accepted.
- Drop the cases a query string cannot carry (filter_case, below).
"""

from __future__ import annotations

import os
import zlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis

_URL_FIELDS = ("url", "webhook_url", "endpoint_url", "config")
_REAL = {name: os.environ.get(env, "") for name, env in (
    ("file_id", "CONVERTER_ST_FILE_ID"), ("run_id", "CONVERTER_ST_RUN_ID"),
    ("token", "CONVERTER_ST_TOKEN"))}


def local_url(value: Any) -> Any:
    """The same URL aimed at 127.0.0.1 (refused by the service's address policy)."""
    if not isinstance(value, str):
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value  # the service refuses it as invalid before resolving anything
    if not parts.hostname:
        return value  # refused for naming no host
    netloc = "127.0.0.1" if port is None else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _localise(value: Any) -> Any:
    """local_url applied to a value and everything inside it (lists become repeated fields)."""
    if isinstance(value, dict):
        return {k: _localise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_localise(v) for v in value]
    return local_url(value)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Aim generated URLs in bodies (JSON or form) at 127.0.0.1, in every phase."""
    # Only bodies with a URL are touched: an edited body is revalidated, and schemathesis
    # counts a binary value (an upload) as invalid, which would turn a valid case negative.
    if isinstance(case.body, dict):
        for key in _URL_FIELDS:
            if key in case.body:
                case.body[key] = _localise(case.body[key])


def _positive(case: Any) -> bool:
    """Whether schemathesis generated every part of the case to fit the description."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return False
    modes = [meta.generation.mode, *(c.mode for c in meta.components.values())]
    return all(str(mode) == "positive" for mode in modes)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Drop cases with an object or array for a query parameter (every one is a scalar).

    A query string has no spelling for an object: requests sends ``{}`` as an empty value,
    which the service takes as absent, and an array as the parameter repeated, of which
    Flask reads the first; schemathesis would then report as accepted an invalid value
    that the service never read.
    """
    query = case.query if isinstance(case.query, dict) else {}
    return not any(isinstance(v, dict | list) for v in query.values())


def _heads(*parts: Any) -> bool:
    """A coin flip that is the same for the same case, so a seed replays the same run."""
    return zlib.crc32(repr(parts).encode("utf-8", "replace")) % 2 == 0


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Half the positive cases get the real ids; negative ones stay as made."""
    # A negative case's mutation may be that very value: swapping it in would make the case
    # valid, and schemathesis would rightly complain that the service accepted it.
    if not _positive(case):
        return case
    if not _heads(case.operation.label, case.path_parameters, case.query, case.body):
        return case
    # Edited in place, as the values keep their type: schemathesis need not revalidate.
    params = case.path_parameters
    # Never the real file to DELETE: every later case would find it gone.
    if isinstance(params, dict) and case.operation.method.upper() != "DELETE":
        params.update({k: v for k, v in _REAL.items() if v and k in params})
    body = case.body
    if isinstance(body, dict):
        if _REAL["file_id"] and isinstance(body.get("file_id"), str):
            body["file_id"] = _REAL["file_id"]
    return case
