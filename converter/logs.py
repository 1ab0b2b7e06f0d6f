"""Logging: one handler on the root logger, one line per event, JSON or text.

gunicorn's own logger, the service's loggers and the engine bridge's forwarded
output all propagate to the root logger, so every line the process writes has
the same shape. ``extra`` fields (request_id, route, key_id, ...) become JSON keys,
or ``key=value`` pairs after the message in text form.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")
_TEXT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
_JSON = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
_RENAME = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def resolve(setting: str, stream: TextIO | None = None) -> str:
    """The format CONVERTER_LOG_FORMAT asks for; empty means text on a terminal, else JSON."""
    if setting:
        return setting
    stream = stream or sys.stderr
    return "text" if stream.isatty() else "json"


class TextFormatter(logging.Formatter):
    """The classic one-line format, with extra fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        """Format the record and append its extra fields."""
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items()
                  if k not in _STANDARD and not k.startswith("_") and v is not None]
        return f"{line} {' '.join(extras)}" if extras else line


def formatter(kind: str) -> logging.Formatter:
    """A formatter for kind ("json" or "text"); used by dictConfig through '()'."""
    made = JsonFormatter(_JSON, rename_fields=_RENAME) if kind == "json" else TextFormatter()
    # ISO-8601 UTC with milliseconds (2026-01-02T03:04:05.678Z), whatever the host's zone.
    made.converter = time.gmtime
    made.default_time_format = "%Y-%m-%dT%H:%M:%S"
    made.default_msec_format = "%s.%03dZ"
    return made


class Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's stderr handler (a class of its own so configure() can find it)."""


_SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def _at_least_info(level: str) -> str:
    value = logging.getLevelName(level.upper())
    return level.upper() if isinstance(value, int) and value >= logging.INFO else "INFO"


def dict_config(level: str, kind: str) -> dict[str, Any]:
    """A logging.config dict: the root handler, with gunicorn's loggers sent through it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"converter": {"()": "converter.logs.formatter", "kind": kind}},
        "handlers": {"converter": {"class": "converter.logs.Handler", "formatter": "converter",
                                   "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["converter"]},
        "loggers": {
            # gunicorn would otherwise write its own format to stderr; propagating
            # to the root handler gives its lines the service's shape.
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
            # The AWS SDK's DEBUG lines carry signed request headers (a connector's access
            # key id) and bodies: never below INFO, whatever CONVERTER_LOG_LEVEL says.
            **{name: {"level": _at_least_info(level)} for name in _SDK_LOGGERS},
        },
    }


def configure(level: str, setting: str) -> None:
    """Install the service's handler on the root logger, unless logging is owned elsewhere."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, Handler)]
    if root.handlers and not ours:
        return  # a host (pytest, an embedding app) configured logging: leave it alone
    logging.config.dictConfig(dict_config(level, resolve(setting)))
