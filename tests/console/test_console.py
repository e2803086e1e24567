"""The operator console in a real headless Chromium against the all-in-one (every service's APIs,
SQLite, the in-process bus): find a posted call by number, open it, read its charge explanation,
play its recording, download it; a bill's total; what a read-only token sees; accessibility."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
import shutil
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cdr_parser.freeswitch import map_xml, parse_xml
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_allinone_app
from cdrmodel import CDR
from tests.browser import ROOT, Cdp, chromium_binary, chromium_page
from tests.stats.conftest import served

pytestmark = pytest.mark.integration

TOKENS = {
    "read": "console-read-0123456789abcdef",
    "operate": "console-operate-0123456789abcdef",
}
API_TOKENS = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
SWITCH_ROOT = "/var/lib/freeswitch/recordings"
# Let <audio>.play() start without a click (the test plays it from script).
CHROMIUM_ARGS = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]


def tone_wav(path: Path, seconds: float = 3.0, rate: int = 8000) -> None:
    """A 440 Hz tone, 16-bit mono PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def recorded_outbound_call() -> tuple[str, str, CDR]:
    """A mock FreeSWITCH A-leg: answered, recorded, to an outside number (so it is priced)."""
    for seed in range(2000):
        call_id, xml = generate_cdr(random.Random(seed))
        if "<originator>" in xml or "record_name" not in xml:
            continue
        cdr = map_xml(parse_xml(xml), call_id_hint=call_id, a_leg_hint=True)
        callee = cdr.callee_number or ""
        if (
            cdr.disposition is not None
            and cdr.disposition.value == "answered"
            and cdr.recording_path
            and len(callee) > 6
            and (cdr.billsec_s or 0) >= 5
        ):
            return call_id, xml, cdr
    raise AssertionError("the mock feed made no recorded outbound call in 2000 seeds")


@dataclass
class Console:
    base: str
    client: httpx.AsyncClient
    cdr: CDR


async def wait_for_json(client: httpx.AsyncClient, url: str, what: str, **kw: Any) -> Any:
    for _ in range(200):
        r = await client.get(url, **kw)
        if r.status_code == 200:
            return r.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never answered 200: {r.status_code} {r.text}")


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    data = tmp_path / "data"
    call_id, xml, cdr = recorded_outbound_call()
    assert cdr.recording_path is not None
    tone_wav(data / "recordings" / cdr.recording_path.removeprefix(SWITCH_ROOT + "/"))
    app = create_allinone_app(
        data_dir=data, bus_url=f"memory://console-{tmp_path.name}", api_tokens=API_TOKENS
    )
    read = {"Authorization": f"Bearer {TOKENS['read']}"}
    async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post(
            "/v1/cdr",
            params={"uuid": f"a_{call_id}"},
            content=xml.encode(),
            headers={"Content-Type": "text/xml"},
        )
        assert r.status_code == 200, r.text
        # A document the parser cannot map: a dead letter for the retry button.
        r = await client.post(
            "/v1/cdr",
            content=b"<cdr><variables><uuid>dead-letter-1</uuid></variables></cdr>",
            headers={"Content-Type": "text/xml"},
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/edge/checkin",
            json={
                "device": "hipath-pabx-1",
                "version": "0.1.0",
                "source": "serial",
                "source_state": "open",
                "queue_depth": 7,
                "checkin_interval_s": 30,
            },
        )
        assert r.status_code == 200, r.text
        now = datetime.now(UTC)
        for node, finished in (("mgr-a", now), ("mgr-b", now - timedelta(hours=3))):
            r = await client.post(
                "/v1/pexip/pulls",
                json={
                    "node": node,
                    "finished": finished.isoformat(),
                    "until": finished.isoformat(),
                    "conferences": 12,
                    "participants": 40,
                    "posted": 52,
                    "cron": "*/15 * * * *",
                },
            )
            assert r.status_code == 200, r.text
        cid = quote(call_id, safe="")
        await wait_for_json(client, f"/v1/cdrs/{cid}", "the CDR", headers=read)
        await wait_for_json(client, f"/v1/charges/{cid}", "the charge", headers=read)
        await wait_for_json(client, f"/v1/recordings/{cid}", "the recording", headers=read)
        for _ in range(200):
            letters = (await client.get("/v1/dead-letters", headers=read)).json()["items"]
            if letters:
                break
            await asyncio.sleep(0.05)
        assert letters, "the unmappable document never became a dead letter"
        yield Console(base, client, cdr)


