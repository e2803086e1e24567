"""Parser and billing as real processes, SIGKILLed mid-batch (issue 12, finding 8).

The old parser "crash" was a task cancelled inside the test process and nothing checked that a
batch was redelivered. Here ``cdrflow serve parser``, ``… billing`` and ``… stats`` run as
processes on Tansu (Kafka protocol) and PostgreSQL with a backlog of CDRs on ``cdr.raw``. Each of
parser and billing is SIGKILLed *between* its database commit and its offset commit, so the
restarted process must get those messages again. The window is made deterministic by the consume
loop's fault injection (``CDRFLOW_FAULT_HOLD_DIR``, cdrkit/bus/runner.py): armed with a message
count, the real process stops after the batch reaching it is durable and before its offsets are
committed, writes ``<group>.held`` and waits there; the test sees the file, checks the window
(rows stored beyond the group's committed offsets) and SIGKILLs the process. The test then shows:

* redelivery happened and was absorbed: the restarted process's ``duplicate`` outcome counter
  covers at least the messages stored beyond the committed offsets at the kill (parser CDRs,
  billing charges);
* every call is stored once, counted from the sinks' own outcomes: the rows stored before the
  kill plus the restarted process's ``stored`` (parser) / priced (billing) outcomes equal the
  calls sent — a sink that inserted a redelivered call again, or lost one, breaks the sum;
* stats, consuming the same ``cdr.normalized`` with the parser's re-published duplicates, counts
  each call once: its buckets' ``attempts`` add up to the calls sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from cdrflow.mock import generate_cdr
from cdrkit.bus import Record, open_bus
from cdrkit.db import create_engine
from cdrkit.testing.processes import forget_group, spawn, stop
from cdrkit.testing.tansu import TansuBroker
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex, topics
from tests.e2e.test_run import _free_port

ROOT = Path(__file__).resolve().parents[2]
CALLS = 600
FAST_GROUP = "&session_timeout_ms=6000&heartbeat_interval_ms=200&rebalance_timeout_ms=6000"


def _envelopes(n: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        call_id, xml = generate_cdr(rng)
        env = RawEnvelope(
            id=os.urandom(16).hex(),
            kind=PayloadKind.FREESWITCH_XML,
            received_at=datetime.now(UTC),
            source=Origin(remote_addr="127.0.0.1"),
            content_type="application/xml",
            call_id=call_id,
            payload=xml,
            sha256=sha256_hex(xml),
        )
        out.append(Record(value=env.to_json(), key=call_id.encode()))
    return out


@contextmanager
def _services(
    names: list[str], ports: dict[str, int], env: dict[str, str], log: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """``cdrflow serve NAME`` for each name, started together, once all are ready."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with log.open("ab") as out:
            for name in names:
                procs[name] = spawn(
                    [sys.executable, "-m", "cdrflow", "serve", name, "--port", str(ports[name])],
                    env={**os.environ, **env},
                    cwd=ROOT,
                    stdout=out,
                    stderr=out,
                )
        deadline = time.monotonic() + 90
        for name, proc in procs.items():
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                with suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{ports[name]}/readyz"
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{name} not ready: {log.read_text()[-3000:]}"
                time.sleep(0.1)
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                stop(proc)
            forget_group(proc.pid)


def _counter(base: str, name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)]
        return sum(o or 0 for o in offsets)
    finally:
        await consumer.stop()


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _kill_when_held(
    proc: subprocess.Popen[bytes],
    hold: Path,
    rows: str,
    db_url: str,
    bootstrap: str,
    group: str,
    topic: str,
    log: Path,
) -> tuple[int, int, int]:
    """Wait until ``proc`` holds before its offset commit (``<group>.held``: its batch is
    durable, its offsets not committed), check that window, SIGKILL it there. Returns the rows
    stored at the kill, the group's committed offsets then, and the charges then."""
    held = hold / f"{group}.held"
    deadline = time.monotonic() + 120
    while not held.exists():
        assert proc.poll() is None, f"{group} exited: {_tail(log)}"
        assert time.monotonic() < deadline, f"{group} never held: {_tail(log)}"
        await asyncio.sleep(0.05)
    state = json.loads(held.read_text())
    assert state["pid"] == proc.pid, state  # the process the test is about to kill
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            stored = int(await conn.scalar(text(f"select count(*) from {rows}")) or 0)
            charges = int(await conn.scalar(text("select count(*) from charges")) or 0)
    finally:
        await engine.dispose()
    committed = await _committed(bootstrap, group, topic)
    # The window: everything the process handled is stored (its first run sees each call once),
    # and the held batch's offsets are not committed.
    assert stored == state["processed"], (stored, state)
    assert committed < stored < CALLS, (committed, stored, state)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return stored, committed, charges


