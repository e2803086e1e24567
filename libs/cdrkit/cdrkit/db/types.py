from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

# SQLAlchemy's SQLite DATETIME storage format, positionally.
_SQLITE_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


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

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, ``process_bind_param`` and the SQLite ``DATETIME`` text in one step: the
        same text (``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, SQLAlchemy's default storage format)
        without the intermediate naive datetime and the dict of fields per value, which cost
        the sinks' inserts more than the rest of their rows (docs/performance.md, fourth round)."""
        impl = self.impl_instance.dialect_impl(dialect)
        if dialect.name != "sqlite":
            return self._aware_processor(dialect, impl)
        if (
            type(impl) is not SQLITE_DATETIME
            or impl._storage_format != SQLITE_DATETIME._storage_format
        ):
            return super().bind_processor(dialect)

        text = _SQLITE_TEXT

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            zone = value.tzinfo
            if zone is None:
                raise ValueError("naive datetime: cdrflow stores timezone-aware UTC times only")
            if zone is not UTC:
                value = value.astimezone(UTC)
            return text % (
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )

        return process

    def _aware_processor(self, dialect: Dialect, impl: Any) -> Callable[[Any], Any] | None:
        """Elsewhere (PostgreSQL), ``process_bind_param`` in one call: a time already in UTC (all
        of cdrflow's but a parsed envelope's) is passed as it is instead of copied by
        ``astimezone`` behind two wrapper calls: 0.22-0.42 -> 0.12-0.24 µs a value (the parser's
        store binds 7 a CDR, billing's 7; issue 15, fifth round). The driver gets an equal aware
        datetime in UTC either way (``tests/cdrkit/test_db_types.py``)."""
        then = impl.bind_processor(dialect)
        if then is not None:  # a driver type with its own conversion: keep the general path
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            zone = value.tzinfo
            if zone is UTC:
                return value
            if zone is None:
                raise ValueError("naive datetime: cdrflow stores timezone-aware UTC times only")
            return value.astimezone(UTC)

        return process

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
