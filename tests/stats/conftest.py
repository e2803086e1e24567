from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from cdr_parser.freeswitch import map_json, map_xml, parse_json, parse_xml
from cdr_stats.app import create_app
from cdr_stats.call_fields import BUCKET_S, bucket_of
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Record
from cdrkit.settings import load
from cdrmodel import CDR, topics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FREESWITCH = FIXTURES / "freeswitch"
PREFIX_FILE = FIXTURES / "stats" / "ccnq3_six_minutes_alert_prefix_lists.json"


def real_cdrs() -> dict[str, CDR]:
    """Every real FreeSWITCH fixture mapped by the parser's own mapper."""
    out = {}
    for path in sorted(FREESWITCH.glob("freeswitch_*")):
        if path.name.endswith(".txt"):
            continue
        data = path.read_bytes()
        out[path.name] = (
            map_json(parse_json(data)) if path.suffix == ".json" else map_xml(parse_xml(data))
        )
    return out


def recent_bucket(back: int = 2) -> int:
    """The start of the bucket ``back`` buckets before the current one."""
    return bucket_of(time.time()) - back * BUCKET_S


def make_cdr(
    end_epoch: float,
    *,
    call_id: str | None = None,
    carrier: str | None = "carrier-a",
    billsec: int = 30,
    sip_code: int | None = 200,
    callee: str = "12177210123",  # on no fraud prefix list
    account: str | None = "acct-1",
    **fields: Any,
) -> CDR:
    end = datetime.fromtimestamp(end_epoch, UTC)
    duration = billsec + 3
    answered = billsec > 0
    return CDR(
        call_id=call_id or uuid.uuid4().hex,
        source="freeswitch",
        direction="outbound",
        caller_number="5511300000000",
        callee_number=callee,
        account=account,
        tenant="t.example",
        carrier=carrier,
        start_time=end - timedelta(seconds=duration),
        answer_time=end - timedelta(seconds=billsec) if answered else None,
        end_time=end,
        duration_s=duration,
        billsec_s=billsec,
        disposition="answered" if answered else "failed",
        hangup_cause="NORMAL_CLEARING" if answered else "NO_ROUTE_DESTINATION",
        sip_code=sip_code,
        pdd_ms=120,
        **fields,
    )


def stats_settings(db_url: str, bus: str, tmp: Path, **overrides: Any) -> StatsSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "bus_url": bus,
        "data_dir": tmp,
        "live_interval_s": 0.1,
        "fraud_prefix_file": PREFIX_FILE,
        "prune_interval_s": 3600,
    }
    values.update(overrides)
    return load(StatsSettings, **values)


def stats_app(db_url: str, bus: str, tmp: Path, **overrides: Any) -> FastAPI:
    return create_app(stats_settings(db_url, bus, tmp, **overrides))


def memory_bus() -> str:
    return f"memory://stats-{uuid.uuid4().hex[:8]}?partitions=2"


async def publish(app: FastAPI, cdrs: Iterable[CDR]) -> None:
    runtime = app.state.cdrflow.runtime
    records = [Record(c.to_json(), key=c.call_id.encode()) for c in cdrs]
    await runtime.bus.producer.send_many(topics.NORMALIZED, records)


def processed(app: FastAPI) -> int:
    return int(app.state.cdrflow.components["stats"].loop.processed)


async def wait_processed(app: FastAPI, n: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while processed(app) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"stats consumed {processed(app)} of {n} messages")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """Serve the app with uvicorn on a free loopback port (a real socket, for SSE and
    Chromium); yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(base + "/healthz")).status_code == 200 and server.started:
                        break
                await asyncio.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
