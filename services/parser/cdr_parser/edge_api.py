"""``GET /v1/edge/devices``: the edge agents and what they said in their last check-in."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from cdr_parser.deps import ParserDep
from cdr_parser.devices import refresh_gauges
from cdr_parser.schemas import DeviceList
from cdrkit.auth import READ
from cdrkit.params import known_query_only

router = APIRouter(tags=["edge"], dependencies=[Depends(known_query_only)])


@router.get("/v1/edge/devices", response_model=DeviceList, dependencies=[READ])
async def list_devices(parser: ParserDep) -> dict[str, object]:
    """Every device: first/last seen, version, source state, queue depth and oldest age,
    rejected lines, and ``stale`` once it missed two check-ins."""
    return {"items": await refresh_gauges(parser.repo)}
