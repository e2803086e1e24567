"""Per-service Alembic migrations: each service owns its tables and its own version table."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def _config(package: str, version_table: str, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(package)))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


async def migrate(engine: AsyncEngine, package: str, version_table: str) -> None:
    """Upgrade the service's schema to head (``package`` holds its ``env.py`` and ``versions/``)."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_config(package, version_table, connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
