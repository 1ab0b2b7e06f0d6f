"""Shared fixtures: the corpus, and real served instances of the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import summaries
from tests.support.served import ServedApp

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, read at run time (never copied into the repo)."""
    if not (CORPUS / "SOURCES.tsv").exists():
        pytest.fail(f"The shared corpus is missing: expected {CORPUS} (../shared/corpus "
                    "beside the repository). These tests need real documents.")
    return CORPUS


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """One real `converter serve` (2 LibreOffice instances) shared by a test session."""
    app = ServedApp(tmp_path_factory.mktemp("served"))
    app.start()
    yield app
    app.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[ServedApp]]:
    """Factory for a dedicated server with its own settings; stopped after the test."""
    started: list[ServedApp] = []

    class _Factory(ServedApp):
        def __init__(self, env: dict[str, str] | None = None, workers: int = 2,
                     http_workers: int = 2) -> None:
            super().__init__(tmp_path / f"served-{len(started)}", env=env, workers=workers,
                             http_workers=http_workers)
            started.append(self)

    yield _Factory
    for app in started:
        app.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show what tests asked to show in CI's output (schemathesis's summary line)."""
    summaries.write(terminalreporter)


from tests.support.moto import moto_authenticated, moto_endpoint  # noqa: E402,F401 - shared fixtures
