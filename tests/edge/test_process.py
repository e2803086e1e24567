"""``cdrflow edge`` as a process: SIGKILL loses nothing, SIGTERM stops in time, it stays light,
and ``status`` / ``resend-rejected`` work on its queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.common import free_port
from cdr_ingest.edge.queue import LineQueue
from tests.edge.conftest import TOKEN, Platform, until

CDRFLOW = str(Path(sys.executable).with_name("cdrflow"))


def outgoing(i: int) -> bytes:
    return f"01.02.2511:00:00  2   102     00:01:00{i:07d}".ljust(74).encode() + b" 2\r\n"


def agent_env(data: Path, platform: Platform, port: int, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "CDRFLOW_"))}
    env.update(
        EDGE_SOURCE="tcp",
        EDGE_TCP_LISTEN=f"127.0.0.1:{port}",
        EDGE_DATA_DIR=str(data),
        EDGE_INGEST_URL=platform.url,
        EDGE_TOKEN=TOKEN,
        EDGE_DEVICE_ID=device,
        TIMEOUT="0.05",  # calllogger's names work as they are
        MAX_TIMEOUT="0.3",
        CDRFLOW_LOG_FORMAT="text",
    )
    return env


def depth(data: Path) -> int:
    path = data / "queue.db"
    if not path.exists():
        return -1
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM lines").fetchone()[0])
    except sqlite3.OperationalError:
        return -1


async def feed(port: int, lines: list[bytes]) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the agent never listened")
    writer.write(b"".join(lines))
    await writer.drain()
    writer.close()


async def test_sigkill_with_1000_lines_queued_then_each_delivered_once(
    platform: Platform, tmp_path: Path
) -> None:
    data, port, device = tmp_path / "edge", free_port(), f"kill-{time.monotonic_ns()}"
    env = agent_env(data, platform, port, device)
    await platform.gate.close()  # ingest away: everything stays queued
    try:
        first = await asyncio.create_subprocess_exec(
            CDRFLOW, "edge", env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await feed(port, [outgoing(i) for i in range(1, 1001)])
            await until(lambda: depth(data) == 1000, "1000 lines queued", timeout=30)
        finally:
            first.send_signal(signal.SIGKILL)
            await asyncio.wait_for(first.wait(), 10)
    finally:
        await platform.gate.open()
    second = await asyncio.create_subprocess_exec(
        CDRFLOW, "edge", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        cdrs = await platform.wait_cdrs(device, 1000, timeout=60)
        await until(lambda: depth(data) == 0, "the queue to drain")
        started = time.monotonic()
        second.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(second.communicate(), 10)
        stopped_in = time.monotonic() - started
    finally:
        if second.returncode is None:
            second.kill()
    err = err_bytes.decode()
    numbers = [c["callee_number"] for c in cdrs]
    assert sorted(numbers) == [f"{i:07d}" for i in range(1, 1001)]  # each line exactly once
    assert sorted(c["extra"]["edge_seq"] for c in cdrs) == list(range(1, 1001))
    assert second.returncode == 0, err[-2000:]
    assert stopped_in < 10
    assert "1000 lines queued" in err  # the restart found the queue the kill left


def test_the_agent_imports_no_server_stack() -> None:
    code = (
        "import sys, cdrflow.entry, cdrflow.edge_cli, cdr_ingest.edge.agent\n"
        "import cdr_ingest.edge.sources\n"
        "heavy = ['fastapi', 'sqlalchemy', 'aioboto3', 'lxml', 'starlette', 'pydantic']\n"
        "heavy += ['httpx', 'click', 'rich']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "import cdrmodel\n"  # the probe sees an import when there is one
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"], out.stdout


def test_status_and_resend_rejected_on_the_queue(tmp_path: Path) -> None:
    data = tmp_path / "edge"
    queue = LineQueue(data / "queue.db")
    queue.append([outgoing(1), outgoing(2), outgoing(3)])
    queue.remove([1])
    queue.reject({3: ("invalid_record", "the line is garbage")})
    queue.close()
    env = {**os.environ, "EDGE_DATA_DIR": str(data), "EDGE_DEVICE_ID": "status-test"}
    status = subprocess.run(
        [CDRFLOW, "edge", "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    shown = json.loads(status.stdout)
    assert (shown["device"], shown["depth"], shown["last_delivered_seq"]) == ("status-test", 1, 1)
    assert shown["rejected_count"] == 1
    assert shown["rejected"][0]["detail"] == "the line is garbage"
    assert shown["rejected"][0]["line"].startswith("01.02.2511:00:00")
    text = subprocess.run(
        [CDRFLOW, "edge", "status"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "seq 3: invalid_record: the line is garbage" in text
    resend = subprocess.run(
        [CDRFLOW, "edge", "resend-rejected"], env=env, capture_output=True, text=True, check=True
    )
    assert resend.stdout.startswith("1 rejected lines are queued again")
    queue = LineQueue(data / "queue.db")
    assert [line.seq for line in queue.peek(10)] == [2, 3]  # same seq: idempotent at ingest
    assert queue.rejected_count() == 0
    queue.close()


def test_a_bad_setting_stops_the_agent_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_DATA_DIR": str(tmp_path), "EDGE_PBX_TIMEZONE": "Mars/Base"}
    done = subprocess.run(
        [CDRFLOW, "edge"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
    assert "EDGE_PBX_TIMEZONE" in done.stderr