async def sign_in(page: Cdp, token: str) -> None:
    await page.js(f"document.getElementById('token').value = {token!r}")
    await page.js("document.getElementById('signin-button').click()")
    await page.until(
        "document.getElementById('who').textContent.startsWith('signed in')", "the sign-in"
    )


async def test_find_a_call_hear_it_see_its_charge_and_bill(
    console: Console, tmp_path: Path
) -> None:
    binary = chromium_binary()
    cdr = console.cdr
    read = {"Authorization": f"Bearer {TOKENS['read']}"}
    async with chromium_page(binary, tmp_path, CHROMIUM_ARGS, size="1366,768") as page:
        await page.call("Page.enable")
        await page.call("Page.navigate", url=console.base + "/")
        await page.until("document.body.dataset.ready === '1'", "the console")
        # Tokens are configured: nothing is shown before sign-in.
        await page.until("!!document.querySelector('#results .error')", "the 401 before sign-in")
        await sign_in(page, TOKENS["read"])

        # Calls: find it by its caller number.
        number = cdr.caller_number
        assert number
        await page.call("Page.navigate", url=console.base + "/calls")
        await page.until("!!document.getElementById('f-number')", "the calls form")
        await page.js(f"document.getElementById('f-number').value = {number!r}")
        await page.js("document.getElementById('find').click()")
        link = f"a.call-link[href='/calls/{quote(cdr.call_id, safe='')}']"
        await page.until(f"!!document.querySelector({link!r})", "the posted call in the results")
        assert await page.js("location.search") == f"?number={quote(number, safe='')}"
        # ... and by the start of its callee's number (either side, a prefix)
        prefix = (cdr.callee_number or "")[:4]
        await page.js("document.getElementById('calls-table').dataset.old = '1'")
        await page.js(f"document.getElementById('f-number').value = {prefix + '*'!r}")
        await page.js("document.getElementById('find').click()")
        await page.until(
            f"location.search === '?number_prefix={prefix}'"
            " && !document.querySelector('#calls-table[data-old]')"
            f" && !!document.querySelector({link!r})",
            "the call found by a prefix of its callee",
        )
        await page.screenshot("console-calls.png")
        # CSV export of the current filter (fetched with the token, saved from a blob).
        await page.js(
            "window.__csv = null; const make = URL.createObjectURL;"
            " URL.createObjectURL = b => {"
            " b.text().then(t => { window.__csv = t; }); return make(b); }"
        )
        await page.js("document.getElementById('csv').click()")
        csv_text = await page.until("window.__csv", "the CSV export")
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert [r["call_id"] for r in rows] == [cdr.call_id]
        assert rows[0]["caller_number"] == number

        # Open it: every normalised field, the raw document, the charge explained.
        await page.js(f"document.querySelector({link!r}).click()")
        await page.until("!!document.getElementById('charge-explanation')", "the charge")
        charge = (await console.client.get(f"/v1/charges/{cdr.call_id}", headers=read)).json()
        shown = await page.js("document.getElementById('charge-explanation').innerText")
        assert f"{charge['total']} {charge['currency']}" in shown
        assert "default version 1" in shown
        assert "Increments" in shown
        assert "rounded down" in shown
        bands = await page.js(
            "[...document.querySelectorAll('#charge-bands tbody tr')]"
            ".map(r => r.cells[0].textContent)"
        )
        assert bands == [b["band"] for b in charge["explanation"]["bands"]]
        fields = await page.js("document.getElementById('cdr-fields').innerText")
        assert cdr.call_id in fields
        assert (cdr.callee_number or "") in fields
        raw = await page.js("document.getElementById('raw-document').textContent")
        assert raw.startswith("<cdr")
        assert "\n  <variables>" in raw

        # The recording plays (time advances) and downloads as an attachment.
        played = await page.js(
            "(async () => { const a = document.getElementById('recording-audio');"
            " await a.play(); await new Promise(r => setTimeout(r, 1200));"
            " return [a.currentTime, a.paused, a.duration]; })()",
            wait=True,
        )
        assert played[0] > 0.3, played
        assert played[2] == pytest.approx(3.0, abs=0.1)
        await page.js("document.getElementById('recording-audio').currentTime = 2.5")
        await page.until(
            "document.getElementById('recording-audio').currentTime >= 2.5", "a seek (Range)"
        )
        href = await page.js("document.getElementById('recording-download').href")
        assert "access_token=" in href  # an <a> cannot send the header
        r = await console.client.get(href)
        assert r.status_code == 200
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.content[:4] == b"RIFF"
        await page.screenshot("console-call.png")
        shutil.copyfile(ROOT / "test-artifacts/console-call.png", tmp_path / "call.png")

        # The bill page shows the API's total for the month the call ended in.
        subscriber = charge["subscriber"]
        bill = (
            await console.client.get(
                f"/v1/bills/{subscriber}", params={"period": "current"}, headers=read
            )
        ).json()
        assert bill["provisional"] is True
        assert charge["call_id"] in [c["call_id"] for c in bill["calls"]]
        await page.call(
            "Page.navigate",
            url=f"{console.base}/bills?subscriber={quote(subscriber)}&period=current",
        )
        await page.until("!!document.getElementById('bill-total')", "the bill")
        assert (
            await page.js("document.getElementById('bill-total').dataset.amount") == bill["total"]
        )
        assert (
            await page.js("document.getElementById('bill-total').textContent")
            == bill["total_price"]
        )
        assert await page.js("!!document.getElementById('provisional')")
        await page.screenshot("console-bill.png")


