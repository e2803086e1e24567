"""Billing's 0002 on a database made before it: the rules column and the keyset index appear, and
a tariff version stored before keeps its meaning (a band across midnight runs into the next day,
no on-net rule)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from cdr_billing.repository import BillingRepository
from cdr_billing.tariff import check_week_cover
from cdrkit.db import create_engine, migrate, session_factory

VERSION_TABLE = "alembic_version_billing"


async def test_0002_upgrades_a_0001_database(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_billing.migrations", VERSION_TABLE)
    async with engine.begin() as conn:  # back to what 0001 made before 0002 existed
        await conn.execute(text("ALTER TABLE tariffs DROP COLUMN rules"))
        await conn.execute(text("DROP INDEX ix_charges_subscriber_end_time_call_id"))
        await conn.execute(
            text("CREATE INDEX ix_charges_subscriber_end_time ON charges (subscriber, end_time)")
        )
        await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
        bands = [
            {
                "name": "day",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "08:00",
                "end": "18:00",
            },
            {
                "name": "night",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "18:00",
                "end": "08:00",
            },
            {"name": "weekend", "days": ["sat"], "start": "08:00", "end": "24:00"},
            {"name": "weekend", "days": ["sun"], "start": "00:00", "end": "24:00"},
            {"name": "weekend", "days": ["mon"], "start": "00:00", "end": "08:00"},
        ]
        await conn.execute(
            text(
                "INSERT INTO tariffs (name, version, effective_from, currency, timezone, "
                "standing_charge, minimum_charge, unit_s, first_increment_s, next_increment_s, "
                "rounding, bands, created_at) VALUES ('old', 1, :t, 'BRL', 'UTC', 0, 0, 60, 60, "
                "60, 'down', :bands, :t)"
            ),
            {"t": datetime(2020, 1, 1, tzinfo=UTC), "bands": json.dumps(bands)},
        )
    await migrate(engine, "cdr_billing.migrations", VERSION_TABLE)
    async with engine.connect() as conn:
        version = await conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
        indexes = set(
            (
                await conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'charges'")
                )
            ).scalars()
        )
    assert version == "0002"
    assert "ix_charges_subscriber_end_time_call_id" in indexes
    assert "ix_charges_subscriber_end_time" not in indexes
    [old] = [
        t
        for t in await BillingRepository(session_factory(engine), "postgresql").load_tariffs()
        if t.name == "old"
    ]
    await engine.dispose()
    assert old.overnight == "next_day"  # Friday 18:00 → Saturday 08:00, as when it was stored
    assert (old.extension_ranges, old.free_prefixes) == ((), ())
    check_week_cover(old.bands, old.overnight)  # still covers the week once, read its own way
