"""The edge device registry (parser): newest check-in wins, first_seen kept, stale after two
missed check-ins, gauges per device.

Staleness is judged at an explicit ``now`` (``refresh_gauges(repo, now=…)``), so the test does
not depend on how long after collection it runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from cdr_parser.devices import checkin_row, refresh_gauges
from cdr_parser.repository import CdrRepository
from cdrkit.db import create_engine, migrate, session_factory
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def checkin(device: str, at: datetime, depth: int, interval_s: float = 60) -> RawEnvelope:
    payload = json.dumps(
        {
            "device": device,
            "version": "9.9",
            "source": "hipath-serial",
            "source_state": "open",
            "queue_depth": depth,
            "oldest_age_s": 12.5,
            "rejected": 1,
            "checkin_interval_s": interval_s,
        }
    )
    return RawEnvelope(
        id=f"{device}-{at.timestamp()}",
        kind=PayloadKind.EDGE_CHECKIN,
        received_at=at,
        source=Origin(remote_addr="10.1.2.3", node=device),
        content_type="application/json",
        payload=payload,
        sha256=sha256_hex(payload),
    )


async def test_newest_checkin_wins_and_a_silent_device_goes_stale(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    repo = CdrRepository(session_factory(engine), engine.dialect.name)
    try:
        fresh, silent = "reg-fresh", "reg-silent"
        first = checkin(fresh, NOW - timedelta(minutes=10), 5)
        newer = checkin(fresh, NOW - timedelta(seconds=30), 700)
        older = checkin(fresh, NOW - timedelta(minutes=5), 1)  # redelivered late
        await repo.upsert_devices([checkin_row(first, first.payload or "")])
        await repo.upsert_devices([checkin_row(newer, newer.payload or "")])
        await repo.upsert_devices([checkin_row(older, older.payload or "")])
        # Two intervals (2 x 60 s) plus a minute of slack: silent just beyond, on_edge just at
        # it; slow checks in every 10 minutes, so 20 silent minutes are not yet two missed.
        on_edge, slow = "reg-on-edge", "reg-slow"
        for device, silent_s, interval_s in [
            (silent, 181, 60),
            (on_edge, 180, 60),
            (slow, 1200, 600),
        ]:
            env = checkin(device, NOW - timedelta(seconds=silent_s), 3, interval_s)
            await repo.upsert_devices([checkin_row(env, env.payload or "")])
        devices = {d["device"]: d for d in await refresh_gauges(repo, now=NOW)}
        assert devices[fresh]["queue_depth"] == 700  # not rolled back by the late one
        assert devices[fresh]["first_seen"] == first.received_at.isoformat()
        assert devices[fresh]["last_seen"] == newer.received_at.isoformat()
        assert devices[fresh]["remote_addr"] == "10.1.2.3"
        assert devices[fresh]["since_last_seen_s"] == 30
        stale = {name: d["stale"] for name, d in devices.items()}
        assert stale == {fresh: False, silent: True, on_edge: False, slow: False}
        gauge = REGISTRY.get_sample_value
        assert gauge("cdrflow_edge_device_queue_depth", {"device": fresh}) == 700
        assert gauge("cdrflow_edge_device_stale", {"device": silent}) == 1
        assert gauge("cdrflow_edge_device_stale", {"device": fresh}) == 0
        assert gauge("cdrflow_edge_device_stale", {"device": on_edge}) == 0
        # The same registry a quarter of an hour later: the fresh device (60 s interval) is
        # stale now, the slow one (600 s) is beyond its 21 minutes too; judged at that instant.
        later = {
            d["device"]: d["stale"]
            for d in await refresh_gauges(repo, now=NOW + timedelta(minutes=15))
        }
        assert later == {fresh: True, silent: True, on_edge: True, slow: True}
        assert gauge("cdrflow_edge_device_stale", {"device": fresh}) == 1
    finally:
        await engine.dispose()
