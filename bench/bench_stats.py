"""Stats: consumer CDRs/s and ``GET /v1/buckets`` latency for 24 h x 50 carriers.

- consumer: ``StatsService.handle_batch`` (decode, dedup insert, plugins, aggregation, additive
  upsert, rules, alerts: one PostgreSQL transaction per batch of STATS_BATCH_SIZE) over fresh
  messages, vs. the physical limit measured in the same run: the bare ``json.loads`` + the same
  in-memory aggregation of the same messages with no database, per batch with the cyclic GC
  paused as in ``handle_batch`` (and a bare ``json.loads`` loop);
- query: ``/v1/buckets?group_by=carrier`` over 24 h with 50 carriers (240 buckets, about 12,000
  bucket entries), p50/p99 in process (ASGI), vs. a bare FastAPI endpoint that returns the same
  JSON document from memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bench.common import report, save
from cdr_stats.aggregate import Aggregate
from cdr_stats.call_fields import BUCKET_S, bucket_of, decode_call
from cdr_stats.plugins import PluginSet
from cdr_stats.repository import StatsRepository
from cdr_stats.service import StatsService, gc_paused
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Message
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.settings import load
from cdrkit.testing.postgres import create_database, drop_database
from cdrmodel import topics

CARRIERS = 50
CONSUMER_MESSAGES = 40_000
QUERY_REPEATS = 15
PREFIX_FILE = (
    Path(__file__).resolve().parents[1]
    / "tests/fixtures/stats/ccnq3_six_minutes_alert_prefix_lists.json"
)


def _messages(n: int, rng: random.Random) -> list[Message]:
    now = time.time()
    out = []
    for i in range(n):
        # live traffic: calls that ended in the last two minutes (one or two buckets)
        end = datetime.fromtimestamp(now - rng.uniform(0, 120), UTC)
        billsec = rng.choice([0, 0, rng.randint(1, 600)])
        doc: dict[str, Any] = {
            "schema_version": 1,
            "call_id": str(uuid.uuid4()),
            "source": "freeswitch",
            "leg": "a",
            "direction": "outbound",
            "caller_number": "5511300000000",
            "callee_number": f"1217{rng.randint(1000000, 9999999)}",
            "account": f"acct-{rng.randint(1, 200)}",
            "tenant": f"t{rng.randint(1, 5)}.example",
            "carrier": f"carrier-{rng.randint(1, CARRIERS)}",
            "start_time": (end - timedelta(seconds=billsec + 5)).isoformat(),
            "answer_time": (end - timedelta(seconds=billsec)).isoformat() if billsec else None,
            "end_time": end.isoformat(),
            "duration_s": billsec + 5,
            "billsec_s": billsec,
            "disposition": "answered" if billsec else "no_answer",
            "hangup_cause": "NORMAL_CLEARING" if billsec else "NO_ANSWER",
            "sip_code": 200 if billsec else rng.choice([480, 486, 487]),
            "pdd_ms": rng.randint(50, 3000),
            "codec": "PCMA",
            "extra": {},
        }
        out.append(
            Message(topics.NORMALIZED, 0, i, doc["call_id"].encode(), json.dumps(doc).encode())
        )
    return out


def _limit(messages: list[Message]) -> tuple[float, float]:
    # the same conditions as the consumer: cyclic GC paused per batch
    size = StatsSettings.model_fields["batch_size"].default
    t0 = time.perf_counter()
    for i in range(0, len(messages), size):
        with gc_paused():
            agg = Aggregate()
            for msg in messages[i : i + size]:
                agg.add_call(decode_call(msg.value))
            agg.rows()
    decode_aggregate = len(messages) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with gc_paused():
        for msg in messages:
            json.loads(msg.value)
    bare = len(messages) / (time.perf_counter() - t0)
    return decode_aggregate, bare


async def _consumer(pg_url: str, settings: StatsSettings, messages: list[Message]) -> float:
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_stats.migrations", "alembic_version_stats")
    service = StatsService(
        settings, StatsRepository(session_factory(engine), "postgresql"), PluginSet.load(settings)
    )
    size = settings.batch_size
    await service.handle_batch(messages[:size])  # warm-up (connections, statement cache)
    rest = messages[size:]
    t0 = time.perf_counter()
    for i in range(0, len(rest), size):
        await service.handle_batch(rest[i : i + size])
    rate = len(rest) / (time.perf_counter() - t0)
    await engine.dispose()
    return rate


async def _query(pg_url: str, settings: StatsSettings) -> dict[str, Any]:
    from cdr_stats.app import create_app

    engine = create_engine(pg_url)
    repo = StatsRepository(session_factory(engine), "postgresql")
    rng = random.Random(7)
    now_b = bucket_of(time.time())
    first = now_b - 239 * BUCKET_S
    for start in range(first, now_b + 1, 12 * BUCKET_S):  # 12 buckets (1.2 h) a transaction
        agg = Aggregate()
        for b in range(start, min(start + 12 * BUCKET_S, now_b + 1), BUCKET_S):
            for c in range(1, CARRIERS + 1):
                for _ in range(6):
                    billsec = rng.choice([0, rng.randint(1, 600)])
                    doc = {
                        "call_id": "x",
                        "end_time": datetime.fromtimestamp(
                            b + rng.randint(0, 359), UTC
                        ).isoformat(),
                        "billsec_s": billsec,
                        "duration_s": billsec + 4,
                        "pdd_ms": rng.randint(50, 3000),
                        "disposition": "answered" if billsec else "busy",
                        "hangup_cause": "NORMAL_CLEARING" if billsec else "USER_BUSY",
                        "sip_code": 200 if billsec else 486,
                        "carrier": f"carrier-{c}",
                    }
                    agg.add_call(decode_call(json.dumps(doc)), [("plugin:disposition.x", 1)])
        async with repo.sessions.begin() as session:
            await repo.add_deltas(session, agg.rows(), ["carrier"])
    await engine.dispose()

    app = create_app(settings)
    params = {"since": str(first), "until": str(now_b + BUCKET_S), "group_by": "carrier"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stats") as client:
            full = await _latencies(client, "/v1/buckets", params)
            dash = await _latencies(
                client, "/v1/buckets", {**params, "metric": "attempts,asr,acd,zero_duration_ratio"}
            )
            body = (await client.get("/v1/buckets", params=params)).json()
    bare = FastAPI()

    @bare.get("/v1/buckets")
    async def bare_buckets() -> JSONResponse:
        return JSONResponse(body)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://b") as c:
        limit = await _latencies(c, "/v1/buckets", params)
    return {"entries": len(body["buckets"]), "full": full, "dashboard": dash, "bare": limit}


async def _latencies(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> dict[str, float]:
    times = []
    await client.get(path, params=params)
    for _ in range(QUERY_REPEATS):
        t0 = time.perf_counter()
        r = await client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


def main() -> dict[str, Any]:
    rng = random.Random(1)
    messages = _messages(CONSUMER_MESSAGES, rng)
    limit_rate, bare_rate = _limit(messages)
    figures: dict[str, Any] = {"messages": CONSUMER_MESSAGES, "carriers": CARRIERS}
    with tempfile.TemporaryDirectory() as tmp:
        pg_url = create_database("cdrflow_bench_stats")
        try:
            settings = load(
                StatsSettings,
                database_url=pg_url,
                data_dir=Path(tmp),
                fraud_prefix_file=PREFIX_FILE,
            )
            rate = asyncio.run(_consumer(pg_url, settings, messages))
            query = asyncio.run(_query(pg_url, settings))
        finally:
            drop_database(pg_url)
    figures.update(
        consumer_cdrs_per_s=rate,
        limit_decode_aggregate_per_s=limit_rate,
        limit_bare_json_per_s=bare_rate,
        consumer_ratio_to_limit=rate / limit_rate,
        consumer_target_per_s=20_000,
        query=query,
    )
    q = query
    report(
        "stats",
        [
            (
                f"consumer (PostgreSQL, batch of {settings.batch_size})",
                f"{rate:9.0f} CDRs/s  (target 20,000)",
            ),
            (
                "limit: json.loads + aggregation",
                f"{limit_rate:9.0f} CDRs/s  -> consumer at {rate / limit_rate:.0%}",
            ),
            ("bare json.loads loop", f"{bare_rate:9.0f} msgs/s"),
            (
                f"/v1/buckets 24 h x {CARRIERS} carriers ({q['entries']:,} entries)",
                f"p50 {q['full']['p50_ms']:7.1f} ms  p99 {q['full']['p99_ms']:7.1f} ms",
            ),
            (
                "  same, dashboard's 4 metrics",
                f"p50 {q['dashboard']['p50_ms']:7.1f} ms  p99 {q['dashboard']['p99_ms']:7.1f} ms",
            ),
            (
                "  bare FastAPI, same JSON (limit)",
                f"p50 {q['bare']['p50_ms']:7.1f} ms  p99 {q['bare']['p99_ms']:7.1f} ms  -> "
                f"{q['bare']['p99_ms'] / q['full']['p99_ms']:.0%} of the stats p99",
            ),
        ],
    )
    save("stats", figures)
    return figures


if __name__ == "__main__":
    main()
