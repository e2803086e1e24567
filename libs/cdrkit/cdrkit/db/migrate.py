"""Per-service Alembic migrations: each service owns its tables and its own version table."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine


def _config(package: str, version_table: str, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(package)))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


# pg_advisory_xact_lock key of schema upgrades ("cdrflow" in ASCII, fits a bigint).
_LOCK_KEY = int.from_bytes(b"cdrflow", "big")


async def migrate(engine: AsyncEngine, package: str, version_table: str) -> None:
    """Upgrade the service's schema to head (``package`` holds its ``env.py`` and ``versions/``)."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_config(package, version_table, connection), "head")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One upgrade at a time across processes (each pod's `cdrflow migrate` init
            # container, a Job, a service with CDRFLOW_AUTO_MIGRATE): the others wait here, then
            # find the schema at head and do nothing. Released with the transaction.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        await conn.run_sync(_upgrade)
