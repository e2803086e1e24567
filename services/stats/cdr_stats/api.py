"""The stats service's HTTP routes: buckets, alerts, the live feed, plugins and the dashboard."""

from __future__ import annotations

import time
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from cdr_stats.aggregate import ALL
from cdr_stats.call_fields import DIMENSIONS
from cdr_stats.deps import StatsDep
from cdr_stats.schemas import AlertPage, BucketPage, Deleted, PluginsOut
from cdr_stats.service import NEEDS
from cdrkit.auth import ADMIN, OPERATE, READ, READ_OR_QUERY
from cdrkit.openapi import media
from cdrkit.query import parse_instant
from cdrmodel.errors import InvalidInput

router = APIRouter(tags=["stats"])

_MAX_SPAN_S = 31 * 86400


def _epoch(value: str, name: str) -> int:
    return int(parse_instant(value, name).timestamp())


@router.get(
    "/v1/buckets",
    dependencies=[READ],
    responses={200: {"model": BucketPage, "description": "The buckets"}},
)
async def get_buckets(
    stats: StatsDep,
    since: Annotated[
        str | None, Query(description="epoch s or ISO 8601; default until - 1 h")
    ] = None,
    until: Annotated[str | None, Query(description="epoch s or ISO 8601; default now")] = None,
    group_by: Annotated[
        str | None, Query(description="carrier, account, direction or tenant")
    ] = None,
    metric: Annotated[
        str | None, Query(description="comma-separated metric names to return")
    ] = None,
) -> Response:
    """6-minute buckets whose start is in [since rounded down to a bucket, until), one entry per
    bucket (and group value with ``group_by``); buckets without calls are left out."""
    end = _epoch(until, "until") if until else int(time.time()) + 1
    start = _epoch(since, "since") if since else end - 3600
    if start >= end:
        raise InvalidInput(f"since ({start}) must be before until ({end})")
    if end - start > _MAX_SPAN_S:
        raise InvalidInput("since and until are more than 31 days apart; ask for less")
    if group_by is not None and group_by not in DIMENSIONS:
        raise InvalidInput(f"group_by={group_by!r}: must be one of {', '.join(DIMENSIONS)}")
    wanted = None
    if metric:
        wanted = [m.strip() for m in metric.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in NEEDS]
        if unknown or not wanted:
            raise InvalidInput(f"unknown metric {', '.join(unknown)}: known are {', '.join(NEEDS)}")
    body = await stats.buckets_json(group_by or ALL, start, end, wanted)
    return Response(body, media_type="application/json")


@router.get("/v1/alerts", response_model=AlertPage, dependencies=[READ])
async def get_alerts(
    stats: StatsDep,
    since: Annotated[
        str | None, Query(description="created at or after (epoch s / ISO 8601)")
    ] = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts, newest first (each stored once: deduplicated per kind, bucket and labels)."""
    after = parse_instant(since, "since") if since else None
    rows = await stats.alerts(since=after, kind=kind, limit=limit)
    return {"items": [a.to_json() for a in rows]}


@router.delete("/v1/alerts", response_model=Deleted, dependencies=[OPERATE])
async def delete_alerts(
    stats: StatsDep,
    before: Annotated[
        str | None, Query(description="delete those created before; default all")
    ] = None,
) -> dict[str, int]:
    """Delete alerts created before ``before`` (every alert without it)."""
    cut: datetime | None = parse_instant(before, "before") if before else None
    return {"deleted": await stats.delete_alerts(cut)}


@router.get(
    "/v1/live",
    dependencies=[READ_OR_QUERY],
    response_class=Response,
    responses={
        200: media("Server-sent events (never ends while the service runs)", "text/event-stream")
    },
)
async def live(stats: StatsDep) -> StreamingResponse:
    """Server-sent events: ``bucket`` (a changed bucket of all calls or of a carrier, at most
    every STATS_LIVE_INTERVAL_S), ``alert`` (as raised), ``dropped`` (this client was too slow and
    missed that many events), and keep-alive comments."""
    return StreamingResponse(
        stats.hub.stream(stats.snapshot()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/plugins", response_model=PluginsOut, dependencies=[READ])
async def get_plugins(stats: StatsDep) -> dict[str, Any]:
    """The plugins in use and those that failed to load (with why)."""
    return stats.plugins.describe()


@router.post("/v1/plugins/reload", response_model=PluginsOut, dependencies=[ADMIN])
async def reload_plugins(stats: StatsDep) -> dict[str, Any]:
    """Find the plugins again (entry points of ``cdrflow.stats_plugins``); no data is lost."""
    return stats.reload_plugins().describe()


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The live dashboard (one HTML file, no build step); the console's Stats page shows it."""
    page = resources.files("cdr_stats").joinpath("dashboard.html").read_text()
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
