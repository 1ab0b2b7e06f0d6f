"""A throwaway PostgreSQL database per test, on the server the machine provides."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from converter.db.engine import connect

ADMIN_URL = os.environ.get("CONVERTER_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/test")
# The dialects a metadata test runs on: SQLite (the default) and PostgreSQL (replicas).
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it afterwards."""
    name = f"converter_t_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for this test and is not reachable at "
                    f"{ADMIN_URL} (set CONVERTER_TEST_POSTGRES_URL): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = ADMIN_URL.rsplit("/", 1)[0]
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dialect_engine(dialect: str, directory: Path) -> Iterator[Engine]:
    """An empty database of dialect ("sqlite" in directory, or "postgresql"), schema created."""
    if dialect == "sqlite":
        engine = connect(f"sqlite:///{directory / 'metadata.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with fresh_database() as url:
        engine = connect(url)
        try:
            yield engine
        finally:
            engine.dispose()
