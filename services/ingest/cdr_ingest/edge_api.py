"""``POST /v1/edge/records`` and ``POST /v1/edge/checkin``: what a ``cdrflow edge`` agent sends."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cdr_ingest.api import read_body
from cdr_ingest.deps import IngestDep, PosterDep
from cdr_ingest.edge_records import InvalidRecords, decode_checkin, decode_records
from cdr_ingest.edge_service import accept_batch, accept_checkin
from cdr_ingest.metrics import EDGE_LINES
from cdr_ingest.schemas import CheckinAccepted, EdgeAccepted, EdgeRefused
from cdrkit.app import error_body
from cdrmodel import Origin

router = APIRouter(tags=["edge"])

MAX_CHECKIN_BYTES = 16 * 1024


def _origin(request: Request, user: str | None) -> Origin:
    return Origin(remote_addr=request.client.host if request.client else None, user=user)


@router.post(
    "/v1/edge/records",
    response_model=EdgeAccepted,
    responses={
        400: {"model": EdgeRefused, "description": "An invalid record (each named); none stored"},
        401: {},
        413: {},
        415: {},
        503: {},
    },
    response_class=JSONResponse,
)
async def post_edge_records(request: Request, ingest: IngestDep, user: PosterDep) -> JSONResponse:
    """A batch of raw PBX lines; 200 ``{accepted, duplicates}`` once every one is durable.

    Idempotent on (device, seq). Any invalid record: 400 naming each (``rejected``), none stored."""
    body = await read_body(request, ingest.settings.max_body_bytes)
    try:
        batch = decode_records(
            body, request.headers.get("content-type"), ingest.settings.edge_max_records
        )
    except InvalidRecords as exc:
        EDGE_LINES.labels("rejected").inc(len(exc.rejected))
        return JSONResponse(
            {**error_body(exc.code, exc.detail), "rejected": exc.rejected}, status_code=400
        )
    accepted, duplicates = await accept_batch(ingest, batch, _origin(request, user))
    EDGE_LINES.labels("accepted").inc(accepted)
    EDGE_LINES.labels("duplicate").inc(duplicates)
    return JSONResponse({"accepted": accepted, "duplicates": duplicates})


@router.post(
    "/v1/edge/checkin",
    response_model=CheckinAccepted,
    responses={400: {}, 401: {}, 413: {}, 415: {}, 503: {}},
    response_class=JSONResponse,
)
async def post_edge_checkin(request: Request, ingest: IngestDep, user: PosterDep) -> JSONResponse:
    """An agent's health report (queue depth, source state, ...); kept by the device registry
    (``GET /v1/edge/devices``)."""
    body = await read_body(request, MAX_CHECKIN_BYTES)
    checkin = decode_checkin(body, request.headers.get("content-type"))
    envelope_id = await accept_checkin(ingest, checkin, _origin(request, user))
    return JSONResponse({"status": "accepted", "id": envelope_id})
