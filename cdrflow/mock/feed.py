"""The built-in mock call feed: realistic FreeSWITCH CDRs posted to our own ingest over HTTP, so a
newcomer sees data at once (``CDRFLOW_MOCK_RATE`` calls per minute; 0 turns it off)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from cdr_ingest.auth import parse_basic_auth, parse_tokens
from cdr_ingest.edge.agent import Agent
from cdr_ingest.settings import IngestSettings
from cdr_recordings.settings import RecordingsSettings
from cdrflow.mock import generate_cdr
from cdrflow.mock.audio import AudioWriter, recording_of
from cdrkit.app import Runtime, ServiceSpec

log = logging.getLogger(__name__)


@dataclass
class MockFeed:
    base_url: str
    rate_per_min: float
    seed: int | None = None
    auth_headers: dict[str, str] = field(default_factory=dict)  # when ingest requires auth
    audio: AudioWriter | None = None  # writes the recordings the CDRs name
    posted: int = 0
    failed: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def ready(self) -> None:
        return None  # the feed is a demo aid; it never makes the platform unready

    async def run(self) -> None:
        rng = random.Random(self.seed)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30, headers=self.auth_headers
        ) as client:
            await wait_until_up(client)
            log.info("mock feed posting %.0f calls/min to %s", self.rate_per_min, self.base_url)
            while True:
                uuid, xml = generate_cdr(rng)
                # As mod_xml_cdr with prefix-a-leg: "a_" marks A-legs; B-legs carry an originator.
                param = uuid if "<originator>" in xml else f"a_{uuid}"
                recording = recording_of(xml) if self.audio is not None else None
                if recording is not None and self.audio is not None:
                    try:
                        await asyncio.to_thread(self.audio.write, recording, uuid)
                    except OSError as exc:
                        log.warning("mock feed could not write %s: %s", recording, exc)
                # Alternate the two encodings FusionPBX-era switches use most.
                if rng.random() < 0.5:
                    req = client.post(
                        "/v1/cdr",
                        params={"uuid": param},
                        content=b"cdr=" + quote(xml, safe="").encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    )
                else:
                    req = client.post(
                        "/v1/cdr",
                        params={"uuid": param},
                        content=xml.encode(),
                        headers={"Content-Type": "text/xml"},
                    )
                try:
                    resp = await req
                    if resp.status_code == 200:
                        self.posted += 1
                    else:
                        self.failed += 1
                        log.warning("mock feed post answered %s: %s", resp.status_code, resp.text)
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.warning("mock feed post failed: %s", exc)
                await asyncio.sleep(rng.expovariate(self.rate_per_min / 60.0))


async def wait_until_up(client: httpx.AsyncClient, stop: asyncio.Event | None = None) -> None:
    """Wait until the platform's own server answers ``/healthz`` (or ``stop`` is set): the mocks
    start with the app, before uvicorn listens."""
    while stop is None or not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.2)


def auth_headers(settings: IngestSettings) -> dict[str, str]:
    """What the feed sends so that an ingest with credentials configured accepts it: the first
    bearer token, else the first Basic user (as a switch configured with ``cred`` would)."""
    if settings.tokens is not None:
        token = parse_tokens(settings.tokens.get_secret_value())[0]
        return {"Authorization": f"Bearer {token.decode()}"}
    if settings.basic_auth is not None:
        user, password = parse_basic_auth(settings.basic_auth.get_secret_value())[0]
        return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}
    return {}


def feed_spec(
    base_url: str,
    rate_per_min: float,
    seed: int | None = None,
    settings: IngestSettings | None = None,
    recordings: RecordingsSettings | None = None,
) -> ServiceSpec:
    """``recordings``: write a few seconds of tone where each recorded call's CDR says its
    recording is (the recordings service's local root), so the demo's calls play."""
    headers = auth_headers(settings) if settings is not None else {}
    audio = (
        AudioWriter(recordings.effective_local_root, recordings.switch_root)
        if recordings is not None
        else None
    )

    @asynccontextmanager
    async def start(_runtime: Runtime) -> AsyncIterator[MockFeed]:
        feed = MockFeed(base_url, rate_per_min, seed, headers, audio)
        task = asyncio.create_task(feed.run(), name="mock-feed")
        try:
            yield feed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ServiceSpec("mockfeed", start, uses_database=False)


@dataclass
class MockEdge:
    agent: Agent

    def ready(self) -> None:
        return None  # a demo aid, like the mock feed: never makes the platform unready


def mock_edge_spec(
    base_url: str, rate_per_min: float, data_dir: Path, settings: IngestSettings | None = None
) -> ServiceSpec:
    """A ``cdrflow edge`` agent with the mock HiPath source, inside the all-in-one process
    (``CDRFLOW_MOCK_EDGE`` calls per minute): serial calls flow through the real agent, queue,
    ingest route and mapping, next to the mock FreeSWITCH feed."""
    from cdr_ingest.edge.settings import EdgeSettings

    token = None
    if settings is not None and settings.tokens is not None:
        token = parse_tokens(settings.tokens.get_secret_value())[0].decode()

    @asynccontextmanager
    async def start(_runtime: Runtime) -> AsyncIterator[MockEdge]:
        agent = Agent(
            EdgeSettings(
                source="mock",
                data_dir=data_dir / "edge-mock",
                ingest_url=base_url,
                token=token,
                device_id="mock-hipath",
                pbx_timezone="Europe/Berlin",
                mock_rate=rate_per_min,
                timeout_s=0.5,
                max_timeout_s=10,
            )
        )
        stop = asyncio.Event()

        async def run() -> None:
            # Its first check-in and delivery would find nothing listening yet.
            async with httpx.AsyncClient(base_url=base_url) as client:
                await wait_until_up(client, stop)
            await agent.run(stop)

        task = asyncio.create_task(run(), name="mock-edge")
        try:
            yield MockEdge(agent)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(10):
                    await task

    return ServiceSpec("mockedge", start, uses_database=False)
