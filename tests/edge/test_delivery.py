"""Delivery rules: TCP sources, refused credentials, duplicates, refused records, Retry-After."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.common import free_port
from cdr_ingest.edge.agent import Agent
from cdr_ingest.edge.delivery import retry_after_s
from cdr_ingest.edge.metrics import REGISTRY as EDGE_METRICS
from cdr_ingest.edge.sources import Tcp
from cdrmodel.edge import edge_call_id
from tests.edge.conftest import (
    AUTH,
    Gate,
    Platform,
    agent_settings,
    fixture_lines,
    running,
    until,
)


def failures() -> float:
    return EDGE_METRICS.get_sample_value("cdrflow_edge_delivery_failures_total") or 0.0


def outgoing(i: int) -> bytes:
    """An answered outgoing call to number ``i`` (seven digits): each line is told apart."""
    return f"01.02.2510:00:00  1   101     00:00:05{i:07d}".ljust(74).encode() + b" 2"


async def test_tcp_source_takes_two_pbx_connections_at_once(
    platform: Platform, tmp_path: Path
) -> None:
    settings = agent_settings(tmp_path, platform, source="tcp")
    async with running(settings) as run:
        source = run.agent.source
        assert isinstance(source, Tcp)
        await until(lambda: source.port is not None, "the listener")
        _, a = await asyncio.open_connection("127.0.0.1", source.port)
        _, b = await asyncio.open_connection("127.0.0.1", source.port)
        # Interleaved, and each cut mid-line: every connection keeps its own partial line.
        for i in range(1, 21):
            la, lb = outgoing(i) + b"\r\n", outgoing(100 + i) + b"\n"
            a.write(la[:30])
            b.write(lb[:50])
            await a.drain()
            await b.drain()
            await asyncio.sleep(0.005)
            a.write(la[30:])
            b.write(lb[50:])
        a.write(b"\x10\x02" + outgoing(99))  # the last line of A ends when A hangs up
        await a.drain()
        a.close()
        await until(lambda: run.agent.delivery.delivered == 41, "41 lines delivered")
        # B stays connected, as a PBX does: stopping the agent must not wait for it.
        started = asyncio.get_running_loop().time()
        await run.halt()
        assert asyncio.get_running_loop().time() - started < 5
        b.close()
    cdrs = await platform.wait_cdrs(settings.device_id or "", 41)
    numbers = sorted(c["callee_number"] for c in cdrs)
    expected = sorted([f"{i:07d}" for i in range(1, 21)] + [f"{100 + i:07d}" for i in range(1, 21)])
    assert numbers == sorted([*expected, "0000099"])


async def test_refused_token_keeps_every_line_until_it_is_fixed(
    platform: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "cdr_ingest.edge.delivery")
    wrong = agent_settings(tmp_path, platform, source="tcp", token="not-the-token")
    async with running(wrong) as run:
        source = run.agent.source
        assert isinstance(source, Tcp)
        await until(lambda: source.port is not None, "the listener")
        _, pbx = await asyncio.open_connection("127.0.0.1", source.port)
        pbx.write(b"".join(outgoing(i) + b"\r\n" for i in range(1, 31)))
        await pbx.drain()
        pbx.close()
        await until(lambda: run.agent.queue.depth == 30, "30 lines queued")
        refused = run.agent.delivery
        await until(lambda: (refused.last_error or "").startswith("HTTP 401"), "the refusal")
        attempts = failures()
        # several more refused attempts (at the maximum backoff): it neither exits nor drops
        await until(lambda: failures() >= attempts + 2, "more refused attempts")
        assert not run.task.done()
        assert run.agent.queue.depth == 30
        assert run.agent.delivery.delivered == 0
    sentences = [r.getMessage() for r in caplog.records if "EDGE_TOKEN" in r.getMessage()]
    assert len(sentences) == 1, sentences  # one clear sentence, not one per retry
    # The operator fixes EDGE_TOKEN and restarts: same data dir, same device.
    fixed = agent_settings(
        tmp_path, platform, source="tcp", device_id=wrong.device_id, token="edge-test-token"
    )
    async with running(fixed) as run:
        await until(lambda: run.agent.delivery.delivered == 30, "the 30 lines delivered")
    cdrs = await platform.wait_cdrs(wrong.device_id or "", 30)
    assert sorted(c["callee_number"] for c in cdrs) == [f"{i:07d}" for i in range(1, 31)]


async def test_a_failed_checkin_is_tried_again_before_the_interval(
    platform: Platform, tmp_path: Path
) -> None:
    """An agent that starts while ingest is off the network (a box that boots faster than the
    server; ``cdrflow run``'s mock agent, which starts before its own server listens) shows in
    the device registry once ingest answers, not a check-in interval (here 30 minutes) later."""
    settings = agent_settings(tmp_path, platform, source="mock", checkin_interval_min=30)
    device = settings.device_id

    async def listed() -> bool:
        async with httpx.AsyncClient(base_url=platform.direct, headers=AUTH) as client:
            answer = (await client.get("/v1/edge/devices")).raise_for_status().json()
        return any(d["device"] == device for d in answer["items"])

    await platform.gate.close()
    try:
        async with running(settings):
            await asyncio.sleep(0.5)  # the first check-in and a few retries refused
            assert not await listed()
            await platform.gate.open()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while not await listed():
                assert loop.time() < deadline, "no check-in reached the registry in 15 s"
                await asyncio.sleep(0.1)
    finally:
        await platform.gate.open()


async def test_the_same_batch_posted_twice_makes_no_duplicate_cdr(platform: Platform) -> None:
    device = f"dup-{time.monotonic_ns()}"
    lines = fixture_lines()[:5]  # four calls and a ring notice
    body = {
        "device": device,
        "pbx_timezone": "UTC",
        "source": "hipath-serial",
        "records": [
            {"seq": i, "captured_at": time.time(), "line_b64": base64.b64encode(line).decode()}
            for i, line in enumerate(lines, start=1)
        ],
    }
    async with httpx.AsyncClient(base_url=platform.direct, headers=AUTH) as client:
        first = (await client.post("/v1/edge/records", json=body)).json()
        again = (await client.post("/v1/edge/records", json=body)).json()
        # Re-captured times (a resend after a restart) make different bytes: still one CDR.
        for record in body["records"]:
            record["captured_at"] += 1
        third = await client.post("/v1/edge/records", json=body)
        assert third.status_code == 200
    assert first == {"accepted": 5, "duplicates": 0}
    assert again == {"accepted": 0, "duplicates": 5}
    await asyncio.sleep(0.5)  # let the parser consume the third copy too
    cdrs = await platform.wait_cdrs(device, 4)
    assert sorted(c["extra"]["edge_seq"] for c in cdrs) == [1, 2, 3, 4]
    assert {c["call_id"] for c in cdrs} == {edge_call_id(device, s) for s in (1, 2, 3, 4)}


async def test_ingest_refuses_bad_records_by_name_and_stores_none(platform: Platform) -> None:
    good = base64.b64encode(fixture_lines()[0]).decode()
    body = {
        "device": "refusal-test",
        "pbx_timezone": "UTC",
        "records": [
            {"seq": 1, "captured_at": time.time(), "line_b64": good},
            {"seq": 2, "captured_at": time.time(), "line_b64": "%%%"},
            {"seq": 3, "captured_at": -5, "line_b64": good},
        ],
    }
    async with httpx.AsyncClient(base_url=platform.direct, headers=AUTH) as client:
        answer = await client.post("/v1/edge/records", json=body)
        assert answer.status_code == 400
        assert [r["seq"] for r in answer.json()["rejected"]] == [2, 3]
        for bad, status in [
            ({**body, "device": "no spaces"}, 400),
            ({**body, "pbx_timezone": "Mars/Olympus"}, 400),
            ({**body, "records": [{"seq": 0, "captured_at": 1e9, "line_b64": good}]}, 400),
            ({**body, "records": []}, 400),
        ]:
            refused = await client.post("/v1/edge/records", json=bad)
            assert refused.status_code == status, refused.text
            assert set(refused.json()) >= {"error", "detail"}
        no_token = await client.post("/v1/edge/records", json=body, headers={"Authorization": ""})
        assert no_token.status_code == 401
    assert await platform.cdrs_of("refusal-test") == []


FAKE = Platform("http://unused", "", Gate(0))  # agent_settings wants a platform; URL replaced

Answer = tuple[int, dict[str, object] | None, dict[str, str]]


@contextlib.asynccontextmanager
async def fake_ingest(answers: list[Answer], seen: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A fake ingest on a real socket speaking the wire format: answers in turn (then 200),
    records what it was sent; yields its base URL."""

    async def records(request: Request) -> Response:
        seen.append(await request.json())
        status, body, headers = answers.pop(0) if answers else (200, {"accepted": 0}, {})
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    async def checkin(_request: Request) -> Response:
        return JSONResponse({"status": "accepted"})

    app = Starlette(
        routes=[
            Route("/v1/edge/records", records, methods=["POST"]),
            Route("/v1/edge/checkin", checkin, methods=["POST"]),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), "the fake ingest")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_refused_records_move_to_rejected_and_can_be_sent_again(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    answers: list[Answer] = [
        (
            400,
            {
                "error": "invalid_records",
                "detail": "seq 2 is odd",
                "rejected": [{"seq": 2, "error": "invalid_record", "detail": "odd line"}],
            },
            {},
        ),
        (200, {"accepted": 2, "duplicates": 0}, {}),
    ]
    async with fake_ingest(answers, seen) as url:
        await _refused_records(tmp_path, url, seen)


async def _refused_records(tmp_path: Path, url: str, seen: list[dict[str, Any]]) -> None:
    settings = replace(agent_settings(tmp_path, FAKE, source="mock"), ingest_url=url)
    agent = Agent(settings)
    agent.queue.append([outgoing(1), outgoing(2), outgoing(3)])
    await agent.delivery.run_once()  # 400 naming seq 2
    await agent.delivery.run_once()  # the rest: 200
    assert [[r["seq"] for r in b["records"]] for b in seen] == [[1, 2, 3], [1, 3]]
    assert agent.queue.depth == 0
    [rejected] = agent.queue.rejected()
    assert (rejected.seq, rejected.detail, rejected.line) == (2, "odd line", outgoing(2))
    assert agent.queue.resend_rejected() == 1
    await agent.delivery.run_once()
    assert [r["seq"] for r in seen[-1]["records"]] == [2]
    assert agent.queue.depth == 0
    assert agent.queue.rejected_count() == 0
    await agent.client.aclose()
    agent.queue.close()


async def test_retry_statuses_back_off_and_honour_retry_after(tmp_path: Path) -> None:
    answers: list[Answer] = [
        (503, None, {}),
        (429, None, {"Retry-After": "0.3"}),
        (429, None, {"Retry-After": "1"}),
        (200, {"accepted": 1, "duplicates": 0}, {}),
    ]
    async with fake_ingest(answers, []) as url:
        settings = replace(
            agent_settings(tmp_path, FAKE, source="mock", max_timeout_s=5), ingest_url=url
        )
        agent = Agent(settings)
        agent.queue.append([outgoing(1)])
        lines = agent.queue.peek(10)
        assert await agent.delivery.send(lines) == pytest.approx(0.05)  # TIMEOUT
        assert await agent.delivery.send(lines) == pytest.approx(0.075)  # x TIMEOUT_DECAY
        assert await agent.delivery.send(lines) == pytest.approx(1.0)  # Retry-After: 1
        assert agent.queue.depth == 1  # nothing leaves before a 2xx
        assert await agent.delivery.send(lines) == 0
        assert agent.queue.depth == 0
        assert agent.delivery.backoff.next == settings.timeout_s  # reset on success
        await agent.client.aclose()
        agent.queue.close()
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert retry_after_s("soon") == 0
