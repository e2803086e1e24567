"""A pooled PostgreSQL connection the server closed is replaced at checkout, and one in steady use
costs no round trip there (``cdrkit.db.engine._check_on_checkout``, instead of SQLAlchemy's
``pool_pre_ping``).

The database is a private cluster of this test's own (``PrivateCluster``), never the machine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cdrkit.db import create_engine
from cdrkit.testing.postgres import PrivateCluster, terminate_backend


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    with PrivateCluster() as cluster:
        yield cluster


async def _backend_pid(engine: object) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


@pytest.mark.integration
async def test_a_restarted_server_costs_no_request(private_pg: PrivateCluster) -> None:
    url = await asyncio.to_thread(private_pg.create_database, "checkout")
    engine = create_engine(url, pool_size=1)
    try:
        before = await _backend_pid(engine)  # pooled now
        await asyncio.to_thread(private_pg.restart)
        await asyncio.sleep(0.2)  # the loop sees the server's close
        # The first request after the restart succeeds, on a fresh connection.
        assert await _backend_pid(engine) != before
    finally:
        await engine.dispose()


@pytest.mark.integration
async def test_a_terminated_backend_is_replaced(private_pg: PrivateCluster) -> None:
    url = await asyncio.to_thread(private_pg.create_database, "checkout")
    engine = create_engine(url, pool_size=1)
    try:
        before = await _backend_pid(engine)
        await terminate_backend(private_pg.admin_dsn("checkout"), before)
        await asyncio.sleep(0.2)
        assert await _backend_pid(engine) != before
    finally:
        await engine.dispose()


@pytest.mark.integration
async def test_checkout_sends_nothing(private_pg: PrivateCluster) -> None:
    """A checkout of a live pooled connection makes no round trip (pre-ping made three: BEGIN,
    an empty query, ROLLBACK): the connection sends only the statements run."""
    url = await asyncio.to_thread(private_pg.create_database, "checkout")
    engine = create_engine(url, pool_size=1)
    sent: list[str] = []
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            raw.driver_connection.add_query_logger(lambda q: sent.append(q.query))
        for _ in range(5):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        # Each checkout: its statement's transaction (BEGIN, the statement, ROLLBACK at
        # checkin) and nothing else.
        assert sent.count(";") == 0, sent
        assert len(sent) <= 15, sent
    finally:
        await engine.dispose()
