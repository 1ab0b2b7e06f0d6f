"""Lines a test wants in pytest's closing summary (pytest captures a passing test's output)."""

from __future__ import annotations

import pytest

SUMMARIES = pytest.StashKey[dict[str, list[str]]]()


def add(config: pytest.Config, section: str, lines: list[str]) -> None:
    """Print lines under section in the terminal summary, whether the test passes or fails."""
    config.stash.setdefault(SUMMARIES, {}).setdefault(section, []).extend(lines)


def write(reporter: pytest.TerminalReporter) -> None:
    """Write every section added during the session (from pytest_terminal_summary)."""
    for section, lines in reporter.config.stash.get(SUMMARIES, {}).items():
        reporter.section(section)
        for line in lines:
            reporter.write_line(line)