async def test_read_only_token_sees_no_retry_and_a_write_shows_the_403(
    console: Console, tmp_path: Path
) -> None:
    binary = chromium_binary()
    async with chromium_page(binary, tmp_path, CHROMIUM_ARGS) as page:
        await page.call("Page.enable")
        await page.call("Page.navigate", url=console.base + "/dead-letters")
        await page.until("document.body.dataset.ready === '1'", "the console")
        await sign_in(page, TOKENS["operate"])
        await page.call("Page.navigate", url=console.base + "/dead-letters")
        await page.until(
            "!!document.querySelector('#letters-table button.retry')", "retry (operate)"
        )

        await sign_in(page, TOKENS["read"])
        await page.call("Page.navigate", url=console.base + "/dead-letters")
        await page.until(
            "document.body.dataset.ready === '1' && document.body.dataset.role === 'read'"
            " && !!document.getElementById('letters-table')",
            "the dead letters (read)",
        )
        assert await page.js("document.querySelectorAll('button.retry').length") == 0
        reason = await page.js("document.querySelector('#letters-table .reason').textContent")
        assert reason
        # A write attempt all the same (an old tab, a hand-made request): the 403 is shown.
        letter = await page.js("document.querySelector('#letters-table tbody td').textContent")
        await page.js(f"window.cdrflow.retry({int(letter)})")
        text = await page.until(
            "(document.getElementById('write-error') || {}).textContent", "the 403"
        )
        assert text.startswith("403 forbidden")
        assert "operate role" in text

        # The edge device that checked in: its queue, and not stale.
        await page.call("Page.navigate", url=console.base + "/devices")
        row = await page.until(
            "[...document.querySelectorAll('main tbody tr')].map(r => r.innerText).join('|')",
            "the edge device",
        )
        assert "hipath-pabx-1" in row
        assert "\t7\t" in row  # queue depth
        assert row.rstrip().endswith("ok")
        # Stats: the dashboard in the same navigation, its data and live feed under the token.
        await page.call("Page.navigate", url=console.base + "/stats")
        await page.until(
            "(() => { const f = document.querySelector('iframe.stats');"
            " const d = f && f.contentDocument;"
            " return !!d && d.getElementById('status')?.textContent === 'live'; })()",
            "the stats dashboard live inside the console",
        )
        # Pexip pulls: the node that pulls on schedule is ok, the one that stopped is stale.
        await page.call("Page.navigate", url=console.base + "/pexip")
        rows = await page.until(
            "[...document.querySelectorAll('main tbody tr')].map(r => r.innerText)",
            "the Pexip pulls",
        )
        assert [(r.split("\t")[0], r.rstrip().split("\t")[-1].split(" ")[0]) for r in rows] == [
            ("mgr-a", "ok"),
            ("mgr-b", "stale"),
        ]


