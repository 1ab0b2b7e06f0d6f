"""Schemathesis hooks for tests/test_openapi_schemathesis.py (SCHEMATHESIS_HOOKS names the file).

Two jobs:
- Keep every request on this machine. ``url`` (URL import) and ``webhook_url`` would make
  the service resolve and connect to whatever host schemathesis invents, so just before
  each request (before_call runs in every phase) the host of each URL in the body is
  replaced with 127.0.0.1, which the address policy refuses (400) before any connection;
  scheme, port, path and query stay as generated.
- Reach the success paths. Random ids only ever find 404, so half of the generated
  ``file_id``, ``run_id`` and download ``token`` values are swapped for a real file, a
  completed run and its download that the test created (CONVERTER_ST_FILE_ID,
  CONVERTER_ST_RUN_ID, CONVERTER_ST_TOKEN); this works in the fuzzing phase, where
  hypothesis strategies generate the cases.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis
from hypothesis import strategies as st

_URL_FIELDS = ("url", "webhook_url")
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


def _with_real(values: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The generated values, or the same with the real ids swapped in."""
    real = {k: v for k, v in _REAL.items() if v and k in values}
    if not real:
        return st.just(values)
    return st.sampled_from([values, {**values, **real}])


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
    if isinstance(case.body, dict):
        case.body = {k: _localise(v) if k in _URL_FIELDS else v for k, v in case.body.items()}


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
    """Half the time, the real file or run id in place of a generated one."""
    # Never the real file to DELETE: every later case would find it gone.
    if isinstance(path_parameters, dict) and context.operation.method.upper() != "DELETE":
        return _with_real(path_parameters)
    return st.just(path_parameters)


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Half the time, the real file id in a run request's body."""
    if isinstance(body, dict) and "file_id" in body:
        real = _REAL["file_id"]
        return st.sampled_from([body, {**body, "file_id": real}]) if real else st.just(body)
    return st.just(body)
