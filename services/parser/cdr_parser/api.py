"""CDR store API: list, fetch, raw payload, CSV export, dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from cdr_parser import queries
from cdr_parser.deps import ParserDep
from cdr_parser.repository import CdrFilter
from cdr_parser.schemas import CdrPage, DeadLetterOut, DeadLetterPage, PendingPage
from cdrkit.auth import OPERATE, READ
from cdrkit.openapi import ErrorBody, errors, link, media
from cdrkit.params import known_query_only
from cdrkit.query import parse_instant
from cdrmodel import CDR, Direction, Disposition
from cdrmodel.errors import InvalidInput

router = APIRouter(tags=["cdrs"], dependencies=[Depends(known_query_only)])


Since = Annotated[str | None, Query(description="start_time ≥ this (epoch s or ISO 8601)")]
Until = Annotated[str | None, Query(description="start_time < this (epoch s or ISO 8601)")]
Limit = Annotated[int, Query(ge=1, le=1000)]
# What a raw payload can be: whatever ingest takes.
RAW_TYPES = (
    "text/xml",
    "application/xml",
    "application/json",
    "application/x-www-form-urlencoded",
    "application/x-www-form-base64-encoded",
    "application/x-www-form-plaintext",
    "multipart/form-data",
    "application/octet-stream",
)
# Dead letter ids are BIGINT: a larger number is no id (and PostgreSQL would refuse to compare).
LetterId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _no_nul(value: str | None, name: str) -> None:
    """Refuse (400) a text the database cannot compare: PostgreSQL refuses a NUL character."""
    if value is not None and "\x00" in value:
        raise InvalidInput(f"{name} holds a NUL character; no CDR has one")


def cdr_filter(
    since: Since = None,
    until: Until = None,
    account: str | None = None,
    number: Annotated[str | None, Query(description="caller or callee number")] = None,
    number_prefix: Annotated[
        str | None,
        Query(
            min_length=2,
            max_length=64,
            description="caller or callee number starting with this (narrow it with since/until)",
        ),
    ] = None,
    disposition: Disposition | None = None,
    source: Annotated[
        str | None, Query(description="the system it came from: freeswitch, hipath, ...")
    ] = None,
    carrier: Annotated[str | None, Query(description="gateway, profile or trunk")] = None,
    tenant: Annotated[str | None, Query(description="domain or tenant")] = None,
    direction: Direction | None = None,
    conference: Annotated[
        str | None, Query(description="a Pexip conference id: the CDRs of its participants")
    ] = None,
) -> CdrFilter:
    """The filters shared by the list and the CSV export (exact matches, ANDed)."""
    for name, value in (
        ("account", account),
        ("number", number),
        ("number_prefix", number_prefix),
        ("source", source),
        ("carrier", carrier),
        ("tenant", tenant),
        ("conference", conference),
    ):
        _no_nul(value, name)
    return CdrFilter(
        since=parse_instant(since, "since") if since else None,
        until=parse_instant(until, "until") if until else None,
        account=account,
        number=number,
        disposition=disposition.value if disposition else None,
        source=source,
        carrier=carrier,
        tenant=tenant,
        direction=direction.value if direction else None,
        conference=conference,
        number_prefix=number_prefix,
    )


FilterDep = Annotated[CdrFilter, Depends(cdr_filter)]


_FIRST = "$response.body#/items/0/call_id"


@router.get(
    "/v1/cdrs",
    response_model=CdrPage,
    dependencies=[READ],
    responses={
        200: {
            "description": "A page of CDRs",
            "links": {
                "cdr": link("/v1/cdrs/{call_id}", call_id=_FIRST),
                "raw": link("/v1/cdrs/{call_id}/raw", call_id=_FIRST),
                "charge": link("/v1/charges/{call_id}", call_id=_FIRST),
                "recording": link("/v1/recordings/{call_id}", call_id=_FIRST),
            },
        }
    },
)
async def list_cdrs(
    parser: ParserDep,
    flt: FilterDep,
    limit: Limit = 100,
    cursor: str | None = None,
) -> CdrPage:
    """List CDRs, newest start time first, with cursor paging; an unknown parameter is a 400."""
    return await queries.cdr_page(parser, flt, cursor=cursor, limit=limit)


@router.get(
    "/v1/cdrs.csv",
    dependencies=[READ],
    response_class=Response,
    responses={200: media("The CDRs as CSV, one header row", "text/csv")},
)
async def export_cdrs(parser: ParserDep, flt: FilterDep) -> StreamingResponse:
    """Export CDRs as CSV (same filters as the list), streamed page by page."""
    return StreamingResponse(
        queries.csv_export(parser, flt),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
    )


@router.get("/v1/cdrs/{call_id}", response_model=CDR, dependencies=[READ])
async def get_cdr(call_id: str, parser: ParserDep) -> CDR:
    """One CDR by its call id (the leg's uuid)."""
    _no_nul(call_id, "the call id")
    return await queries.cdr(parser, call_id)


@router.get(
    "/v1/cdrs/{call_id}/raw",
    dependencies=[READ],
    response_class=Response,
    responses={
        200: media("The payload as the switch sent it, with its content type", *RAW_TYPES),
        **errors(410),
    },
)
async def get_raw(call_id: str, parser: ParserDep) -> Response:
    """The payload exactly as the switch sent it (kept for the raw retention period)."""
    _no_nul(call_id, "the call id")
    raw = await queries.raw_payload(parser, call_id)
    return Response(
        raw.content,
        media_type=raw.content_type,
        headers={"X-Cdrflow-Sha256": raw.sha256 or "", "X-Cdrflow-Envelope-Id": raw.envelope_id},
    )


@router.get(
    "/v1/dead-letters",
    response_model=DeadLetterPage,
    dependencies=[READ],
    responses={
        200: {
            "description": "A page of dead letters",
            "links": {
                "letter": link(
                    "/v1/dead-letters/{letter_id}", letter_id="$response.body#/items/0/id"
                )
            },
        }
    },
)
async def list_dead_letters(
    parser: ParserDep, limit: Limit = 100, cursor: str | None = None
) -> DeadLetterPage:
    """Records that were accepted but could not be processed, newest first, with the reason."""
    return await queries.dead_letter_page(parser, cursor=cursor, limit=limit)


@router.get("/v1/dead-letters/{letter_id}", response_model=DeadLetterOut, dependencies=[READ])
async def get_dead_letter(letter_id: LetterId, parser: ParserDep) -> DeadLetterOut:
    """One dead letter with its reason and the envelope (or raw bytes) that failed."""
    return await queries.dead_letter(parser, letter_id)


@router.post(
    "/v1/dead-letters/{letter_id}/retry",
    response_model=DeadLetterOut,
    dependencies=[OPERATE],
    responses={
        404: {"model": ErrorBody, "description": "no such dead letter"},
        409: {
            "model": ErrorBody,
            "description": "a retry is pending (retry_pending) or nothing to re-publish",
        },
        429: {
            "model": ErrorBody,
            "description": "too many retries (rate_limited); see Retry-After",
        },
    },
)
async def retry_dead_letter(letter_id: LetterId, parser: ParserDep) -> DeadLetterOut:
    """Re-publish the dead letter's envelope to cdr.raw: stored if the cause is fixed, else
    dead-lettered again with a fresh reason (same id; compare last_failed_at and retried_at).
    Idempotent while pending: a second retry before the first was processed (or within
    PARSER_RETRY_PENDING_S) is a 409 and re-publishes nothing; rate-limited (429). Retries
    never count towards the dead-letter flood stop."""
    return await queries.retry_dead_letter(parser, letter_id)


@router.get("/v1/events/pending", tags=["events"], response_model=PendingPage, dependencies=[READ])
async def pending_events(
    parser: ParserDep,
    older_than: Annotated[
        float,
        Query(ge=0, le=1e10, description="only halves waiting at least this many seconds"),
    ] = 0,
    limit: Limit = 100,
) -> dict[str, object]:
    """Call start/end halves still waiting for their other half, oldest first."""
    return await queries.pending_halves(parser, older_than_s=older_than, limit=limit)