async def test_accessibility_smoke_and_phone_width(console: Console, tmp_path: Path) -> None:
    binary = chromium_binary()
    async with chromium_page(binary, tmp_path, size="390,844") as page:
        await page.call("Page.enable")
        await page.call("Page.navigate", url=console.base + "/calls")
        await page.until("document.body.dataset.ready === '1'", "the console")
        await sign_in(page, TOKENS["read"])
        for path in ("/calls", "/bills", "/dead-letters", f"/calls/{console.cdr.call_id}"):
            await page.call("Page.navigate", url=console.base + path)
            await page.until(
                "document.body.dataset.ready === '1' && !!document.querySelector('main h1')",
                f"{path} drawn",
            )
            await asyncio.sleep(0.3)
            problems = await page.js(
                """(() => {
                  const out = [];
                  for (const el of document.querySelectorAll('input, select, textarea')) {
                    if (el.type === 'hidden') continue;
                    const label = el.id && document.querySelector(`label[for="${el.id}"]`);
                    if (!label && !el.getAttribute('aria-label') && !el.closest('label'))
                      out.push('unlabelled ' + (el.name || el.id || el.type));
                  }
                  for (const b of document.querySelectorAll('button, a'))
                    if (!b.textContent.trim() && !b.getAttribute('aria-label') && b.offsetParent)
                      out.push('nameless ' + b.outerHTML.slice(0, 60));
                  if (document.querySelectorAll('main h1').length !== 1) out.push('one h1');
                  if (!document.documentElement.lang) out.push('no lang');
                  if (document.documentElement.scrollWidth > window.innerWidth + 1)
                    out.push('wider than the phone: ' + document.documentElement.scrollWidth);
                  return out;
                })()"""
            )
            assert problems == [], (path, problems)
        # Keyboard: Tab from the top reaches the skip link, then the navigation in order, and
        # a visible focus ring is drawn.
        await page.call("Page.navigate", url=console.base + "/calls")
        await page.until("!!document.getElementById('f-number')", "the calls form")
        order = []
        for _ in range(9):
            await page.call("Input.dispatchKeyEvent", type="keyDown", key="Tab", code="Tab")
            await page.call("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab")
            order.append(
                await page.js(
                    "(() => { const e = document.activeElement;"
                    " return (e.textContent || e.id || e.tagName).trim().slice(0, 20); })()"
                )
            )
        assert order[:8] == [
            "Skip to content",
            "cdrflow",
            "Calls",
            "Bills",
            "Dead letters",
            "Edge devices",
            "Pexip pulls",
            "Stats",
        ], order
        outline = await page.js("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        await page.screenshot("console-phone.png")
