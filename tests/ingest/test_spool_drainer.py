"""The spool drainer: it ships the spool to the bus in order and empties it (drained segments
deleted), ingest stays ready while the bus is away, an unreadable segment does not end it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from cdr_ingest.settings import IngestSettings
from cdr_ingest.spool.drainer import Drainer
from cdr_ingest.spool.segment_log import SEGMENT_SUFFIX, Spool
from cdrflow.platform import create_service_app
from cdrkit.bus import open_bus
from tests.e2e.conftest import serving


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


async def test_the_drainer_ships_the_spool_in_order_and_empties_it(tmp_path: Path) -> None:
    bus = open_bus(f"memory://{uuid.uuid4().hex}")
    await bus.start()
    topic = f"spool-{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    spool = await Spool(tmp_path, max_bytes=1 << 24, segment_bytes=4096).open()
    for i in range(300):
        await spool.append(b"%04d" % i, b"same-call")
    drainer = Drainer(spool, bus.producer, topic, probe=bus.ping, batch_records=64)
    drainer.start()
    consumer = await bus.consumer([topic], "check")
    got: list[bytes] = []
    for _ in range(100):
        got += [m.value for m in await consumer.getmany(timeout_s=0.1, max_records=1000)]
        if len(got) >= 300 and spool.empty:
            break
    assert got == [b"%04d" % i for i in range(300)]
    assert spool.depth == 0
    assert _segments(tmp_path) == []
    await drainer.stop()
    await spool.close()
    await consumer.close()
    await bus.close()


async def test_ingest_spools_stays_ready_and_reports_while_the_bus_is_away(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    # Nothing listens on the port: every send fails, so every post goes to the spool.
    app = create_service_app(
        "ingest",
        bus_url="kafka://127.0.0.1:9?request_timeout_ms=1000",
        data_dir=tmp_path,
        spool_max_bytes=1024 * 1024,
        dedupe_window=0,  # the same document posted again must reach the spool again
    )
    xml = (
        fixtures_dir / "freeswitch/freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
    ).read_bytes()
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        for _ in range(3):
            resp = await client.post("/v1/cdr", content=xml, headers={"content-type": "text/xml"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "accepted"
        spool = (await client.get("/v1/spool")).json()
        assert spool["depth"] == 3
        assert spool["bytes"] > 3 * len(xml)
        assert spool["segments"] == 1
        assert spool["draining"] is False
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert "cdrflow_ingest_spool_depth 3.0" in metrics
        # Fill it: the answer becomes 503 (the switch keeps the CDR) and /readyz turns red.
        statuses: list[int] = []
        for _ in range(1024 * 1024 // len(xml) + 2):
            resp = await client.post("/v1/cdr", content=xml, headers={"content-type": "text/xml"})
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                break
        assert statuses[-1] == 503
        assert resp.json()["error"] == "spool_full"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "spool is full" in ready.text
    assert len(list((tmp_path / "spool").glob("*.seg"))) == 1


def test_spool_dir_setting(tmp_path: Path) -> None:
    assert IngestSettings(data_dir=tmp_path).effective_spool_dir == tmp_path / "spool"
    assert IngestSettings(spool_dir=tmp_path / "s").effective_spool_dir == tmp_path / "s"


async def test_an_unreadable_segment_does_not_end_the_drainer(tmp_path: Path) -> None:
    bus = open_bus(f"memory://{uuid.uuid4().hex}")
    await bus.start()
    topic = f"spool-{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    spool = await Spool(tmp_path, max_bytes=1 << 24).open()
    await spool.append(b"lost", b"k")
    for segment in _segments(tmp_path):
        segment.unlink()  # an operator's mistake, or a disk error: reads fail
    drainer = Drainer(spool, bus.producer, topic, probe=bus.ping, retry_max_s=0.05)
    drainer.start()
    for _ in range(100):
        if drainer.last_error:
            break
        await asyncio.sleep(0.02)
    assert drainer.last_error is not None
    assert "FileNotFoundError" in drainer.last_error
    await asyncio.sleep(0.2)
    assert drainer.running  # still retrying, not dead
    await drainer.stop()
    await spool.close()
    await bus.close()
