"""The body of every service's Alembic ``env.py``: run migrations on the connection we hand in."""

from __future__ import annotations

from alembic import context


def run() -> None:
    cfg = context.config
    connection = cfg.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=cfg.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
