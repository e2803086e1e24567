"""Schema upgrades serialise on a PostgreSQL advisory lock: pods starting together (each with a
`cdrflow migrate` init container) never race through the same Alembic upgrade."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from cdrkit.db import create_engine, migrate


async def test_concurrent_upgrades_of_one_schema_all_succeed(fresh_pg_url: str) -> None:
    engines = [create_engine(fresh_pg_url) for _ in range(4)]
    try:
        # Without the lock the upgrades block each other (seen: no progress in 200 s).
        async with asyncio.timeout(60):
            await asyncio.gather(
                *(migrate(e, "cdr_billing.migrations", "alembic_version_billing") for e in engines)
            )
        async with engines[0].connect() as conn:
            versions = (
                await conn.execute(text("SELECT version_num FROM alembic_version_billing"))
            ).all()
        assert len(versions) == 1
    finally:
        for e in engines:
            await e.dispose()
