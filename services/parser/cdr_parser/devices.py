"""The edge device registry: what each ``cdrflow edge`` agent said in its last check-in.

Ingest publishes every check-in as an ``edge.checkin`` envelope on ``cdr.raw``; the parser, the
service that owns a database on that topic, keeps one row per device (the newest check-in by
ingest's receive time wins, so a redelivered or reordered check-in never rolls a device back).
A device is ``stale`` once two check-ins are missed: nothing heard for twice its interval (plus
a minute of slack for a slow network). Every parser replica refreshes the
``cdrflow_edge_device_*`` gauges from the table, so each exposes the same values.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from cdr_parser.metrics import EDGE_DEVICE_OLDEST_AGE, EDGE_DEVICE_QUEUE_DEPTH, EDGE_DEVICE_STALE
from cdr_parser.repository import CdrRepository
from cdrmodel import RawEnvelope
from cdrmodel.edge import DEVICE_ID
from cdrmodel.errors import UnmappableRecord

STALE_SLACK = timedelta(seconds=60)
DEFAULT_INTERVAL_S = 300.0
REFRESH_S = 15.0

log = logging.getLogger(__name__)


def _epoch(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def checkin_row(env: RawEnvelope, payload: str) -> dict[str, Any]:
    """The registry row of a check-in envelope; ``UnmappableRecord`` when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise UnmappableRecord(f"the check-in is not JSON: {exc}") from exc
    device = data.get("device") if isinstance(data, dict) else None
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise UnmappableRecord("the check-in names no valid device")
    depth, rejected = _num(data.get("queue_depth")), _num(data.get("rejected"))
    return {
        "device": device,
        "first_seen": env.received_at,
        "last_seen": env.received_at,
        "version": _text(data.get("version"), 64),
        "source": _text(data.get("source"), 32),
        "source_state": _text(data.get("source_state"), 16),
        "source_error": _text(data.get("source_error"), 500),
        "last_line_at": _epoch(data.get("last_line_at")),
        "pbx_timezone": _text(data.get("pbx_timezone"), 64),
        "queue_depth": None if depth is None else int(depth),
        "queue_full": bool(data.get("queue_full")),
        "oldest_age_s": _num(data.get("oldest_age_s")),
        "rejected": None if rejected is None else int(rejected),
        "uptime_s": _num(data.get("uptime_s")),
        "checkin_interval_s": _num(data.get("checkin_interval_s")),
        "remote_addr": _text(env.source.remote_addr, 64),
    }


def is_stale(row: Any, now: datetime) -> bool:
    interval = row.checkin_interval_s or DEFAULT_INTERVAL_S
    return bool(now - row.last_seen > 2 * timedelta(seconds=interval) + STALE_SLACK)


def device_view(row: Any, now: datetime) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in ("first_seen", "last_seen", "last_line_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    data["stale"] = is_stale(row, now)
    data["since_last_seen_s"] = round((now - row.last_seen).total_seconds(), 3)
    return data


async def refresh_gauges(repo: CdrRepository, now: datetime | None = None) -> list[dict[str, Any]]:
    """Read the registry, set the gauges, return the devices (``GET /v1/edge/devices``).
    Staleness is judged at ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    rows = await repo.list_devices()
    for row in rows:
        EDGE_DEVICE_QUEUE_DEPTH.labels(row.device).set(row.queue_depth or 0)
        EDGE_DEVICE_OLDEST_AGE.labels(row.device).set(row.oldest_age_s or 0)
        EDGE_DEVICE_STALE.labels(row.device).set(1 if is_stale(row, now) else 0)
    return [device_view(row, now) for row in rows]


async def refresh_forever(repo: CdrRepository) -> None:
    while True:
        try:
            await refresh_gauges(repo)
        except Exception as exc:  # the database away: the next round tries again
            log.warning("edge device gauges not refreshed: %s", exc)
        await asyncio.sleep(REFRESH_S)
