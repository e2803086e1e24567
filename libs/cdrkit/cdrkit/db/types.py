from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: cdrflow stores timezone-aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_ignore(table: Table, dialect_name: str, index_elements: list[str]) -> Insert:
    """``INSERT … ON CONFLICT (keys) DO NOTHING`` for the engine's dialect: idempotent sinks."""
    stmt: Any
    if dialect_name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    elif dialect_name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    else:
        raise NotImplementedError(f"no idempotent insert for dialect {dialect_name}")
    return stmt  # type: ignore[no-any-return]
