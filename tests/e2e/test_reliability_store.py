"""PostgreSQL restarted mid-stream: the parser pauses, retries and resumes; nothing is lost and
nothing is stored twice.

The database is a private cluster of this test's own (``PrivateCluster``), never the machine's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from cdr_parser.models import cdr_keys, cdrs, raw_payloads
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.db import create_engine
from cdrkit.testing.postgres import PrivateCluster
from tests.e2e.conftest import serving, wait_for
from tests.metrics import sample

TOTAL = 2000


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    with PrivateCluster() as cluster:
        yield cluster


def _retries() -> float:
    return REGISTRY.get_sample_value("cdrflow_bus_handler_retries_total", {"group": "parser"}) or 0


@pytest.mark.integration
async def test_postgres_restart_mid_stream_loses_and_duplicates_nothing(
    private_pg: PrivateCluster, fresh_tansu: Any
) -> None:
    db_url = await asyncio.to_thread(private_pg.create_database, "cdrflow")
    common = {"database_url": db_url, "bus_url": fresh_tansu.url}
    ingest = create_service_app("ingest", **common)
    parser = create_service_app("parser", batch_size=100, **common)
    stored_before = sample("cdrflow_parser_cdrs_total", outcome="stored")
    rng = random.Random(42)
    calls = [generate_cdr(rng) for _ in range(TOTAL)]
    expected = {call_id for call_id, _ in calls}
    engine = create_engine(db_url)

    async def stored() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(cdrs)) or 0)

    async with serving(ingest) as icli, serving(parser) as pcli:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for _, xml in calls:
            queue.put_nowait(xml)

        async def post_worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                xml = queue.get_nowait()
                resp = await client.post(
                    "/v1/cdr", content=xml, headers={"content-type": "text/xml"}
                )
                assert resp.status_code == 200, resp.text
                await asyncio.sleep(0.002)  # a steady stream, still going during the outage

        posting = asyncio.gather(*(post_worker(icli) for _ in range(4)))

        async def some_stored() -> bool:
            return await stored() >= 400

        await wait_for(some_stored, what="a first part stored", timeout=30)
        retries_before = _retries()
        await engine.dispose()
        # A real outage: fast shutdown (open connections are cut), three seconds down, start.
        await asyncio.to_thread(private_pg.stop, "fast")
        await asyncio.sleep(3)
        down = await pcli.get("/readyz")
        await asyncio.to_thread(private_pg.start)
        assert down.status_code == 503
        assert "database unreachable" in " ".join(down.json()["problems"])

        await posting
        assert queue.empty()

        async def all_stored() -> bool:
            return await stored() >= TOTAL

        await wait_for(all_stored, what="every CDR stored after the restart", timeout=45)
        assert _retries() > retries_before, "the parser never had to retry: a weak test"
        ready = await pcli.get("/readyz")
        assert ready.status_code == 200, ready.text

    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(cdrs)) == TOTAL
        assert await conn.scalar(select(func.count()).select_from(cdr_keys)) == TOTAL
        assert await conn.scalar(select(func.count()).select_from(raw_payloads)) == TOTAL
        assert set((await conn.execute(select(cdrs.c.call_id))).scalars()) == expected
    await engine.dispose()
    # None twice, by the parser's own outcomes (a row count under the primary key cannot fail).
    assert sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before == TOTAL
