"""``cdrflow rerate``: price the calls that have no charge yet, outside the running service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdr_billing.repository import BillingRepository
from cdr_billing.service import BillingService
from cdr_billing.settings import BillingSettings
from cdrkit.bus import open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrmodel import topics


async def rerate(settings: BillingSettings, since: datetime, until: datetime) -> dict[str, Any]:
    """Price the unpriced calls that started in ``[since, until)`` with today's tariffs, publish
    their ``cdr.rated``; calls that have a charge are never changed."""
    engine = create_engine(settings.effective_database_url)
    bus = open_bus(settings.bus_url, sasl_password=settings.bus_password)
    try:
        if settings.auto_migrate:
            await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
        await bus.start()
        await bus.ensure_topics([topics.RATED])
        repo = BillingRepository(session_factory(engine), engine.dialect.name)
        service = BillingService(settings, repo, bus.producer)
        await service.ensure_default_tariff()
        counts = await service.rerate(since, until)
    finally:
        await bus.close()
        await engine.dispose()
    return {"since": since.isoformat(), "until": until.isoformat(), **counts}
