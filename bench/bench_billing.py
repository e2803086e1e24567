"""Billing: charges/s through the consumer (memory bus → PostgreSQL) against a raw PostgreSQL COPY
of the same charge rows; tariff load and longest-prefix lookup with 100,000 prefixes against a
bare dict lookup; bill p99 for a subscriber with 10,000 calls in a month against a bare FastAPI
endpoint answering a body of the same size.

Targets: tariff load < 5 s, lookup < 50 µs.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import func, insert, select

from bench.common import report, save
from cdr_billing.models import charges
from cdr_billing.repository import BillingRepository
from cdr_billing.tariff import Band, Destination, Tariff
from cdrflow.platform import create_service_app
from cdrkit.bus import Record
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.testing.postgres import create_database, drop_database
from cdrmodel import CDR, topics
from cdrmodel.record import Disposition

N_CHARGES = 20_000
N_PREFIXES = 100_000
N_LOOKUPS = 200_000
N_BILL_CALLS = 10_000
N_BILL_REQUESTS = 60


def _cdrs(n: int) -> list[CDR]:
    rng = random.Random(11)
    base = datetime(2024, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        start = base + timedelta(seconds=rng.randrange(28 * 86400))
        out.append(
            CDR(
                call_id=f"bench-{i}",
                source="call.event",
                caller_number=f"11{rng.randrange(10**8, 10**9)}",
                callee_number=f"11{rng.randrange(10**8, 10**9)}",
                start_time=start,
                end_time=start + timedelta(seconds=rng.randrange(1, 3600)),
                disposition=Disposition.ANSWERED,
            )
        )
    return out


async def _consumer(pg_url: str) -> dict[str, float]:
    bus_url = f"memory://bench-billing-{uuid.uuid4().hex}"
    app = create_service_app("billing", database_url=pg_url, bus_url=bus_url, batch_size=1000)
    engine = create_engine(pg_url)
    async with app.router.lifespan_context(app):
        producer = app.state.cdrflow.runtime.bus.producer
        records = [Record(c.to_json(), c.call_id.encode()) for c in _cdrs(N_CHARGES)]
        t0 = time.perf_counter()
        for i in range(0, len(records), 2000):
            await producer.send_many(topics.NORMALIZED, records[i : i + 2000])
        while True:
            async with engine.connect() as conn:
                n = await conn.scalar(select(func.count()).select_from(charges)) or 0
            if n >= N_CHARGES:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(charges))]
    await engine.dispose()
    conn2 = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    await conn2.execute("CREATE TABLE copy_charges (LIKE charges INCLUDING ALL)")
    cols = list(rows[0])
    copy = [tuple(json.dumps(r[c]) if c == "explanation" else r[c] for c in cols) for r in rows]
    t1 = time.perf_counter()
    await conn2.copy_records_to_table("copy_charges", records=copy, columns=cols)
    copy_elapsed = time.perf_counter() - t1
    await conn2.close()
    return {
        "consumer_charges_per_s": N_CHARGES / elapsed,
        "copy_charges_per_s": N_CHARGES / copy_elapsed,
        "consumer_ratio_to_copy": copy_elapsed / elapsed,
    }


async def _tariffs(pg_url: str) -> dict[str, float]:
    rng = random.Random(5)
    prefixes: set[str] = set()
    while len(prefixes) < N_PREFIXES:
        prefixes.add(str(rng.randrange(10**9, 10**10))[: rng.randint(3, 9)])
    dests = [Destination(p, f"dest {p}", {"all": Decimal("0.05")}) for p in sorted(prefixes)]
    t = Tariff(
        name="big",
        version=0,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        currency="BRL",
        timezone="UTC",
        standing_charge=Decimal(0),
        minimum_charge=Decimal(0),
        unit_s=60,
        first_increment_s=60,
        next_increment_s=60,
        rounding="down",
        bands=[Band("all", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00", "00:00")],
        destinations=dests,
    )
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
    repo = BillingRepository(session_factory(engine), "postgresql")
    await repo.insert_tariff(t, datetime.now(UTC))
    t0 = time.perf_counter()
    loaded = next(x for x in await repo.load_tariffs() if x.name == "big")
    load_s = time.perf_counter() - t0
    await engine.dispose()
    pool = sorted(prefixes)
    numbers = [rng.choice(pool) + str(rng.randrange(10**6)) for _ in range(N_LOOKUPS)]
    bare = {p: p for p in prefixes}
    best_lookup = best_bare = float("inf")
    for _ in range(5):  # interleaved, best of 5: the CPU is shared
        t1 = time.perf_counter()
        for n in numbers:
            loaded.lookup(n)
        best_lookup = min(best_lookup, (time.perf_counter() - t1) / N_LOOKUPS)
        t2 = time.perf_counter()
        for n in numbers:
            bare.get(n)
        best_bare = min(best_bare, (time.perf_counter() - t2) / N_LOOKUPS)
    return {
        "tariff_load_s": load_s,
        "lookup_us": best_lookup * 1e6,
        "dict_lookup_us": best_bare * 1e6,
        "lookup_ratio_to_dict": best_bare / best_lookup,
    }


async def _bill(pg_url: str) -> dict[str, float]:
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
    base = datetime(2024, 2, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for i in range(N_BILL_CALLS):
        start = base + timedelta(seconds=i * 240)
        rows.append(
            {
                "call_id": f"bill-{i}",
                "subscriber": "11999990000",
                "outcome": "priced",
                "destination": "1133334444",
                "start_time": start,
                "end_time": start + timedelta(seconds=125),
                "billed_s": 125,
                "amount": Decimal("0.54"),
                "currency": "BRL",
                "tariff_name": "default",
                "tariff_version": 1,
                "explanation": {},
                "rated_at": start,
            }
        )
    async with engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            await conn.execute(insert(charges), rows[i : i + 2000])
    await engine.dispose()

    app = create_service_app("billing", database_url=pg_url, bus_url="memory://bench-bill")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            url = "/v1/bills/11999990000?period=2024-02"
            body = (await client.get(url)).json()
            assert len(body["calls"]) == N_BILL_CALLS, len(body["calls"])
            bill_times = []
            for _ in range(N_BILL_REQUESTS):
                t0 = time.perf_counter()
                r = await client.get(url)
                bill_times.append(time.perf_counter() - t0)
                assert r.status_code == 200
    bare = FastAPI()

    @bare.get("/bill")
    async def _bare() -> JSONResponse:
        return JSONResponse(body)

    transport = httpx.ASGITransport(app=bare)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        bare_times = []
        for _ in range(N_BILL_REQUESTS):
            t0 = time.perf_counter()
            await client.get("/bill")
            bare_times.append(time.perf_counter() - t0)

    def p99(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=100)[98]

    return {
        "bill_p50_ms": statistics.median(bill_times) * 1000,
        "bill_p99_ms": p99(bill_times) * 1000,
        "bare_p99_ms": p99(bare_times) * 1000,
        "bill_ratio_to_bare": p99(bare_times) / p99(bill_times),
    }


def main() -> dict[str, float]:
    figures: dict[str, float] = {}
    for step in (_consumer, _tariffs, _bill):
        pg_url = create_database("cdrflow_bench")
        try:
            figures.update(asyncio.run(step(pg_url)))
        finally:
            drop_database(pg_url)
    report(
        "billing",
        [
            (
                f"cdr.normalized → charges ({N_CHARGES}, memory bus + PG)",
                f"{figures['consumer_charges_per_s']:9.0f} charges/s",
            ),
            (
                "raw PostgreSQL COPY of the rows (limit)",
                f"{figures['copy_charges_per_s']:9.0f} rows/s",
            ),
            ("consumer / COPY", f"{figures['consumer_ratio_to_copy']:.0%}"),
            (
                f"tariff load, {N_PREFIXES} prefixes",
                f"{figures['tariff_load_s']:9.2f} s (target < 5 s)",
            ),
            ("longest-prefix lookup", f"{figures['lookup_us']:9.2f} µs (target < 50 µs)"),
            ("bare dict lookup (limit)", f"{figures['dict_lookup_us']:9.2f} µs"),
            ("lookup / dict", f"{figures['lookup_ratio_to_dict']:.0%}"),
            (
                f"bill, {N_BILL_CALLS} calls: p50 / p99",
                f"{figures['bill_p50_ms']:.1f} / {figures['bill_p99_ms']:.1f} ms",
            ),
            ("bare FastAPI, same body: p99 (limit)", f"{figures['bare_p99_ms']:.1f} ms"),
            ("bill / bare", f"{figures['bill_ratio_to_bare']:.0%}"),
        ],
    )
    save("billing", figures)
    return figures


if __name__ == "__main__":
    main()
