"""``cdrflow run`` (memory bus, SQLite) keeps the no-loss promise across a SIGKILL.

The real command runs as a subprocess; 8 connections post FreeSWITCH CDRs; the process is
SIGKILLed with posts in flight and started again on the same data dir. Twice: once with every 200
given by the bus log's fsync, once with most 200s given by the ingest spool (the bus is given
0.5 ms to answer), so the kill also interrupts the spool's drainer. Every CDR answered 200 is then
in every sink exactly once, counted where a duplicate or a loss would show:

* store: each acknowledged call id is listed by ``GET /v1/cdrs`` (none missing), and nothing is
  listed that was never posted;
* stats: the ``attempts`` of all buckets add up to the number of calls stored (a redelivered CDR
  counted twice, or one lost, changes the sum: buckets are counters, not keyed rows);
* billing: every stored call reached billing (its ``billing_calls`` row).

Before the bus kept a log, 38 of 1,310 and 646 of 1,015 acknowledged CDRs were lost this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cdrflow.mock import generate_cdr
from cdrkit.testing.processes import spawn, stop
from tests.e2e.test_run import _free_port

CONNECTIONS = 8


def _start(
    tmp_path: Path, port: int, log_name: str, extra: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CDRFLOW_DATA_DIR": str(tmp_path / "data"), "CDRFLOW_MOCK_RATE": "0"}
    env["CDRFLOW_MOCK_EDGE"] = "0"  # only the posted calls: `make test` once exported 6/min
    for name in (
        "CDRFLOW_DATABASE_URL",
        "CDRFLOW_BUS_URL",
        "INGEST_TOKENS",
        "INGEST_USERS",
        "INGEST_SPOOL_AFTER_S",
        "CDRFLOW_API_TOKENS",
    ):
        env.pop(name, None)
    env.update(extra)
    return spawn(
        [sys.executable, "-m", "cdrflow", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / log_name, "wb"),
    )


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"not ready in 60 s: {log.read_text()[-3000:]}")


async def _post_until_killed(
    base: str, docs: list[tuple[str, bytes]], acked: set[str], sent: set[str], stop: asyncio.Event
) -> None:
    queue = list(reversed(docs))

    async def connection() -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            while queue and not stop.is_set():
                call_id, xml = queue.pop()
                sent.add(call_id)
                try:
                    r = await client.post(
                        "/v1/cdr", content=xml, headers={"content-type": "text/xml"}
                    )
                except httpx.HTTPError:
                    return  # the process died under this post: not acknowledged
                if r.status_code == 200:
                    acked.add(call_id)

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


# "bus": a 200 means the envelope is fsync'd in the bus log. "spool": the bus is given 0.5 ms to
# answer, so most posts are acknowledged from the ingest spool instead and reach the bus only
# through the drainer, which the kill interrupts too (the restart replays the spool).
PATHS = {"bus": {}, "spool": {"INGEST_SPOOL_AFTER_S": "0.0005"}}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_run_sigkilled_under_load_loses_no_acknowledged_cdr(tmp_path: Path, path: str) -> None:
    rng = random.Random(12)
    docs = [(cid, xml.encode()) for cid, xml in (generate_cdr(rng) for _ in range(1200))]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, "run1.log", PATHS[path])
    acked: set[str] = set()
    sent: set[str] = set()
    try:
        _wait_ready(base, proc, tmp_path / "run1.log")

        async def load_then_kill() -> None:
            stop = asyncio.Event()
            posting = asyncio.create_task(_post_until_killed(base, docs, acked, sent, stop))
            while len(acked) < 400:  # well into the load, with 8 posts in flight
                assert not posting.done(), "ran out of CDRs before the kill"
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            stop.set()
            await posting

        asyncio.run(load_then_kill())
        proc.wait(10)
    finally:
        stop(proc, signal.SIGKILL, timeout_s=10)
    in_flight = sent - acked

    proc = _start(tmp_path, port, "run2.log", PATHS[path])
    try:
        _wait_ready(base, proc, tmp_path / "run2.log")
        stored: set[str] = set()
        deadline = time.monotonic() + 60
        while not acked <= stored and time.monotonic() < deadline:
            stored = _listed(base)
            time.sleep(0.2)
        missing = acked - stored
        assert not missing, (
            f"{len(missing)} of {len(acked)} acknowledged CDRs lost (e.g. {sorted(missing)[:3]}); "
            f"after the restart: {(tmp_path / 'run2.log').read_text()[-3000:]}"
        )
        assert stored <= sent, "a call that was never posted is stored"
        # The downstream consumers catch up with the same calls, each counted once.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            attempts = _attempts(base)
            billed = _billed(tmp_path / "data" / "cdrflow.db")
            if attempts >= len(stored) and billed >= stored:
                break
            time.sleep(0.2)
        assert attempts == len(stored), (
            f"stats counted {attempts} attempts for {len(stored)} stored calls (a call counted "
            f"twice or lost); after the restart: {(tmp_path / 'run2.log').read_text()[-3000:]}"
        )
        assert stored <= billed, (
            f"{len(stored - billed)} stored calls never reached billing; after the restart: "
            f"{(tmp_path / 'run2.log').read_text()[-3000:]}"
        )
        duplicates = _counter(
            httpx.get(f"{base}/metrics", timeout=5).text,
            'cdrflow_parser_cdrs_total{outcome="duplicate"}',
        )
    finally:
        stop(proc, timeout_s=20)
    print(
        f"acknowledged {len(acked)}, in flight at the kill {len(in_flight)}, stored {len(stored)}"
        f", stats attempts {attempts}, billed {len(billed & stored)}, redelivered to the "
        f"parser and absorbed after the restart {duplicates:.0f}"
    )


def _listed(base: str) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{base}/v1/cdrs", params=params, timeout=10).json()
        ids |= {item["call_id"] for item in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def _attempts(base: str) -> int:
    now = int(time.time())
    body = httpx.get(
        f"{base}/v1/buckets", params={"since": now - 7200, "until": now + 3600}, timeout=10
    ).json()
    return sum(int(b["metrics"].get("attempts", 0)) for b in body["buckets"])


def _billed(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("select call_id from billing_calls")}


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
