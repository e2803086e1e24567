"""Many rows as one statement: a table's columns bound as arrays (PostgreSQL ``unnest``).

SQLAlchemy's executemany processes its parameters row by row in Python, which cost the sinks more
per row than the database did (issue 15). ``ColumnArrays`` binds a batch as one array per column
instead, every value passed through the column's own bind processor first (UTC datetimes, money,
JSON: stored exactly as an ORM insert stores them), and gives the ``unnest`` clause that turns the
arrays back into rows. The statement text depends only on the table, so the driver prepares it
once per connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Column, Numeric, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeDecorator

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _array_element(column: Column[Any]) -> str:
    """The column's PostgreSQL type as an array element. Strings travel as TEXT and numbers as
    NUMERIC, unconstrained: a cast to VARCHAR(n) would cut an over-long value and NUMERIC(p, s)
    round one, where the insert into the column itself refuses it. JSON travels as its text
    (cast back in the select list)."""
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, JSON | String):
        return "TEXT"
    if isinstance(kind, Numeric) and kind.asdecimal:
        return "NUMERIC"
    return str(kind.compile(dialect=_PG))


class ColumnArrays:
    """The columns of ``table`` as statement arguments of one array each."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.names = [c.name for c in table.columns]
        self._processors: tuple[Dialect, list[Callable[[Any], Any] | None]] | None = None

    def unnest(self, first: int) -> tuple[str, str]:
        """``unnest(CAST($first AS t1[]), …) AS u(c1, …)`` (arguments ``$first`` onwards, in
        column order) and the select list that makes it the table's row."""
        arrays = ", ".join(
            f"CAST(${first + i} AS {_array_element(c)}[])" for i, c in enumerate(self.table.c)
        )
        picks = ", ".join(
            f"u.{c.name}::json" if isinstance(c.type, JSON) else f"u.{c.name}" for c in self.table.c
        )
        return f"unnest({arrays}) AS u({', '.join(self.names)})", picks

    def _bound(self, dialect: Dialect) -> list[tuple[str, Callable[[Any], Any] | None]]:
        """Each column's name and its bind processor for ``dialect`` (None: taken as it is)."""
        if self._processors is None or self._processors[0] is not dialect:
            self._processors = (
                dialect,
                [c.type.dialect_impl(dialect).bind_processor(dialect) for c in self.table.c],
            )
        return list(zip(self.names, self._processors[1], strict=True))

    def rows(self, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        """Each row's values in column order, through the columns' bind processors for
        ``dialect`` (the engine's own: its JSON serializer, its driver)."""
        processors = self._bound(dialect)
        out: list[list[Any]] = []
        for row in rows:
            values = []
            for name, process in processors:
                value = row.get(name)
                values.append(value if process is None or value is None else process(value))
            out.append(values)
        return out

    def arrays(self, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        """The bound values of ``rows`` as one list per column (``unnest``'s arguments): what
        ``rows`` gives, transposed. Built a column at a time (one comprehension per column, and
        a second only for a column with a bind processor) rather than as rows then transposed:
        ~0.5-1 µs less a row of the parser's and billing's tables (issue 15, fifth round;
        ``tests/cdrkit/test_db_json.py`` holds it to the transposed rows)."""
        out: list[list[Any]] = []
        for name, process in self._bound(dialect):
            column = [row.get(name) for row in rows]
            if process is not None:
                column = [None if value is None else process(value) for value in column]
            out.append(column)
        return out


async def driver_connection(session: AsyncSession) -> Any:
    """The DBAPI driver's own connection under ``session`` (asyncpg's on PostgreSQL), in the
    session's transaction: for statements sent as they are."""
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection


# SQLite's default SQLITE_MAX_VARIABLE_NUMBER (3.32 and later).
SQLITE_MAX_VARIABLES = 32766
_values_texts: dict[tuple[str, int, int], str] = {}


async def sqlite_values(
    conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]], *, max_rows: int | None = None
) -> list[Any]:
    """SQLite, which has no arrays: ``sql`` with one ``(?, …)`` tuple per row where its
    ``{values}`` stands, run over ``rows`` in chunks (at most ``max_rows`` rows, and as many as
    the bound-variable limit allows); every row the statements return (none for a statement
    without RETURNING). A text is built once per chunk size."""
    if not rows:
        return []
    width = len(rows[0])
    per = min(max_rows or SQLITE_MAX_VARIABLES, SQLITE_MAX_VARIABLES // width)
    out: list[Any] = []
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        key = (sql, width, len(chunk))
        text = _values_texts.get(key)
        if text is None:
            one = "(" + ", ".join("?" * width) + ")"
            text = sql.format(values=", ".join([one] * len(chunk)))
            if len(_values_texts) < 1024:
                _values_texts[key] = text
        params: list[Any] = []
        for row in chunk:
            params += row
        result = await conn.exec_driver_sql(text, tuple(params))
        if result.returns_rows:
            out.extend(result.all())
    return out
