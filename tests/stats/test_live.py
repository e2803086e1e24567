"""The live feed (server-sent events) and the dashboard in a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdr_stats.call_fields import BUCKET_S
from cdr_stats.live import LiveHub
from tests.browser import chromium_binary as _chromium
from tests.browser import chromium_page
from tests.stats.conftest import (
    make_cdr,
    memory_bus,
    publish,
    recent_bucket,
    served,
    stats_app,
    wait_processed,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event:
            yield event, json.loads(line[6:])
            event = None


async def test_live_feed_carries_buckets_and_alerts(fresh_pg_url: str, tmp_path: Path) -> None:
    app = stats_app(fresh_pg_url, memory_bus(), tmp_path)
    b = recent_bucket(0)
    async with served(app) as base, httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", base + "/v1/live") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            await publish(app, [make_cdr(b + 1, carrier="live-c", billsec=12) for _ in range(3)])
            await publish(app, [make_cdr(b + 2, callee="87382738392", carrier="live-c")])
            seen: dict[str, Any] = {}
            async with asyncio.timeout(10):
                async for event, data in _events(response):
                    if event == "alert":
                        seen["alert"] = data
                    elif event == "bucket" and data["group"] == {"carrier": "live-c"}:
                        seen["bucket"] = data
                    if (
                        "alert" in seen
                        and seen.get("bucket", {}).get("metrics", {}).get("attempts") == 4
                    ):
                        break
            assert seen["alert"]["kind"] == "fraud_prefix"
            assert seen["alert"]["labels"]["prefix"] == "873"
            assert seen["bucket"]["start"] == b
            assert seen["bucket"]["metrics"]["answered"] == 4
        alerts = (await client.get(base + "/v1/alerts")).json()["items"]
        assert [a["id"] for a in alerts] == [seen["alert"]["id"]]


async def test_a_slow_live_client_cannot_grow_memory() -> None:
    hub = LiveHub(queue_size=8, keepalive_s=60)
    stream = hub.stream([])
    assert await anext(stream) == "retry: 3000\n\n"
    (client,) = hub.clients  # subscribed, and from now on reads nothing
    for i in range(1000):
        hub.publish("bucket", {"i": i})
    assert client.queue.qsize() == 8
    assert client.dropped == 992
    # when it reads again it is told how many events it missed, then gets the queued ones
    assert await anext(stream) == 'event: dropped\ndata: {"events":992}\n\n'
    assert await anext(stream) == 'event: bucket\ndata: {"i":0}\n\n'
    await stream.aclose()
    assert hub.clients == set()


async def test_closing_the_hub_ends_the_stream_of_a_slow_client() -> None:
    """The service's stop closes every live stream with an end marker in the client's queue;
    a slow client's full queue dropped the marker, so its stream never ended (keep-alives
    forever, holding the shutdown up)."""
    hub = LiveHub(queue_size=2, keepalive_s=0.05)
    stream = hub.stream([])
    assert await anext(stream) == "retry: 3000\n\n"
    for i in range(5):
        hub.publish("bucket", {"i": i})
    hub.close()

    async def drain() -> list[str]:
        return [message async for message in stream]

    got = await asyncio.wait_for(drain(), timeout=5)
    assert all(not m.startswith(": keep-alive") for m in got)
    assert hub.clients == set()


# ---------------------------------------------------------------------------------------------
# Headless Chromium


async def test_dashboard_in_headless_chromium(fresh_pg_url: str, tmp_path: Path) -> None:
    binary = _chromium()
    app = stats_app(fresh_pg_url, memory_bus(), tmp_path)
    rng = random.Random(5)
    now_b = recent_bucket(0)
    carriers = {"vivo-sip": 0.75, "claro-tdm": 0.55, "oi-trunk": 0.35, "tim-gw": 0.65, "algar": 0.5}
    history = []
    for back in range(12, 0, -1):
        b = now_b - back * BUCKET_S
        for carrier, asr in carriers.items():
            for _ in range(rng.randint(15, 40)):
                answered = rng.random() < asr * (0.4 if carrier == "oi-trunk" and back < 4 else 1)
                history.append(
                    make_cdr(
                        b + rng.randint(0, 359),
                        carrier=carrier,
                        billsec=rng.randint(6, 400) if answered else 0,
                        sip_code=200 if answered else rng.choice([486, 487, 404]),
                    )
                )
    async with served(app) as base, chromium_page(binary, tmp_path) as page:
        await publish(app, history)
        await wait_processed(app, len(history))
        await page.call("Page.enable")
        page.diagnose = (
            "JSON.stringify({status: document.getElementById('status').textContent, "
            "polylines: [...document.querySelectorAll('#chart-attempts polyline')].map("
            "p => [p.dataset.carrier, p.getAttribute('points').split(' ').length]), "
            "renders: document.body.dataset.rendered})"
        )
        await page.call("Page.navigate", url=base + "/dashboard")
        await page.until(
            "Number(document.getElementById('chart-attempts').dataset.points || 0) >= 40",
            "the history on its charts",
        )
        await page.js("window.__sameDocument = 'yes'")
        # data flowing after the page loaded: new calls in the current bucket, then an alert
        await publish(app, [make_cdr(now_b + 5, carrier="vivo-sip") for _ in range(30)])
        await page.until(
            "[...document.querySelectorAll('#chart-attempts polyline')].some("
            "p => p.dataset.carrier === 'vivo-sip' "
            "&& p.getAttribute('points').split(' ').length >= 13)",
            "the live bucket on its attempts chart",
        )
        await publish(
            app, [make_cdr(now_b + 9, callee="15195551234", billsec=95, carrier="oi-trunk")]
        )
        text = await page.until(
            "(document.querySelector('#alerts li[data-kind=fraud_prefix]') || {}).textContent",
            "the fraud alert in its feed",
        )
        assert "15195551234" in text
        assert await page.js("window.__sameDocument") == "yes"  # no reload happened
        for name in ("attempts", "asr", "acd", "zero_duration_ratio"):
            series = await page.js(f"document.getElementById('chart-{name}').dataset.series")
            assert series == "5", name
        shot = await page.call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(exist_ok=True)
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    (ARTIFACTS / "stats-dashboard.png").write_bytes(png)