@pytest.mark.integration
async def test_parser_and_billing_sigkilled_mid_batch_redeliver_and_store_once(
    fresh_pg_url: str, fresh_tansu: TansuBroker, tmp_path: Path
) -> None:
    bus_url = fresh_tansu.url + FAST_GROUP
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {
        "CDRFLOW_BUS_URL": bus_url,
        "CDRFLOW_DATABASE_URL": fresh_pg_url,
        "CDRFLOW_DATA_DIR": str(tmp_path),
        "CDRFLOW_LOG_LEVEL": "WARNING",
        "CDRFLOW_FAULT_HOLD_DIR": str(hold),
        "PARSER_BATCH_SIZE": "20",
        "BILLING_BATCH_SIZE": "10",
    }
    # Billing holds once it has stored 100 calls of the first half; the parser once it has
    # handled 100 messages of the second half, which is sent only after billing was killed.
    (hold / "billing.arm").write_text("100")
    (hold / "parser.arm").write_text(str(CALLS // 2 + 100))
    bus = open_bus(bus_url)
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    await bus.producer.send_many(topics.RAW, _envelopes(CALLS // 2, seed=8))
    ports = {name: _free_port() for name in ("parser", "billing", "stats")}
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    boot = fresh_tansu.bootstrap_servers
    log = tmp_path / "services.log"

    with _services(["parser", "billing", "stats"], ports, env, log) as first:
        parser, billing = first["parser"], first["billing"]
        billing_at_kill, billing_committed, charges_at_kill = await _kill_when_held(
            billing, hold, "billing_calls", fresh_pg_url, boot, "billing", topics.NORMALIZED, log
        )
        await bus.producer.send_many(topics.RAW, _envelopes(CALLS // 2, seed=9))
        await bus.close()
        parser_at_kill, parser_committed, _ = await _kill_when_held(
            parser, hold, "cdrs", fresh_pg_url, boot, "parser", topics.RAW, log
        )
        # Restarted as in production: no fault injection.
        clean = {k: v for k, v in env.items() if k != "CDRFLOW_FAULT_HOLD_DIR"}
        with _services(["parser", "billing"], ports, clean, log):
            # Done when every group has committed everything it was sent: a loop commits only
            # after its handler returned, so the outcome counters read below are final. The
            # parser publishes one cdr.normalized message per CDR it handles (duplicates too):
            # the first process all it had handled at the kill, the restarted one all it was
            # handed (the loop's own count, not an outcome under test).
            deadline = time.monotonic() + 120
            while True:
                parsed = await _committed(boot, "parser", topics.RAW)
                handed = _counter(
                    base["parser"], "cdrflow_bus_consumed_messages_total", group="parser"
                )
                normalized = parser_at_kill + int(handed)
                charged = await _committed(boot, "billing", topics.NORMALIZED)
                counted = await _committed(boot, "stats", topics.NORMALIZED)
                if parsed == CALLS and charged == counted == normalized:
                    break
                assert time.monotonic() < deadline, (
                    f"not caught up: parser {parsed}/{CALLS}, billing {charged}, stats "
                    f"{counted} of {normalized}: {_tail(log)}"
                )
                await asyncio.sleep(0.2)
            engine = create_engine(fresh_pg_url)
            try:
                async with engine.connect() as conn:
                    cdr_rows, charge_rows, charges = [
                        int(await conn.scalar(text(f"select count(*) from {t}")) or 0)
                        for t in ("cdrs", "billing_calls", "charges")
                    ]
            finally:
                await engine.dispose()
            attempts = _attempts(base["stats"])
            parser_stored = _counter(base["parser"], "cdrflow_parser_cdrs_total", outcome="stored")
            parser_dup = _counter(base["parser"], "cdrflow_parser_cdrs_total", outcome="duplicate")
            billing_dup = _counter(
                base["billing"], "cdrflow_billing_charges_total", outcome="duplicate"
            )
            billing_new = sum(
                _counter(base["billing"], "cdrflow_billing_charges_total", outcome=o)
                for o in ("priced", "not_answered", "free")
            )
    print(
        f"calls {CALLS}; parser killed with {parser_at_kill} stored, {parser_committed} "
        f"committed; restarted: stored {parser_stored:.0f}, duplicate {parser_dup:.0f}; billing "
        f"killed with {billing_at_kill} calls ({charges_at_kill} charges), {billing_committed} "
        f"committed; restarted: new {billing_new:.0f}, duplicate {billing_dup:.0f}; stats "
        f"attempts {attempts}"
    )
    assert cdr_rows == CALLS
    assert charge_rows == CALLS
    assert attempts == CALLS, "stats counted a redelivered call twice (or lost one)"
    # Redelivery happened (the kills were between commit and offsets) and was absorbed: at least
    # the messages stored beyond the committed offsets came again and were found stored.
    assert parser_dup >= parser_at_kill - parser_committed > 0
    assert billing_dup >= billing_at_kill - billing_committed > 0
    # Stored once, by the sinks' own outcomes.
    assert parser_at_kill + parser_stored == CALLS
    assert charges_at_kill + billing_new == charges


def _attempts(base: str) -> int:
    now = int(time.time())
    with suppress(httpx.HTTPError):
        body = httpx.get(
            f"{base}/v1/buckets", params={"since": now - 7200, "until": now + 3600}, timeout=10
        ).json()
        return sum(int(b["metrics"].get("attempts", 0)) for b in body["buckets"])
    return -1
