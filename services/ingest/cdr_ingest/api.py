"""The ingest edge: ``POST /v1/cdr`` in every form a FreeSWITCH posts."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams

from cdr_ingest.auth import require_poster
from cdr_ingest.call_event_intake import decode_events
from cdr_ingest.deps import IngestDep, get_ingest
from cdr_ingest.metrics import EVENTS
from cdr_ingest.openapi_bodies import CDR_BODY, EVENTS_BODY
from cdr_ingest.schemas import Accepted, EventsAccepted, EventsRefused, SpoolOut
from cdr_ingest.service import IngestService
from cdrkit.auth import READ
from cdrkit.openapi import errors, link
from cdrmodel import Origin
from cdrmodel.errors import PayloadTooLarge

router = APIRouter(tags=["ingest"])

# JSONResponse.render's json.dumps arguments, as one encoder: json.dumps builds a new encoder for
# every call with non-default arguments (~5-10 µs per post, issue 15).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class AnswerResponse(JSONResponse):
    """``JSONResponse(content)`` (200, no extra headers) with the same bytes and headers, rendered
    by one shared encoder and its two headers written directly."""

    def __init__(self, content: Any) -> None:
        self.status_code = 200
        self.background = None
        self.body = body = self.render(content)
        self.raw_headers = [
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")

    @classmethod
    def accepted(cls, envelope_id: str, call_id: str | None, status: str) -> AnswerResponse:
        """``AnswerResponse({"id": …, "call_id": …, "status": …})``, the same bytes, written
        with the encoder's own string escaping (``encode_basestring``: what a JSONEncoder with
        ``ensure_ascii=False`` escapes strings with) instead of encoding a dict (~2 against
        ~7 µs per post on the one event loop: docs/performance.md, ninth round)."""
        answer = cls.__new__(cls)
        answer.status_code = 200
        answer.background = None
        cid = "null" if call_id is None else encode_basestring(call_id)
        answer.body = body = (
            f'{{"id":{encode_basestring(envelope_id)},"call_id":{cid},'
            f'"status":{encode_basestring(status)}}}'
        ).encode()
        answer.raw_headers = [
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]
        return answer


# A switch posts from a few addresses under a few users: their (frozen) Origin is built once.
_ORIGINS: dict[tuple[str | None, str | None], Origin] = {}
_ORIGINS_MAX = 1024


def origin_of(remote_addr: str | None, user: str | None) -> Origin:
    """``Origin(remote_addr=remote_addr, user=user)``, from a bounded cache."""
    origin = _ORIGINS.get((remote_addr, user))
    if origin is None:
        if len(_ORIGINS) >= _ORIGINS_MAX:
            _ORIGINS.clear()
        origin = _ORIGINS[remote_addr, user] = Origin(remote_addr=remote_addr, user=user)
    return origin


def query_param(query_string: bytes, name: str) -> str | None:
    """``QueryParams(query_string).get(name)``: the last occurrence's value, None when absent.

    A query string with nothing to unquote (no ``%``, no ``+``: mod_xml_cdr's ``uuid=a_<uuid>``)
    is split here; parse_qsl would only split it the same way (``&`` between fields, the first
    ``=`` between name and value, a field without one a blank value, empty fields skipped), at
    about a fifth of the cost. Anything else goes through Starlette's QueryParams."""
    if b"%" in query_string or b"+" in query_string:
        return QueryParams(query_string).get(name)
    value = None
    for field in query_string.decode("latin-1").split("&"):
        key, _, found = field.partition("=")
        if key == name:
            value = found
    return value


async def read_body(request: Request, limit: int) -> bytes:
    """The body, streamed, refused with 413 as soon as it passes ``limit`` bytes: checked on the
    bytes actually received, so a lying or absent ``Content-Length`` (chunked) changes nothing."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the maximum is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the maximum of {limit} bytes")
        if chunk:
            chunks.append(chunk)
    # One chunk (a small post, or a test client) is used as it is; otherwise one join, after
    # which the chunks are garbage: the body is held once, not in a growing buffer plus a copy.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _ingest_and_poster(request: Request) -> tuple[IngestService, str | None]:
    """``IngestDep`` and ``PosterDep`` called directly, authentication first (before the body is
    read). The two hot POST routes do not declare them as dependencies: FastAPI's dependency
    solving cost ~100 µs per post (issue 15, py-spy of ``python -m bench e2e ingest``), and
    neither takes anything but the request, so the OpenAPI document is the same."""
    user = await require_poster(request)
    return await get_ingest(request), user


_CALL_ID = "$response.body#/call_id"


@router.post(
    "/v1/cdr",
    response_model=Accepted,
    responses={
        200: {
            "description": "Durable: on the bus or in the spool",
            "links": {
                "cdr": link("/v1/cdrs/{call_id}", call_id=_CALL_ID),
                "raw": link("/v1/cdrs/{call_id}/raw", call_id=_CALL_ID),
                "charge": link("/v1/charges/{call_id}", call_id=_CALL_ID),
            },
        },
        **errors(401, 413, 415, 503),
    },
    response_class=JSONResponse,
    openapi_extra=CDR_BODY,
)
async def post_cdr(
    request: Request,
    uuid: Annotated[str | None, Query(description="[a_]<uuid> as mod_xml_cdr sends it")] = None,
) -> JSONResponse:
    """Accept one CDR (mod_xml_cdr or mod_json_cdr, any encoding); 200 once durable.

    Needs HTTP Basic or a Bearer token when ``INGEST_BASIC_AUTH`` / ``INGEST_TOKENS`` are set."""
    # Request metrics: cdr_ingest.request_metrics counts every answer, unhandled 500s too.
    # Posts are answered by cdr_ingest.hot_path (post_cdr_request), not through this route.
    return await _post_cdr(request, uuid)


async def post_cdr_request(request: Request) -> JSONResponse:
    """``post_cdr`` for ``cdr_ingest.hot_path``: the ``uuid`` query parameter read as FastAPI
    reads a scalar one (the last occurrence; absent: None)."""
    return await _post_cdr(request, query_param(request.scope["query_string"], "uuid"))


async def _post_cdr(request: Request, uuid: str | None) -> JSONResponse:
    ingest, user = await _ingest_and_poster(request)
    body = await read_body(request, ingest.settings.max_body_bytes)
    origin = origin_of(request.client.host if request.client else None, user)
    accepted = await ingest.accept(body, request.headers.get("content-type"), uuid, origin)
    return AnswerResponse.accepted(accepted.id, accepted.call_id, accepted.status)


@router.get("/v1/spool", tags=["ingest"], response_model=SpoolOut, dependencies=[READ])
async def get_spool(ingest: IngestDep) -> dict[str, object]:
    """The local spool: envelopes waiting for the bus, their bytes and age, and the drainer."""
    spool = ingest.spool
    if spool is None:
        return {"depth": 0, "bytes": 0, "oldest_age_s": 0.0, "segments": 0, "draining": False}
    status = spool.status()
    drainer = ingest.drainer
    return {
        "depth": status.depth,
        "bytes": status.bytes,
        "oldest_age_s": round(status.oldest_age_s, 3),
        "segments": status.segments,
        "draining": bool(drainer and drainer.draining),
        "last_error": drainer.last_error if drainer else None,
    }


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsAccepted,
    responses={
        400: {"model": EventsRefused, "description": "No valid record; the reasons per record"},
        **errors(401, 413, 415, 503),
    },
    response_class=JSONResponse,
    openapi_extra=EVENTS_BODY,
)
async def post_events(request: Request) -> JSONResponse:
    """Accept call start/end records (one object or a list); 202 once the valid ones are durable.

    Each record is judged on its own: the answer counts the accepted ones and gives a reason per
    rejected one. No valid record at all: 400 with the same shape."""
    ingest, user = await _ingest_and_poster(request)
    body = await read_body(request, ingest.settings.max_body_bytes)
    batch = decode_events(
        body,
        request.headers.get("content-type"),
        ingest.settings.events_max_records,
        max_duration_s=ingest.settings.max_call_duration_s,
    )
    rejected = [r.to_dict() for r in batch.rejected]
    if not batch.valid:
        EVENTS.labels("rejected").inc(len(batch.rejected))
        if not batch.is_list and batch.rejected:
            error, detail = batch.rejected[0].error, batch.rejected[0].detail
        else:
            error = "no_valid_records"
            detail = (
                f"none of the {batch.total} records is valid; see rejected for the reasons"
                if batch.total
                else "the list is empty; post at least one record"
            )
        return JSONResponse(
            {"error": error, "detail": detail, "accepted": 0, "rejected": rejected},
            status_code=400,
        )
    origin = Origin(remote_addr=request.client.host if request.client else None, user=user)
    await ingest.accept_events(batch.valid, origin)
    EVENTS.labels("accepted").inc(len(batch.valid))
    EVENTS.labels("rejected").inc(len(batch.rejected))
    return JSONResponse({"accepted": len(batch.valid), "rejected": rejected}, status_code=202)
