"""``UtcDateTime`` on SQLite: the one-step bind processor stores the very text SQLAlchemy's own
composition (``process_bind_param``, then the SQLite ``DATETIME`` format) stores."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from cdrkit.db import create_engine
from cdrkit.db.types import UtcDateTime


def _random_times(seed: int, count: int = 20_000) -> Iterator[datetime]:
    """Aware datetimes over the whole calendar in fixed, named and odd-offset zones, with and
    without microseconds."""
    rng = random.Random(seed)
    zones = [UTC, ZoneInfo("UTC"), ZoneInfo("America/Sao_Paulo"), ZoneInfo("Asia/Kolkata")]
    for i in range(count):
        zone = (
            timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60)))
            if i % 3 == 1
            else rng.choice(zones)
        )
        yield datetime(
            rng.randrange(2, 9998),
            rng.randrange(1, 13),
            rng.randrange(1, 29),
            rng.randrange(24),
            rng.randrange(60),
            rng.randrange(60),
            rng.choice([0, rng.randrange(10**6)]),
            tzinfo=zone,
        )


def _processors(dialect: Dialect | None = None) -> tuple[object, object]:
    """UtcDateTime's own bind processor for ``dialect`` (SQLite by default) and SQLAlchemy's
    composition it stands for; fails unless the fast path is the one in use."""
    dialect = dialect or sqlite.dialect()  # type: ignore[no-untyped-call]
    impl = UtcDateTime().dialect_impl(dialect)
    fused = impl.bind_processor(dialect)
    composed = TypeDecorator.bind_processor(impl, dialect)  # type: ignore[arg-type]
    assert fused is not None
    assert composed is not None
    assert fused.__qualname__ != composed.__qualname__  # the fast path is in use
    return fused, composed


def test_sqlite_text_is_sqlalchemys_for_any_zone_and_microsecond() -> None:
    fused, composed = _processors()
    for value in _random_times(15):
        assert fused(value) == composed(value), value  # type: ignore[operator]
    assert fused(None) is None  # type: ignore[operator]


def test_sqlite_refuses_a_naive_datetime() -> None:
    fused, _ = _processors()
    with pytest.raises(ValueError, match="naive"):
        fused(datetime(2024, 1, 1))  # type: ignore[operator]


async def test_sqlite_round_trip_reads_back_the_utc_instant(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime)
    )
    local = datetime(2024, 3, 1, 9, 30, 0, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(insert(table), [{"id": 1, "at": local}])
        stored = (await conn.execute(text("SELECT at FROM t"))).scalar_one()
        back = (await conn.execute(select(table.c.at))).scalar_one()
    await engine.dispose()
    assert stored == "2024-03-01 12:30:00.000000"
    assert back == local
    assert back.tzinfo is UTC


# -- PostgreSQL (asyncpg): the one-call bind processor (issue 15, fifth round) ------------------


def _pg_processors() -> tuple[object, object]:
    from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

    return _processors(asyncpg_dialect())  # type: ignore[no-untyped-call]


def test_postgres_binds_the_datetime_sqlalchemys_composition_binds() -> None:
    fused, composed = _pg_processors()
    for value in _random_times(5):
        got, want = fused(value), composed(value)  # type: ignore[operator]
        # The same instant, the same fields, UTC itself as the zone: asyncpg encodes it the same.
        assert got == want, value
        assert got.tzinfo is UTC
        assert want.tzinfo is UTC
        assert (got.isoformat(), got.fold) == (want.isoformat(), want.fold)
    already = datetime(2026, 12, 3, 11, 0, 0, 123456, tzinfo=UTC)
    assert fused(already) is already  # type: ignore[operator]  # not copied
    assert fused(None) is None  # type: ignore[operator]


def test_postgres_refuses_a_naive_datetime_as_before() -> None:
    fused, composed = _pg_processors()
    for process in (fused, composed):
        with pytest.raises(ValueError, match="naive datetime: cdrflow stores timezone-aware"):
            process(datetime(2024, 1, 1))  # type: ignore[operator]


def test_a_pydantic_parsed_time_binds_as_before() -> None:
    from pydantic_core import TzInfo

    fused, composed = _pg_processors()
    value = datetime(2026, 12, 3, 11, 0, 0, 5, tzinfo=TzInfo(0))  # an envelope's received_at
    got, want = fused(value), composed(value)  # type: ignore[operator]
    assert got == want
    assert got.tzinfo is UTC
    assert got.isoformat() == want.isoformat()
