"""Database plumbing: engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), portable types,
idempotent inserts, and per-service Alembic migrations."""

from cdrkit.db.arrays import ColumnArrays, driver_connection, sqlite_values
from cdrkit.db.engine import create_engine, dumps_json, is_transient, ping, session_factory
from cdrkit.db.migrate import migrate
from cdrkit.db.types import UtcDateTime, insert_ignore

__all__ = [
    "ColumnArrays",
    "UtcDateTime",
    "create_engine",
    "driver_connection",
    "dumps_json",
    "insert_ignore",
    "is_transient",
    "migrate",
    "ping",
    "session_factory",
    "sqlite_values",
]
