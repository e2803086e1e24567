"""CDR store at scale: ``GET /v1/cdrs`` pages on a partitioned table of ~2 M rows, and the
idempotent ``store_batch`` against the physical limit, a raw PostgreSQL COPY into the same tables.

The table is filled with COPY (its rate is the limit reported), spread over 12 monthly partitions;
then the listing query the API runs (``CdrRepository.list``) is timed for the first page and for
a deep keyset page, with and without filters. ``BENCH_STORE_ROWS`` changes the row count.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from bench.common import report, save
from cdr_parser.models import cdrs
from cdr_parser.repository import CdrFilter, CdrRepository
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.testing.postgres import create_database, drop_database

ROWS = int(os.environ.get("BENCH_STORE_ROWS", "2000000"))
MONTHS = 12
STORE_ROWS = 20_000
COPY_COLUMNS = [
    "call_id",
    "schema_version",
    "source",
    "start_time",
    "account",
    "caller_number",
    "callee_number",
    "disposition",
    "billsec_s",
    "extra",
    "stored_at",
]
DISPOSITIONS = ["answered"] * 6 + ["no_answer", "busy", "failed", "cancelled"]


def _records(n: int, now: datetime, seed: int, prefix: str) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    span = MONTHS * 30 * 86400
    accounts = [f"acct{i:04d}" for i in range(2000)]
    out = []
    for i in range(n):
        start = now - timedelta(seconds=rng.randrange(span))
        out.append(
            (
                f"{prefix}{i:09d}",
                1,
                "freeswitch",
                start,
                rng.choice(accounts),
                f"1{rng.randrange(200_000):06d}",
                f"2{rng.randrange(200_000):06d}",
                DISPOSITIONS[rng.randrange(len(DISPOSITIONS))],
                rng.randrange(600),
                "{}",
                now,
            )
        )
    return out


async def copy_cdrs(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> float:
    """COPY ``records`` (``COPY_COLUMNS``) into cdrs and their keys into cdr_keys; seconds."""
    t0 = time.perf_counter()
    for i in range(0, len(records), 200_000):
        chunk = records[i : i + 200_000]
        await conn.copy_records_to_table("cdrs", records=chunk, columns=COPY_COLUMNS)
        await conn.copy_records_to_table(
            "cdr_keys", records=[(r[0], r[3]) for r in chunk], columns=["call_id", "start_time"]
        )
    return time.perf_counter() - t0


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _run(pg_url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    repo = CdrRepository(session_factory(engine), "postgresql")
    await repo.ensure_partitions(now - timedelta(days=MONTHS * 31), MONTHS + 1)

    records = _records(ROWS, now, 1, "c")
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    copy_s = await copy_cdrs(conn, records)
    await conn.execute("ANALYZE cdrs")
    await conn.execute("ANALYZE cdr_keys")
    partitions = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'cdrs'::regclass"
    )
    await conn.close()

    ordered = sorted(records, key=lambda r: (r[3], r[0]), reverse=True)
    deep = (ordered[ROWS // 2][3], ordered[ROWS // 2][0])  # the middle of the table
    sample = records[12345]
    window = CdrFilter(since=now - timedelta(days=100), until=now - timedelta(days=70))
    cases: dict[str, tuple[CdrFilter, tuple[datetime, str] | None]] = {
        "first page": (CdrFilter(), None),
        "deep page (middle)": (CdrFilter(), deep),
        "account, first page": (CdrFilter(account=sample[4]), None),
        "account, deep page": (CdrFilter(account=sample[4]), deep),
        "number (caller or callee)": (CdrFilter(number=sample[5]), None),
        "disposition=failed, deep": (CdrFilter(disposition="failed"), deep),
        "since/until 30 days": (window, None),
        "since/until + account": (
            CdrFilter(since=window.since, until=window.until, account=sample[4]),
            None,
        ),
    }
    timings: dict[str, float] = {}
    for name, (flt, after) in cases.items():
        samples = []
        for _ in range(15):
            t = time.perf_counter()
            await repo.list(flt, after=after, limit=100)
            samples.append(time.perf_counter() - t)
        timings[name] = _ms(samples)
    t = time.perf_counter()
    for _ in range(50):
        await repo.get(records[random.randrange(ROWS)][0])
    get_ms = (time.perf_counter() - t) / 50 * 1000

    # store_batch (claim the call id in cdr_keys, insert the new rows) on top of the big table.
    fresh = _records(STORE_ROWS, now, 2, "s")
    rows = [{c.name: None for c in cdrs.c} | dict(zip(COPY_COLUMNS, r, strict=True)) for r in fresh]
    for row in rows:
        row["extra"] = {}
    t = time.perf_counter()
    for i in range(0, STORE_ROWS, 1000):
        await repo.store_batch(rows[i : i + 1000], [], [])
    store_s = time.perf_counter() - t
    async with engine.connect() as c:
        total = await c.scalar(text("SELECT count(*) FROM cdrs"))
    await engine.dispose()
    assert total == ROWS + STORE_ROWS
    return {
        "rows": ROWS,
        "partitions": partitions,
        "copy_rows_per_s": ROWS / copy_s,
        "store_batch_rows_per_s": STORE_ROWS / store_s,
        "store_ratio_to_copy": (STORE_ROWS / store_s) / (ROWS / copy_s),
        "get_by_call_id_ms": get_ms,
        "list_ms": timings,
    }


def main() -> dict[str, Any]:
    pg_url = create_database("cdrflow_bench_store")
    try:
        figures = asyncio.run(_run(pg_url))
    finally:
        drop_database(pg_url)
    rows = [
        ("table", f"{figures['rows']:,} CDRs in {figures['partitions']} partitions"),
        ("COPY into cdrs + cdr_keys (limit)", f"{figures['copy_rows_per_s']:9.0f} rows/s"),
        (
            "store_batch (1000/batch, idempotent)",
            f"{figures['store_batch_rows_per_s']:9.0f} rows/s  = "
            f"{figures['store_ratio_to_copy']:.0%} of COPY",
        ),
        ("GET /v1/cdrs/{id} query", f"{figures['get_by_call_id_ms']:7.2f} ms"),
    ]
    rows += [(f"list 100: {k}", f"{v:7.2f} ms") for k, v in figures["list_ms"].items()]
    report("store", rows)
    save("store", figures)
    return figures


if __name__ == "__main__":
    main()
