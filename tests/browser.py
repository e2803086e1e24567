"""Headless Chromium (Debian's, at /usr/bin/chromium) driven over the DevTools protocol: a
minimal client on the page target's websocket, shared by the dashboard and console tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdrkit.testing.processes import spawn, stop

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed and `make chromium` could not install it "
            "(apt-get unavailable or no network): the page was not opened in a browser"
        )
    return found


class Cdp:
    """A minimal Chrome DevTools protocol client over the page target's websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        # What `until` reports when it gives up (an expression evaluated in the page).
        self.diagnose = "document.body ? document.body.innerText.slice(0, 800) : ''"

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

    async def js(self, expression: str, *, wait: bool = False) -> Any:
        out = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=wait
        )
        if "exceptionDetails" in out:
            raise AssertionError(f"{expression[:80]}: {out['exceptionDetails']}")
        return out["result"].get("value")

    async def until(self, expression: str, what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.js(expression)
            except AssertionError:  # thrown in the page (e.g. while a navigation replaces it)
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.js(self.diagnose)
                raise AssertionError(f"the page never showed {what}: {state}")
            await asyncio.sleep(0.1)

    async def screenshot(self, name: str) -> bytes:
        shot = await self.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / name).write_bytes(png)
        return png


@contextlib.asynccontextmanager
async def chromium_page(
    binary: str, tmp: Path, extra_args: Sequence[str] = (), size: str = "1280,860"
) -> AsyncIterator[Cdp]:
    from websockets.asyncio.client import connect

    profile = tmp / "chromium-profile"
    # Its own process group, stopped by the watchdog if pytest dies (chromium forks helpers).
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
            f"--window-size={size}",
            *extra_args,
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
