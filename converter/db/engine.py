"""Database connection: one SQLAlchemy engine, tuned per dialect, schema created on start."""

from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import OperationalError

from converter.db.schema import metadata
from converter.errors import ConfigError


def utcnow() -> datetime:
    """Timezone-aware now in UTC (stored as such on both dialects)."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; treat them as the UTC they were stored as."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


_seq_lock = threading.Lock()
_seq_counter = itertools.count()


def next_seq() -> int:
    """A monotonically increasing ordering key (microseconds plus a per-process counter)."""
    with _seq_lock:
        return time.time_ns() // 1000 * 1000 + next(_seq_counter) % 1000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers proceed while a writer commits; busy_timeout makes the
    # rare concurrent writers wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def connect(url: str) -> Engine:
    """Create the engine for url and make sure the schema exists."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10},
                               pool_size=64, max_overflow=64)
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)
    else:
        raise ConfigError(
            f"CONVERTER_DATABASE_URL uses {parsed.get_backend_name()!r}; "
            "supported: sqlite:///path or postgresql://user@host/db")
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Several replicas may start at once; one creates the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4711003)")
            metadata.create_all(conn)
            add_missing_columns(conn)
            add_missing_indexes(conn)
    except OperationalError as exc:
        raise ConfigError(
            f"Cannot reach the database at CONVERTER_DATABASE_URL "
            f"({parsed.render_as_string(hide_password=True)}): {exc.orig}") from None
    return engine


def add_missing_columns(conn: Connection) -> None:
    """Add columns that newer releases declare to tables an older release created.

    create_all makes missing tables only. Every column added after a release is
    nullable, so ALTER TABLE ... ADD COLUMN is enough on both dialects and keeps
    every row that is already stored.
    """
    found = inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise ConfigError(f"table {table.name} lacks the required column "
                                  f"{column.name}; it cannot be added to existing rows")
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(
                f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')


def add_missing_indexes(conn: Connection) -> None:
    """Create indexes that newer releases declare on tables an older release created."""
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def process_tag() -> str:
    """Identifies this process as a lease owner (host:pid)."""
    return f"{os.uname().nodename}:{os.getpid()}"
