"""The console's calls page at scale: the ``GET /v1/cdrs`` requests it makes (50 a page: the
first page and a deep keyset page, unfiltered, by number, in a 30-day window) on a PostgreSQL
table of ``BENCH_CONSOLE_ROWS`` CDRs (default 10,000,000, as the issue asks), p50/p99 server time
through the parser's whole HTTP stack (in process, no network), against the physical limit
measured in the same run: the raw index read of the same 50 rows with asyncpg (no ORM, no
model, no JSON).

The table is filled with COPY over 12 monthly partitions (``bench_store``'s rows); every 500th
call is from one number, so the number filter has a deep page too. ``BENCH_CONSOLE_SAMPLES``
requests per case (default 100). Run it small on a shared machine:
``BENCH_CONSOLE_ROWS=300000 python -m bench console``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.bench_store import MONTHS, _records, copy_cdrs
from bench.common import report, save
from cdr_parser.repository import CdrRepository
from cdrflow.platform import create_service_app
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.query import encode_cursor
from cdrkit.testing.postgres import create_database, drop_database

ROWS = int(os.environ.get("BENCH_CONSOLE_ROWS", "10000000"))
SAMPLES = int(os.environ.get("BENCH_CONSOLE_SAMPLES", "100"))
PAGE = 50
CHUNK = 500_000
HOT = "1999999"  # the caller of every 500th call
ORDER = "ORDER BY start_time DESC, call_id DESC LIMIT 50"


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    await call()  # warm: plan cache, connection
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def _fill(conn: asyncpg.Connection, now: datetime) -> float:
    copy_s = 0.0
    for start in range(0, ROWS, CHUNK):
        records = _records(min(CHUNK, ROWS - start), now, start, f"c{start // CHUNK:05d}_")
        records = [r if i % 500 else (*r[:5], HOT, *r[6:]) for i, r in enumerate(records)]
        copy_s += await copy_cdrs(conn, records)
    await conn.execute("ANALYZE cdrs")
    await conn.execute("ANALYZE cdr_keys")
    return copy_s


async def _middle(conn: asyncpg.Connection, where: str, *args: Any) -> tuple[datetime, str]:
    """The (start_time, call_id) halfway down the rows matching ``where``: a deep cursor."""
    count = await conn.fetchval(f"SELECT count(*) FROM cdrs WHERE {where}", *args)
    row = await conn.fetchrow(
        f"SELECT start_time, call_id FROM cdrs WHERE {where} "
        f"ORDER BY start_time DESC, call_id DESC OFFSET {count // 2} LIMIT 1",
        *args,
    )
    return row["start_time"], row["call_id"]


async def _run(pg_url: str, data_dir: Path) -> dict[str, Any]:
    now = datetime.now(UTC)
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    await CdrRepository(session_factory(engine), "postgresql").ensure_partitions(
        now - timedelta(days=MONTHS * 31), MONTHS + 1
    )
    await engine.dispose()
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    copy_s = await _fill(conn, now)
    since, until = now - timedelta(days=100), now - timedelta(days=70)
    window = "start_time >= $1 AND start_time < $2"
    deep_all = await _middle(conn, "true")
    deep_hot = await _middle(conn, "caller_number = $1", HOT)
    deep_win = await _middle(conn, window, since, until)
    keyset = "(start_time, call_id) < ($K1, $K2) AND start_time <= $K1"

    def raw(where: str, args: list[Any], after: tuple[datetime, str] | None) -> Any:
        """The limit: the same 50 rows read from the index by asyncpg, nothing else."""
        if after is not None:
            n = len(args)
            where += " AND " + keyset.replace("$K1", f"${n + 1}").replace("$K2", f"${n + 2}")
            args = [*args, *after]
        sql = f"SELECT * FROM cdrs WHERE {where} {ORDER}"
        return lambda: conn.fetch(sql, *args)

    iso = {"since": since.isoformat(), "until": until.isoformat()}
    cases: dict[str, tuple[dict[str, str], Any]] = {}

    def case(name: str, params: dict[str, str], where: str, args: list[Any], after: Any) -> None:
        if after is not None:
            params = {**params, "cursor": encode_cursor([after[0].isoformat(), after[1]])}
        cases[name] = (params, raw(where, args, after))

    case("first page", {}, "true", [], None)
    case("deep page (middle)", {}, "true", [], deep_all)
    case("number, first page", {"number": HOT}, "caller_number = $1", [HOT], None)
    case("number, deep page", {"number": HOT}, "caller_number = $1", [HOT], deep_hot)
    case("30-day window, first page", iso, window, [since, until], None)
    case("30-day window, deep page", iso, window, [since, until], deep_win)

    app = create_service_app(
        "parser", database_url=pg_url, bus_url="memory://bench-console", data_dir=data_dir
    )
    figures: dict[str, Any] = {"rows": ROWS, "copy_rows_per_s": ROWS / copy_s, "cases": {}}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as client,
    ):
        for name, (params, raw_read) in cases.items():
            query = {**params, "limit": str(PAGE)}

            async def page(query: dict[str, str] = query) -> list[str]:
                r = await client.get("/v1/cdrs", params=query)
                assert r.status_code == 200, r.text
                return [c["call_id"] for c in r.json()["items"]]

            # The page is those very rows (a deep page of a small table may hold fewer than 50).
            expected = [r["call_id"] for r in await raw_read()]
            assert expected, name
            assert await page() == expected, name
            served = await _timed(page, SAMPLES)
            limit = await _timed(raw_read, SAMPLES)
            figures["cases"][name] = {
                "page_p50_ms": statistics.median(served) * 1000,
                "page_p99_ms": _pct(served, 0.99),
                "raw_p50_ms": statistics.median(limit) * 1000,
                "raw_p99_ms": _pct(limit, 0.99),
                "p99_ratio": _pct(served, 0.99) / _pct(limit, 0.99),
            }
    await conn.close()
    return figures


def main() -> dict[str, Any]:
    pg_url = create_database("cdrflow_bench_console")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = asyncio.run(_run(pg_url, Path(tmp)))
    finally:
        drop_database(pg_url)
    rows = [
        ("table", f"{figures['rows']:,} CDRs (COPY {figures['copy_rows_per_s']:,.0f} rows/s)"),
        ("page = GET /v1/cdrs?limit=50", "p50 / p99 ms; limit = raw index read, p50 / p99 ms"),
    ]
    for name, c in figures["cases"].items():
        rows.append(
            (
                name,
                f"page {c['page_p50_ms']:6.2f} / {c['page_p99_ms']:6.2f}   "
                f"raw {c['raw_p50_ms']:6.2f} / {c['raw_p99_ms']:6.2f}   "
                f"p99 = {c['p99_ratio']:4.1f}x the limit",
            )
        )
    report("console calls page", rows)
    save("console", figures)
    return figures


if __name__ == "__main__":
    main()
