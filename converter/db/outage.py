"""Which database failures are outages (retry later) rather than bugs, as the service's errors.

PostgreSQL stopped, restarting or unreachable, and SQLite locked or on a full disk,
all pass without anyone changing the request: they become 503 ``unavailable`` (or
507 for a full disk) instead of 500. The pool re-connects by itself
(``pool_pre_ping``), so nothing has to be restarted when the database is back.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from converter.diskspace import full_disk, no_space
from converter.errors import ConverterError, Unavailable

# SQLite raises OperationalError for bad SQL too; only these mean "try again later".
_SQLITE_TRANSIENT = ("database is locked", "disk i/o error", "unable to open database file",
                     "database table is locked")


def translate(exc: BaseException) -> ConverterError | None:
    """The service error for a database failure that passes by itself, or None for a bug."""
    if not isinstance(exc, SQLAlchemyError):
        return None
    if no_space(exc):
        return full_disk()
    if _is_outage(exc):
        return Unavailable("The database is unavailable; retry shortly "
                           "(operators: check CONVERTER_DATABASE_URL and the database server)")
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether exc is a database failure that a later retry of the same work may not meet."""
    return translate(exc) is not None


def _is_outage(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, PoolTimeout):
        return True  # every connection busy or failing to open: back off and retry
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    module = type(exc.orig).__module__ if isinstance(exc, DBAPIError) else ""
    if module.startswith("sqlite3"):
        text = str(exc.orig).lower()
        return any(marker in text for marker in _SQLITE_TRANSIENT)
    # psycopg: OperationalError is the connection failing (refused, closed, server
    # shutting down); a bad statement is a ProgrammingError or DataError instead.
    return True
