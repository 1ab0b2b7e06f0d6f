"""What the CLI commands share: exit codes, usage errors, the client from the environment."""

from __future__ import annotations

from typing import Any

# Documented in the README; scripts branch on them.
OK = 0
USAGE = 2
REFUSED = 3
FAILED = 4
UNREACHABLE = 5


class UsageError(Exception):
    """The command line is wrong (exit code 2); the message says how to fix it."""


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``--option key=value`` pairs as a dict (values stay strings; the server parses them)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option expects key=value (e.g. --option page_range=1-3), "
                             f"got {pair!r}")
        options[key.strip()] = value
    return options
