"""``cdrflow edge`` on a real pseudo-terminal, delivering to a real platform."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import httpx
import pytest

from cdrmodel.edge import edge_call_id
from tests.edge.conftest import AUTH, Platform, Pty, agent_settings, fixture_lines, running, until

RINGS = 20  # type-0 lines of the corpus (read from the file: see test_hipath_mapping)


async def test_pty_lines_reach_the_store_as_hipath_cdrs(
    platform: Platform, pty_port: Pty, tmp_path: Path
) -> None:
    settings = agent_settings(tmp_path, platform, serial_port=str(pty_port.path))
    lines = fixture_lines()
    async with running(settings) as run:
        await until(lambda: run.agent.source.state == "open", "the port to open")
        for line in lines:
            pty_port.write(line + b"\r\n")
        # What a baud-rate mismatch prints: captured as it is, judged by the parser.
        pty_port.write(b"\xf8\x80\x80x\xfe\xe0\x00\x86\r\n")
        total = len(lines) + 1
        await until(lambda: run.agent.delivery.delivered == total, "every line delivered")
        assert run.agent.queue.depth == 0
    cdrs = await platform.wait_cdrs(settings.device_id or "", len(lines) - RINGS)
    assert len(cdrs) == len(lines) - RINGS
    by_seq = {c["extra"]["edge_seq"]: c for c in cdrs}
    # Sequence numbers follow the port's order: line 1 is seq 1 (an outgoing call on trunk 2).
    first = by_seq[1]
    assert first["call_id"] == edge_call_id(settings.device_id or "", 1)
    assert (first["caller_number"], first["callee_number"]) == ("104", "00441619251900")
    assert first["end_time"] == "2019-04-10T22:19:06Z"  # 23:19:06 Irish Summer Time
    # The last line came with DLE STX DLE ETX DC3 DC1 in front: a ring notice, kept raw only.
    async with httpx.AsyncClient(base_url=platform.direct, headers=AUTH) as client:
        last = edge_call_id(settings.device_id or "", len(lines))
        assert (await client.get(f"/v1/cdrs/{last}")).status_code == 404
        raw = await client.get(f"/v1/cdrs/{last}/raw")
        assert raw.status_code == 200
        assert raw.json()["line"].startswith("27.04.2121:33:56  3   100")
        devices = (await client.get("/v1/edge/devices")).json()["items"]
        garbage = edge_call_id(settings.device_id or "", len(lines) + 1)
        letters = (await client.get("/v1/dead-letters", params={"limit": 1000})).json()["items"]
    [letter] = [d for d in letters if d["call_id"] == garbage]  # a dead letter, never dropped
    assert letter["error"] == "invalid_line"
    assert "baud rate" in letter["reason"]
    assert "line_b64" in letter["envelope"]["payload"]
    mine = [d for d in devices if d["device"] == settings.device_id]
    assert mine, devices
    assert mine[0]["source"] == "hipath-serial"
    assert mine[0]["stale"] is False


async def test_ingest_down_while_lines_arrive_then_all_delivered_once(
    platform: Platform, pty_port: Pty, tmp_path: Path
) -> None:
    """The property of "ingest down for 60 s": lines captured during an outage are delivered
    once it ends. The outage here is 3 s (the backoff is scaled down with it)."""
    settings = agent_settings(tmp_path, platform, serial_port=str(pty_port.path))
    lines = fixture_lines()
    async with running(settings) as run:
        await until(lambda: run.agent.source.state == "open", "the port to open")
        for line in lines[:10]:
            pty_port.write(line + b"\r\n")
        await until(lambda: run.agent.delivery.delivered == 10, "the first lines delivered")
        await platform.gate.close()
        try:
            for line in lines[10:]:
                pty_port.write(line + b"\r\n")
                await asyncio.sleep(0.04)
            await until(lambda: run.agent.queue.depth == len(lines) - 10, "lines queued")
            await asyncio.sleep(1)
            assert run.agent.delivery.delivered == 10  # nothing got through the outage
            assert run.agent.delivery.last_error
        finally:
            await platform.gate.open()
        await until(lambda: run.agent.queue.depth == 0, "the queue to drain", timeout=30)
    cdrs = await platform.wait_cdrs(settings.device_id or "", len(lines) - RINGS)
    seqs = sorted(c["extra"]["edge_seq"] for c in cdrs)
    assert len(seqs) == len(set(seqs)) == len(lines) - RINGS
    # Every line of the corpus arrived (the queue numbered them 1..68 in port order).
    assert max(seqs) <= len(lines)


async def test_device_unplugged_and_plugged_back_resumes_reading(
    platform: Platform, pty_port: Pty, tmp_path: Path
) -> None:
    settings = agent_settings(tmp_path, platform, serial_port=str(pty_port.path))
    lines = fixture_lines()
    async with running(settings) as run:
        await until(lambda: run.agent.source.state == "open", "the port to open")
        pty_port.write(lines[0] + b"\r\n")
        await until(lambda: run.agent.queue.depth + run.agent.delivery.delivered == 1, "line 1")
        pty_port.unplug()
        await until(lambda: run.agent.source.state == "error", "the agent to see the port gone")
        await asyncio.sleep(0.5)  # a few reopen attempts fail: the device node is gone
        pty_port.plug()
        await until(lambda: run.agent.source.state == "open", "the port to reopen", timeout=10)
        pty_port.write(lines[3] + b"\r\n")
        await until(lambda: run.agent.delivery.delivered == 2, "the line after the replug")
    cdrs = await platform.wait_cdrs(settings.device_id or "", 2)
    assert sorted(c["callee_number"] for c in cdrs) == ["00441619251900", "0876153281"]


async def test_queue_full_pauses_reading_and_drops_nothing(
    platform: Platform, pty_port: Pty, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = agent_settings(tmp_path, platform, serial_port=str(pty_port.path), queue_size=5)
    # Outgoing calls 0000001..0000040 at one-second steps: each line is told apart by number.
    lines = [
        f"01.02.2510:00:{i % 60:02d}  1   101     00:00:{i % 60:02d}{i:07d}".ljust(74).encode()
        + b" 2\r\n"
        for i in range(1, 41)
    ]
    writer = threading.Thread(target=lambda: [pty_port.write(line) for line in lines])
    await platform.gate.close()
    caplog.set_level(logging.WARNING, "cdr_ingest.edge.agent")
    try:
        async with running(settings) as run:
            await until(lambda: run.agent.source.state == "open", "the port to open")
            writer.start()
            await until(lambda: run.agent.queue.full, "the queue to fill")
            await asyncio.sleep(0.5)
            # Reading stopped: the rest waits in the port, not in the agent and not dropped.
            assert run.agent.queue.depth <= 5 + 2  # a read in progress is still committed
            assert run.agent.checkin_body()["queue_full"] is True
            assert "the queue is full" in caplog.text
            await platform.gate.open()
            await until(lambda: run.agent.delivery.delivered == 40, "all 40 lines", timeout=30)
            writer.join(5)
            assert "reading resumes" in caplog.text
    finally:
        await platform.gate.open()
    cdrs = await platform.wait_cdrs(settings.device_id or "", 40)
    assert sorted(c["callee_number"] for c in cdrs) == [f"{i:07d}" for i in range(1, 41)]
    # Captured in port order: seq n is the n-th line.
    assert all(c["callee_number"] == f"{c['extra']['edge_seq']:07d}" for c in cdrs)
