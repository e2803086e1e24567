"""Real PostgreSQL for tests: a database of our own on 127.0.0.1:5432, created and dropped."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("CDRFLOW_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str = "cdrflow_test") -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL at {ADMIN_DSN} is not usable ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ) from exc
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _create_or_fail() -> str:
    try:
        return create_database()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the test session, dropped afterwards."""
    url = _create_or_fail()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    url = _create_or_fail()
    yield url
    drop_database(url)
