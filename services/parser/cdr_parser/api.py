"""CDR store API: list, fetch, raw payload, CSV export, dead letters."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from cdr_parser.deps import ParserDep
from cdr_parser.repository import CdrFilter
from cdr_parser.schemas import CdrPage, DeadLetterOut, DeadLetterPage
from cdr_parser.service import row_to_cdr
from cdrkit.auth import OPERATE, READ
from cdrkit.params import known_query_only
from cdrkit.query import decode_cursor, encode_cursor, parse_instant
from cdrmodel import CDR, Direction, Disposition
from cdrmodel.errors import InvalidInput, NotFound

router = APIRouter(tags=["cdrs"], dependencies=[Depends(known_query_only)])


class RawGone(NotFound):
    code = "gone"
    status = 410


Since = Annotated[str | None, Query(description="start_time ≥ this (epoch s or ISO 8601)")]
Until = Annotated[str | None, Query(description="start_time < this (epoch s or ISO 8601)")]
Limit = Annotated[int, Query(ge=1, le=1000)]
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
    disposition: Disposition | None = None,
    source: Annotated[
        str | None, Query(description="the system it came from: freeswitch, hipath, ...")
    ] = None,
    carrier: Annotated[str | None, Query(description="gateway, profile or trunk")] = None,
    tenant: Annotated[str | None, Query(description="domain or tenant")] = None,
    direction: Direction | None = None,
) -> CdrFilter:
    """The filters shared by the list and the CSV export (exact matches, ANDed)."""
    for name, value in (
        ("account", account),
        ("number", number),
        ("source", source),
        ("carrier", carrier),
        ("tenant", tenant),
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
    )


FilterDep = Annotated[CdrFilter, Depends(cdr_filter)]


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    values = decode_cursor(cursor)
    try:
        after = datetime.fromisoformat(values[0]), str(values[1])
    except (IndexError, ValueError, TypeError) as exc:
        raise InvalidInput("the cursor is not one this API issued") from exc
    if after[0].tzinfo is None or "\x00" in after[1]:
        raise InvalidInput("the cursor is not one this API issued")
    return after


@router.get("/v1/cdrs", response_model=CdrPage, dependencies=[READ])
async def list_cdrs(
    parser: ParserDep,
    flt: FilterDep,
    limit: Limit = 100,
    cursor: str | None = None,
) -> CdrPage:
    """List CDRs, newest start time first, with cursor paging; an unknown parameter is a 400."""
    rows = await parser.repo.list(flt, after=_after(cursor), limit=limit)
    items = [row_to_cdr(r) for r in rows]
    next_cursor = None
    if len(items) == limit:
        last = items[-1]
        next_cursor = encode_cursor([last.start_time.isoformat(), last.call_id])
    return CdrPage(items=items, next_cursor=next_cursor)


_CSV_FIELDS = [name for name in CDR.model_fields if name != "extra"]


@router.get("/v1/cdrs.csv", dependencies=[READ])
async def export_cdrs(parser: ParserDep, flt: FilterDep) -> StreamingResponse:
    """Export CDRs as CSV (same filters as the list), streamed page by page."""

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(_CSV_FIELDS)
        after = None
        while True:
            page = await parser.repo.list(flt, after=after, limit=1000)
            for row in page:
                data = row_to_cdr(row).model_dump(mode="json")
                writer.writerow(["" if data[f] is None else data[f] for f in _CSV_FIELDS])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if len(page) < 1000:
                return
            after = (page[-1].start_time, page[-1].call_id)

    return StreamingResponse(
        rows(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
    )


@router.get("/v1/cdrs/{call_id}", response_model=CDR, dependencies=[READ])
async def get_cdr(call_id: str, parser: ParserDep) -> CDR:
    """One CDR by its call id (the leg's uuid)."""
    _no_nul(call_id, "the call id")
    row = await parser.repo.get(call_id)
    if row is None:
        raise NotFound(f"no CDR with call id {call_id!r}")
    return row_to_cdr(row)


@router.get("/v1/cdrs/{call_id}/raw", dependencies=[READ])
async def get_raw(call_id: str, parser: ParserDep) -> Response:
    """The payload exactly as the switch sent it (kept for the raw retention period)."""
    _no_nul(call_id, "the call id")
    row = await parser.repo.get_raw(call_id)
    if row is None and await parser.repo.get(call_id) is not None:
        # The CDR is stored but its raw payload is not: the retention job purged it. 410, not
        # 404, so a client can tell "past retention" from "no such call".
        raise RawGone(
            f"the raw payload of call {call_id!r} was purged after the raw retention period "
            f"({parser.settings.raw_retention_days:g} days); the CDR is still at "
            f"/v1/cdrs/{call_id}"
        )
    if row is None or (row.payload is None and row.payload_ref is None):
        raise NotFound(
            f"no raw payload for call id {call_id!r}: unknown call, or past the raw retention"
        )
    # A claim-checked payload lives in the object store (ObjectNotFound → 404 once purged).
    content = row.payload if row.payload is not None else await parser.raw_object(row.payload_ref)
    return Response(
        content,
        media_type=row.content_type,
        headers={"X-Cdrflow-Sha256": row.sha256 or "", "X-Cdrflow-Envelope-Id": row.envelope_id},
    )


@router.get("/v1/dead-letters", response_model=DeadLetterPage, dependencies=[READ])
async def list_dead_letters(
    parser: ParserDep, limit: Limit = 100, cursor: str | None = None
) -> DeadLetterPage:
    """Records that were accepted but could not be processed, newest first, with the reason."""
    before = None
    if cursor:
        values = decode_cursor(cursor)
        if not values or not isinstance(values[0], int) or not 0 < values[0] < 2**63:
            raise InvalidInput("the cursor is not one this API issued")
        before = values[0]
    rows = await parser.repo.list_dead_letters(before_id=before, limit=limit)
    items = [DeadLetterOut.model_validate(dict(r._mapping)) for r in rows]
    next_cursor = encode_cursor([items[-1].id]) if len(items) == limit else None
    return DeadLetterPage(items=items, next_cursor=next_cursor)


@router.get("/v1/dead-letters/{letter_id}", response_model=DeadLetterOut, dependencies=[READ])
async def get_dead_letter(letter_id: LetterId, parser: ParserDep) -> DeadLetterOut:
    """One dead letter with its reason and the envelope (or raw bytes) that failed."""
    row = await parser.repo.get_dead_letter(letter_id)
    if row is None:
        raise NotFound(f"no dead letter with id {letter_id}")
    return DeadLetterOut.model_validate(dict(row._mapping))


@router.post(
    "/v1/dead-letters/{letter_id}/retry", response_model=DeadLetterOut, dependencies=[OPERATE]
)
async def retry_dead_letter(letter_id: LetterId, parser: ParserDep) -> DeadLetterOut:
    """Re-publish the dead letter's envelope to cdr.raw: stored if the cause is fixed, else
    dead-lettered again with a fresh reason (same id; compare last_failed_at and retried_at)."""
    row = await parser.retry_dead_letter(letter_id)
    return DeadLetterOut.model_validate(dict(row._mapping))


@router.get("/v1/events/pending", tags=["events"], dependencies=[READ])
async def pending_events(
    parser: ParserDep,
    older_than: Annotated[
        float,
        Query(ge=0, le=1e10, description="only halves waiting at least this many seconds"),
    ] = 0,
    limit: Limit = 100,
) -> dict[str, object]:
    """Call start/end halves still waiting for their other half, oldest first."""
    now = datetime.now(UTC)
    total, rows = await parser.repo.pending_halves(now - timedelta(seconds=older_than), limit=limit)
    return {
        "total": total,
        "items": [
            {
                "call_id": r.call_id,
                "type": r.type,
                "id": r.event_id,
                "timestamp": r.event_time.isoformat(),
                "source": r.source,
                "destination": r.destination,
                "received_at": r.received_at.isoformat(),
                "waiting_s": round((now - r.received_at).total_seconds(), 3),
            }
            for r in rows
        ],
    }
