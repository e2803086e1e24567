"""The live feed (server-sent events) and the dashboard in a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdr_stats.call_fields import BUCKET_S
from cdr_stats.live import LiveHub
from cdrkit.testing.processes import spawn, stop
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


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed and `make chromium` could not install it "
            "(apt-get unavailable or no network): the dashboard was not opened in a browser"
        )
    return found


class Cdp:
    """A minimal Chrome DevTools protocol client over the page target's websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    async def js(self, expression: str) -> Any:
        out = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return out["result"].get("value")

    async def until(self, expression: str, what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.js(
                    "JSON.stringify({status: document.getElementById('status').textContent, "
                    "polylines: [...document.querySelectorAll('#chart-attempts polyline')].map("
                    "p => [p.dataset.carrier, p.getAttribute('points').split(' ').length]), "
                    "renders: document.body.dataset.rendered})"
                )
                raise AssertionError(f"the dashboard never showed {what}: {state}")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def chromium_page(binary: str, tmp: Path) -> AsyncIterator[Cdp]:
    from websockets.asyncio.client import connect

    profile = tmp / "chromium-profile"
    proc = spawn(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,860",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode} before it listened")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as client:
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Cdp(ws)
    finally:
        stop(proc, timeout_s=10)


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
        await page.call("Page.navigate", url=base + "/")
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
