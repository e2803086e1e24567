"""Call events: records/s through ``POST /v1/events`` (lists of 100) against a bare FastAPI endpoint
reading the same body in the same run, and the parser's pairing rate (halves/s from consumed
``call.event`` envelopes to paired CDRs in PostgreSQL) against a raw PostgreSQL COPY of the rows
the pairing writes (the halves and the CDRs).

Each server is one uvicorn process; the load generator runs in this process on the other core.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import func, select

from bench.common import bare_and_ingest, cpu_seconds, report, save, server
from bench.loadgen import build_request, run_load
from cdr_parser.models import call_event_halves, cdrs
from cdr_parser.repository import CdrRepository
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrkit.bus import Message, open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.testing.postgres import create_database, drop_database
from cdrmodel import PayloadKind, RawEnvelope, topics

SECONDS = 6.0
CONNECTIONS = 8
PER_POST = 100
N_CALLS = 10_000  # pairing: 20,000 halves, shuffled, in batches of BATCH
BATCH = 500


def _halves(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t0 = base + timedelta(seconds=rng.randrange(86400 * 28))
        call_id = f"{seed}-{i}"
        out.append(
            {
                "id": f"s{call_id}",
                "type": "start",
                "timestamp": t0.isoformat(),
                "call_id": call_id,
                "source": f"11{rng.randrange(10**9):09d}",
                "destination": f"21{rng.randrange(10**8):08d}",
            }
        )
        out.append(
            {
                "id": f"e{call_id}",
                "type": "end",
                "timestamp": (t0 + timedelta(seconds=rng.randrange(3600))).isoformat(),
                "call_id": call_id,
            }
        )
    rng.shuffle(out)
    return out


def _requests() -> list[bytes]:
    halves = _halves(2000, 1)
    return [
        build_request(
            "/v1/events", json.dumps(halves[i : i + PER_POST]).encode(), "application/json"
        )
        for i in range(0, len(halves), PER_POST)
    ]


def _measure(
    args: list[str], port: int, reqs: list[bytes], env: dict[str, str]
) -> dict[str, float]:
    with server(args, port, env) as proc:
        # The load generator counts any answer but 200 as an error; this route answers 202, so
        # the answers are checked here, before and after the load.
        body = reqs[0].split(b"\r\n\r\n", 1)[1]
        url = f"http://127.0.0.1:{port}/v1/events"
        headers = {"content-type": "application/json"}
        check = httpx.post(url, content=body, headers=headers, timeout=10)
        assert check.status_code == 202, check.text
        asyncio.run(run_load("127.0.0.1", port, reqs[:5], seconds=1.0, connections=4))  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        res = asyncio.run(
            run_load("127.0.0.1", port, reqs, seconds=SECONDS, connections=CONNECTIONS)
        )
        cpu = cpu_seconds(proc.pid) - cpu0
        check = httpx.post(url, content=body, headers=headers, timeout=10)
        assert check.status_code == 202, check.text
    return {
        "records_per_s": res.rps * PER_POST,
        "posts_per_s": res.rps,
        "p50_ms": res.pct(50),
        "p99_ms": res.pct(99),
        "cpu_us_per_record": cpu / max(res.requests * PER_POST, 1) * 1e6,
    }


def http_figures() -> dict[str, float]:
    reqs = _requests()
    bare, results = bare_and_ingest(lambda args, port, env: _measure(args, port, reqs, env))
    figures = {f"bare_{k}": v for k, v in bare.items()}
    for label, res in results.items():
        figures.update({f"{label}_{k}": v for k, v in res.items()})
        figures[f"{label}_ratio_to_bare"] = res["records_per_s"] / bare["records_per_s"]
    return figures


async def _pairing(pg_url: str) -> dict[str, float]:
    engine = create_engine(pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    bus = open_bus(f"memory://{uuid.uuid4().hex}")  # the bus is not what is measured here
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    settings = ParserSettings(database_url=pg_url, bus_url="memory://")
    service = ParserService(
        settings, CdrRepository(session_factory(engine), "postgresql"), bus.producer
    )
    now = datetime.now(UTC)
    msgs = []
    for offset, rec in enumerate(_halves(N_CALLS, 2)):
        env = RawEnvelope(
            id=uuid.uuid4().hex,
            kind=PayloadKind.CALL_EVENT,
            received_at=now,
            content_type="application/json",
            call_id=rec["call_id"],
            payload=json.dumps(rec),
        )
        msgs.append(Message(topics.RAW, 0, offset, rec["call_id"].encode(), env.to_json()))
    t0 = time.perf_counter()
    for i in range(0, len(msgs), BATCH):
        await service.handle_batch(msgs[i : i + BATCH])
    elapsed = time.perf_counter() - t0
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(cdrs))
        halves = (await conn.execute(select(call_event_halves))).all()
        cdr_rows = (await conn.execute(select(cdrs))).all()
    assert stored == N_CALLS, f"{stored} CDRs, expected {N_CALLS}"
    await bus.close()
    await engine.dispose()

    # The limit: COPY the same halves and CDR rows into tables of the same shape.
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    await conn.execute("CREATE TABLE copy_halves (LIKE call_event_halves INCLUDING ALL)")
    await conn.execute("CREATE TABLE copy_cdrs (LIKE cdrs INCLUDING ALL)")
    h_cols, c_cols = list(halves[0]._mapping), list(cdr_rows[0]._mapping)
    h_recs = [tuple(r) for r in halves]
    c_recs = [
        tuple(json.dumps(v) if k == "extra" else v for k, v in r._mapping.items()) for r in cdr_rows
    ]
    t1 = time.perf_counter()
    await conn.copy_records_to_table("copy_halves", records=h_recs, columns=h_cols)
    await conn.copy_records_to_table("copy_cdrs", records=c_recs, columns=c_cols)
    copy_elapsed = time.perf_counter() - t1
    await conn.close()
    return {
        "pairing_halves_per_s": 2 * N_CALLS / elapsed,
        "pairing_calls_per_s": N_CALLS / elapsed,
        "copy_halves_per_s": 2 * N_CALLS / copy_elapsed,
        "pairing_ratio_to_copy": copy_elapsed / elapsed,
    }


def main() -> dict[str, float]:
    figures = http_figures()
    pg_url = create_database("cdrflow_bench")
    try:
        figures.update(asyncio.run(_pairing(pg_url)))
    finally:
        drop_database(pg_url)

    def line(lbl: str) -> str:
        return (
            f"{figures[lbl + '_records_per_s']:8.0f} records/s  "
            f"p50 {figures[lbl + '_p50_ms']:.2f} ms  p99 {figures[lbl + '_p99_ms']:.2f} ms  "
            f"server CPU {figures[lbl + '_cpu_us_per_record']:.0f} µs/record"
        )

    report(
        f"events: POST /v1/events, lists of {PER_POST}, {CONNECTIONS} connections, "
        f"{SECONDS:.0f} s, 1 uvicorn process; pairing {2 * N_CALLS} shuffled halves on PostgreSQL",
        [
            ("bare FastAPI (limit)", line("bare")),
            *[
                (
                    f"ingest → {lbl} bus",
                    f"{line(lbl)}  = {figures[lbl + '_ratio_to_bare']:.0%} of bare",
                )
                for lbl in ("kafka", "memory")
            ],
            (
                f"parser pairing (batches of {BATCH})",
                f"{figures['pairing_halves_per_s']:8.0f} halves/s "
                f"({figures['pairing_calls_per_s']:.0f} calls/s)",
            ),
            (
                "raw PostgreSQL COPY of its rows (limit)",
                f"{figures['copy_halves_per_s']:8.0f} halves/s",
            ),
            ("pairing / COPY", f"{figures['pairing_ratio_to_copy']:.0%}"),
        ],
    )
    save("events", figures)
    return figures


if __name__ == "__main__":
    main()
