"""A database connection lost in the middle of a batch is a transient error, so the consume loop
retries the batch instead of bisecting it for a poison message (issue 15, sixth round: billing's
and stats' batches talk to asyncpg directly, whose errors SQLAlchemy does not wrap). The errors
are the ones a real server gives when it ends a session under a running statement."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from sqlalchemy import text

from cdrkit.db import create_engine, is_transient
from cdrkit.testing.postgres import terminate_backend


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _ended_under(dsn: str, pid: int, statement: asyncio.Task[str]) -> BaseException:
    """End session ``pid`` from another connection while ``statement`` runs; its error."""
    await asyncio.sleep(0.3)  # the statement is running (pg_sleep)
    await terminate_backend(dsn, pid)
    try:
        await statement
    except Exception as exc:
        return exc
    raise AssertionError("the statement outlived its session")


async def test_a_session_the_server_ends_fails_transiently_on_asyncpg(fresh_pg_url: str) -> None:
    dsn = _dsn(fresh_pg_url)
    conn = await asyncpg.connect(dsn)
    try:
        running = asyncio.create_task(conn.execute("SELECT pg_sleep(10)"))
        error = await _ended_under(dsn, conn.get_server_pid(), running)
        assert is_transient(error), repr(error)
        # The connection is closed now: using it again is refused before any I/O.
        async with asyncio.timeout(5):
            while not conn.is_closed():
                await asyncio.sleep(0.01)
        with pytest.raises(asyncpg.InterfaceError) as closed:
            await conn.execute("SELECT 1")
        assert is_transient(closed.value), repr(closed.value)
    finally:
        conn.terminate()


async def test_a_session_ended_inside_an_engine_transaction_fails_transiently(
    fresh_pg_url: str,
) -> None:
    """The sinks' shape: statements on the driver connection of an engine's connection."""
    engine = create_engine(fresh_pg_url)
    conn = await engine.connect()
    try:
        await conn.execute(text("SELECT 1"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        running = asyncio.create_task(raw.execute("SELECT pg_sleep(10)"))
        error = await _ended_under(_dsn(fresh_pg_url), raw.get_server_pid(), running)
        assert is_transient(error), repr(error)
    finally:
        with contextlib.suppress(Exception):  # the pool's reset of a dead connection
            await conn.close()
        await engine.dispose()


@pytest.mark.parametrize("statement", ["SELECT 1 / 0", "SELECT 'x'::int"])
async def test_bad_data_is_not_transient(fresh_pg_url: str, statement: str) -> None:
    conn = await asyncpg.connect(_dsn(fresh_pg_url))
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute(statement)
        assert not is_transient(caught.value), repr(caught.value)
    finally:
        await conn.close()
