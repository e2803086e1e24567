"""Ingest under the failures it exists for, on real Tansu (Kafka protocol) and PostgreSQL.

- The broker stops for 30 s in the middle of a steady stream of 5,000 CDRs: every post is answered
  200, every CDR is stored, none twice (the spool takes the posts, the drainer ships them).
- Ingest is SIGKILLed while spooling and started again: every post it answered 200 is stored.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_parser.models import cdrs, raw_payloads
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.db import create_engine
from cdrkit.testing.processes import forget_group, spawn, stop
from cdrkit.testing.tansu import TansuBroker
from tests.e2e.conftest import serving, wait_for
from tests.metrics import sample

ROOT = Path(__file__).resolve().parents[2]
# Short group timeouts so the parser's consumer settles fast after the broker comes back.
FAST_GROUP = "&session_timeout_ms=6000&heartbeat_interval_ms=200&rebalance_timeout_ms=6000"


def _cdrs(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(cid, xml.encode()) for cid, xml in (generate_cdr(rng) for _ in range(n))]


async def _stored(engine: AsyncEngine) -> tuple[int, set[str]]:
    async with engine.connect() as conn:
        total = int(await conn.scalar(select(func.count()).select_from(cdrs)) or 0)
        ids = {row[0] for row in await conn.execute(select(cdrs.c.call_id))}
    return total, ids


async def _post(client: httpx.AsyncClient, xml: bytes) -> httpx.Response:
    return await client.post("/v1/cdr", content=xml, headers={"content-type": "text/xml"})


@pytest.mark.integration
async def test_broker_down_30s_mid_stream_every_cdr_answered_200_and_stored_once(
    fresh_pg_url: str, fresh_tansu: TansuBroker, tmp_path: Path
) -> None:
    total, rate, outage_after, outage_s = 5000, 125.0, 800, 30.0
    docs = _cdrs(total, seed=11)
    bus_url = fresh_tansu.url + FAST_GROUP
    ingest = create_service_app("ingest", bus_url=bus_url, data_dir=tmp_path, spool_after_s=1.0)
    parser = create_service_app(
        "parser", bus_url=bus_url, database_url=fresh_pg_url, data_dir=tmp_path, batch_size=200
    )
    engine = create_engine(fresh_pg_url)
    answers: dict[int, int] = {}
    call_ids: dict[int, str] = {}
    max_depth = 0
    stored_before = sample("cdrflow_parser_cdrs_total", outcome="stored")

    async with serving(ingest) as icli, serving(parser):

        async def post(i: int) -> None:
            resp = await _post(icli, docs[i][1])
            answers[i] = resp.status_code
            if resp.status_code == 200:
                call_ids[i] = resp.json()["call_id"]

        async def catch_up() -> bool:
            return (await _stored(engine))[0] >= len(answers)

        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        outage_at: float | None = None
        for i in range(total):
            # A steady client: post i leaves at i / rate seconds, whatever the answers do.
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            if i == outage_after:
                # Tansu keeps topics in memory, so stopping it loses what it holds; a real Kafka
                # keeps acknowledged records across a restart. Let the parser take everything
                # the broker acknowledged so far, so the test measures ingest, not Tansu.
                await asyncio.gather(*tasks)
                await wait_for(catch_up, what="the parser caught up before the outage", timeout=60)
                fresh_tansu.stop()
                outage_at = time.monotonic()
                started = outage_at - i / rate  # keep the steady rate from here on
            if outage_at is not None and time.monotonic() - outage_at >= outage_s:
                fresh_tansu.start()  # same port, empty storage
                outage_at = None
            if outage_at is not None and i % 100 == 0:
                max_depth = max(max_depth, (await icli.get("/v1/spool")).json()["depth"])
                assert (await icli.get("/readyz")).status_code == 200  # still in rotation
            task = asyncio.create_task(post(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if outage_at is not None:  # the stream ended before the outage did
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - outage_at)))
            fresh_tansu.start()
        await asyncio.gather(*tasks)

        assert sorted(answers.values()) == [200] * total, {
            s: list(answers.values()).count(s) for s in set(answers.values())
        }
        assert max_depth > 100, f"the spool held at most {max_depth} CDRs during the outage"

        async def all_stored() -> bool:
            return (await _stored(engine))[0] >= total

        await wait_for(all_stored, what=f"{total} CDRs stored", timeout=90)
        spool = (await icli.get("/v1/spool")).json()
        assert spool["depth"] == 0
        assert spool["segments"] == 0

    _count, stored_ids = await _stored(engine)
    assert stored_ids == set(call_ids.values())
    # None twice, by the parser's own outcomes (a row count under the primary key cannot fail).
    assert sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before == total
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(raw_payloads)) == total
    await engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _ingest_process(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = spawn(
            [sys.executable, "-m", "cdrflow", "serve", "ingest", "--port", str(port)],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "ingest did not become ready: " + log.read_text()
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc)
        forget_group(proc.pid)


@pytest.mark.integration
async def test_ingest_sigkilled_while_spooling_loses_nothing(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    broker_port, http_port = _free_port(), _free_port()
    bus_url = f"kafka://127.0.0.1:{broker_port}?idempotence=false{FAST_GROUP}"
    env = {
        "CDRFLOW_BUS_URL": bus_url,
        "CDRFLOW_DATA_DIR": str(tmp_path),
        "CDRFLOW_LOG_LEVEL": "WARNING",
        "INGEST_SPOOL_AFTER_S": "1",
    }
    docs = _cdrs(600, seed=23)
    acknowledged: set[str] = set()
    base = f"http://127.0.0.1:{http_port}"

    with _ingest_process(http_port, env, tmp_path / "ingest.log") as proc:
        # Nothing listens on the broker port: every post is spooled.
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            queue = list(reversed(docs))
            killed = asyncio.Event()

            async def worker() -> None:
                while queue and not killed.is_set():
                    _cid, xml = queue.pop()
                    try:
                        resp = await _post(client, xml)
                    except httpx.HTTPError:
                        return  # the process died under this request: never acknowledged
                    if resp.status_code == 200:
                        acknowledged.add(resp.json()["call_id"])
                    else:
                        raise AssertionError(resp.text)
                    if len(acknowledged) >= 400 and not killed.is_set():
                        killed.set()
                        os.kill(proc.pid, signal.SIGKILL)  # mid-stream, posts in flight

            await asyncio.gather(*(worker() for _ in range(8)))
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 400
    assert list((tmp_path / "spool").glob("*.seg")), "nothing was spooled"

    engine = create_engine(fresh_pg_url)
    with TansuBroker(port=broker_port) as broker:
        with _ingest_process(http_port, env, tmp_path / "ingest.log"):
            parser = create_service_app(
                "parser", bus_url=bus_url, database_url=fresh_pg_url, data_dir=tmp_path / "p"
            )
            async with serving(parser):

                async def all_stored() -> bool:
                    return (await _stored(engine))[1] >= acknowledged

                await wait_for(all_stored, what="every acknowledged CDR stored", timeout=90)
                async with httpx.AsyncClient(base_url=base) as client:

                    async def drained() -> bool:
                        return bool((await client.get("/v1/spool")).json()["depth"] == 0)

                    await wait_for(drained, what="the spool drained", timeout=30)
        assert broker.running
    count, ids = await _stored(engine)
    assert ids >= acknowledged
    assert count == len(ids)  # none twice
    await engine.dispose()


@pytest.mark.integration
async def test_broker_paused_with_posts_in_flight_every_acknowledged_cdr_stored_once(
    fresh_pg_url: str, fresh_tansu: TansuBroker, tmp_path: Path
) -> None:
    """SIGSTOP (a hung broker, not a clean stop) while 8 connections post: the sends in flight
    hang, ingest spools them after INGEST_SPOOL_AFTER_S and answers 200; after SIGCONT the hung
    sends complete too (so some envelopes reach cdr.raw twice) and the spool drains. Every
    acknowledged CDR is stored, each once by the parser's own outcome counter."""
    docs = _cdrs(1200, seed=31)
    bus_url = fresh_tansu.url + FAST_GROUP
    ingest = create_service_app("ingest", bus_url=bus_url, data_dir=tmp_path, spool_after_s=0.5)
    parser = create_service_app(
        "parser", bus_url=bus_url, database_url=fresh_pg_url, data_dir=tmp_path, batch_size=100
    )
    engine = create_engine(fresh_pg_url)
    acked: set[str] = set()
    in_flight = 0
    in_flight_at_pause = spooled_during_pause = 0
    stored_before = sample("cdrflow_parser_cdrs_total", outcome="stored")
    dup_before = sample("cdrflow_parser_cdrs_total", outcome="duplicate")
    async with serving(ingest) as icli, serving(parser):
        queue = list(reversed(docs))

        async def poster() -> None:
            nonlocal in_flight
            while queue:
                _cid, xml = queue.pop()
                in_flight += 1
                try:
                    resp = await _post(icli, xml)
                finally:
                    in_flight -= 1
                assert resp.status_code == 200, resp.text
                acked.add(resp.json()["call_id"])

        posting = asyncio.gather(*(poster() for _ in range(8)))
        await wait_for(
            lambda: _true(len(acked) >= 300 and in_flight >= 4),
            what="300 posts acknowledged, more in flight",
        )
        fresh_tansu.pause()
        in_flight_at_pause = in_flight
        try:
            await asyncio.sleep(4)
            spooled_during_pause = (await icli.get("/v1/spool")).json()["depth"]
            assert (await icli.get("/readyz")).status_code == 200
        finally:
            fresh_tansu.resume()
        await posting

        async def all_stored() -> bool:
            return (await _stored(engine))[1] >= acked

        await wait_for(all_stored, what="every acknowledged CDR stored", timeout=90)
        await wait_for(
            lambda: _true(
                sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before >= len(acked)
            ),
            what="the parser's stored outcomes",
        )
    _count, ids = await _stored(engine)
    await engine.dispose()
    print(
        f"acknowledged {len(acked)}, in flight at the pause {in_flight_at_pause}, spooled "
        f"during it {spooled_during_pause}, stored {len(ids)}, parser duplicates absorbed "
        f"{sample('cdrflow_parser_cdrs_total', outcome='duplicate') - dup_before:.0f}"
    )
    assert in_flight_at_pause > 0, "no post was in flight when the broker hung"
    assert spooled_during_pause > 0, "nothing was spooled while the broker hung"
    assert len(acked) == len(docs)
    assert ids == acked
    # Stored once: the parser's own outcome, not a row count under a primary key.
    assert sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before == len(acked)


async def _true(value: bool) -> bool:
    return value
