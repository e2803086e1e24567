"""The demo data demonstrates: the mock feed's recordings play, and its default mix raises a
handful of alerts an hour, not one per carrier and bucket."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import wave
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest

from cdr_parser.freeswitch import map_xml, parse_xml
from cdr_recordings.settings import RecordingsSettings
from cdrflow.mock import generate_cdr
from cdrflow.mock.audio import SECONDS, AudioWriter, recording_of
from cdrflow.mock.feed import feed_spec, mock_edge_spec
from cdrflow.platform import create_allinone_app
from cdrkit.settings import load
from tests.stats.conftest import free_port, memory_bus, publish, served, stats_app, wait_processed


async def test_default_mix_raises_a_handful_of_alerts_an_hour(tmp_path: Path) -> None:
    """One hour at the default rate (30 calls/min) through the stats service with its default
    rules and plugins (no fraud lists, as `make run`): was ~190 alerts, one per SIP code outside
    the expected ones per carrier and bucket."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    n = 1800
    cdrs = []
    for i in range(n):
        call_id, xml = generate_cdr(rng, now=now - timedelta(seconds=3600 * (n - i) / n))
        cdrs.append(
            map_xml(parse_xml(xml), call_id_hint=call_id, a_leg_hint="<originator>" not in xml)
        )
    app = stats_app(
        f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}",
        memory_bus(),
        tmp_path,
        fraud_prefix_file=None,
    )
    async with served(app) as base, httpx.AsyncClient(base_url=base) as client:
        await publish(app, cdrs)
        await wait_processed(app, n)
        alerts = (await client.get("/v1/alerts", params={"limit": 1000})).json()["items"]
    kinds = Counter(a["kind"] for a in alerts)
    assert 1 <= len(alerts) <= 12, kinds
    answered = sum(1 for c in cdrs if c.disposition and c.disposition.value == "answered")
    assert 0.45 <= answered / n <= 0.65  # still a realistic PBX


def test_recording_path_is_read_from_the_cdr_and_kept_inside_the_root(tmp_path: Path) -> None:
    writer = AudioWriter(tmp_path / "rec", "/var/lib/freeswitch/recordings")
    xml = (
        "<cdr><variables><record_path>/var/lib/freeswitch/recordings/t.example/archive/2026"
        "</record_path><record_name>a%20b.wav</record_name></variables></cdr>"
    )
    path = recording_of(xml)
    assert path == "/var/lib/freeswitch/recordings/t.example/archive/2026/a b.wav"
    written = writer.write(path, "k1")
    assert written == (tmp_path / "rec/t.example/archive/2026/a b.wav").resolve()
    with wave.open(str(written)) as w:
        assert w.getnframes() / w.getframerate() == SECONDS
    # the same voice file, linked: no new audio bytes per call
    again = writer.write("/var/lib/freeswitch/recordings/t.example/x.wav", "k1")
    assert again is not None
    assert again.stat().st_ino == written.stat().st_ino
    assert writer.write("/etc/passwd", "k2") is None
    assert writer.write("/var/lib/freeswitch/recordings/../../../etc/x.wav", "k3") is None
    assert not list((tmp_path / "rec").glob("**/passwd"))


async def test_mock_feed_recordings_play(tmp_path: Path) -> None:
    """`cdrflow run` with the feed: each recorded mock call's audio answers as a WAV."""
    port = free_port()
    data = tmp_path / "data"
    overrides = {"data_dir": data, "bus_url": f"memory://{uuid4().hex}"}
    feed = feed_spec(
        f"http://127.0.0.1:{port}",
        1200,
        seed=3,
        recordings=load(RecordingsSettings, **overrides),
    )
    app = create_allinone_app([feed], **overrides)
    async with served(app, port) as base, httpx.AsyncClient(base_url=base) as client:
        played: list[tuple[float, str]] = []
        for _ in range(300):
            items = (await client.get("/v1/cdrs", params={"limit": 100})).json()["items"]
            recorded = [c for c in items if c["recording_path"]]
            for cdr in recorded[:3]:
                cid = quote(cdr["call_id"], safe="")
                r = await client.get(f"/v1/recordings/{cid}/audio")
                if r.status_code != 200:
                    continue
                with wave.open(io.BytesIO(r.content)) as w:
                    played.append((w.getnframes() / w.getframerate(), cdr["call_id"]))
            if len(played) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(played) >= 2, "no mock recording could be played"
        assert all(seconds == SECONDS for seconds, _ in played)


async def test_mock_edge_device_is_listed_as_soon_as_the_platform_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`make run`'s mock HiPath agent starts with the app, before uvicorn listens. It used to
    check in at once, find nothing listening, and wait its 5-minute interval: the device
    registry (`GET /v1/edge/devices`, the console's edge view) stayed empty while its calls came
    in. Now it waits for the server and is listed within seconds, with no failed check-in."""
    port = free_port()
    data = tmp_path / "data"
    edge = mock_edge_spec(f"http://127.0.0.1:{port}", 60, data)
    app = create_allinone_app([edge], data_dir=data, bus_url=f"memory://{uuid4().hex}")
    caplog.set_level(logging.WARNING, logger="cdr_ingest.edge")
    async with served(app, port) as base, httpx.AsyncClient(base_url=base) as client:
        devices: list[dict[str, object]] = []
        for _ in range(150):
            devices = (await client.get("/v1/edge/devices")).json()["items"]
            if devices:
                break
            await asyncio.sleep(0.1)
        assert [d["device"] for d in devices] == ["mock-hipath"]
        # Up to here: once the server stops, before the app's shutdown stops the agent, its
        # deliveries are refused, as they should be.
        failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert failed == []
