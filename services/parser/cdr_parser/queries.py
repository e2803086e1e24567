"""What the parser's API answers with: pages of CDRs, the CSV export, one CDR, its raw payload,
dead letters (and their retry) and waiting call halves. The routes (``cdr_parser.api``) parse the
request and call these; SQL stays in ``cdr_parser.repository``, the pipeline in
``cdr_parser.service``."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cdr_parser.repository import CdrFilter
from cdr_parser.rows import row_to_cdr, stored_payload
from cdr_parser.schemas import (
    CdrPage,
    ConferenceDetail,
    ConferenceOut,
    ConferencePage,
    DeadLetterOut,
    DeadLetterPage,
)
from cdr_parser.service import ParserService
from cdrkit.query import decode_cursor, encode_cursor
from cdrmodel import CDR
from cdrmodel.errors import InvalidInput, NotFound

__all__ = [
    "CSV_FIELDS",
    "RawGone",
    "RawPayload",
    "cdr",
    "cdr_page",
    "conference",
    "conference_page",
    "csv_export",
    "dead_letter",
    "dead_letter_page",
    "pending_halves",
    "raw_payload",
    "retry_dead_letter",
]

CSV_FIELDS: Final = [name for name in CDR.model_fields if name != "extra"]
_EXPORT_PAGE: Final = 1000
# A conference has at most a few thousand participants; one page of CDRs holds them.
MAX_PARTICIPANTS: Final = 1000


class RawGone(NotFound):
    code = "gone"
    status = 410


@dataclass(frozen=True, slots=True)
class RawPayload:
    content: bytes | str
    content_type: str
    sha256: str | None
    envelope_id: str


async def cdr_page(
    parser: ParserService, flt: CdrFilter, *, cursor: str | None, limit: int
) -> CdrPage:
    """CDRs newest start time first; ``cursor`` continues a previous page."""
    rows = await parser.repo.list(flt, after=_position(cursor), limit=limit)
    items = [row_to_cdr(r) for r in rows]
    next_cursor = None
    if len(items) == limit:
        last = items[-1]
        next_cursor = encode_cursor([last.start_time.isoformat(), last.call_id])
    return CdrPage(items=items, next_cursor=next_cursor)


def _position(cursor: str | None) -> tuple[datetime, str] | None:
    # Both listings page by (instant, id), newest first: the cursor is the last item's pair.
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


async def conference_page(
    parser: ParserService,
    *,
    since: datetime | None,
    until: datetime | None,
    name: str | None,
    cursor: str | None,
    limit: int,
) -> ConferencePage:
    """Pexip conference instances, newest end time first; ``cursor`` continues a page."""
    rows = await parser.conferences.list(
        since=since, until=until, name=name, after=_position(cursor), limit=limit
    )
    items = [ConferenceOut.model_validate(dict(r._mapping)) for r in rows]
    next_cursor = None
    if len(items) == limit and items[-1].end_time is not None:
        next_cursor = encode_cursor([items[-1].end_time.isoformat(), items[-1].conference_id])
    return ConferencePage(items=items, next_cursor=next_cursor)


async def conference(parser: ParserService, conference_id: str) -> ConferenceDetail:
    """One Pexip conference instance with its participants' CDRs; ``NotFound`` when unknown."""
    row = await parser.conferences.get(conference_id)
    if row is None:
        raise NotFound(f"no Pexip conference with id {conference_id!r}")
    cdrs = await parser.repo.list(
        CdrFilter(conference=conference_id), after=None, limit=MAX_PARTICIPANTS
    )
    return ConferenceDetail(**dict(row._mapping), participants=[row_to_cdr(r) for r in cdrs])


async def csv_export(parser: ParserService, flt: CdrFilter) -> AsyncIterator[str]:
    """The matching CDRs as CSV text (header first), one chunk per page of the store."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    after = None
    while True:
        page = await parser.repo.list(flt, after=after, limit=_EXPORT_PAGE)
        for row in page:
            data = row_to_cdr(row).model_dump(mode="json")
            writer.writerow(["" if data[f] is None else data[f] for f in CSV_FIELDS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(page) < _EXPORT_PAGE:
            return
        after = (page[-1].start_time, page[-1].call_id)


async def cdr(parser: ParserService, call_id: str) -> CDR:
    """One CDR by its call id; ``NotFound`` when there is none."""
    row = await parser.repo.get(call_id)
    if row is None:
        raise NotFound(f"no CDR with call id {call_id!r}")
    return row_to_cdr(row)


async def raw_payload(parser: ParserService, call_id: str) -> RawPayload:
    """The payload as the switch sent it; ``RawGone`` once purged, ``NotFound`` when unknown."""
    row = await parser.repo.get_raw(call_id)
    if row is None and await parser.repo.get(call_id) is not None:
        # The CDR is stored but its raw payload is not: the retention job purged it. 410, not
        # 404, so a client can tell "past retention" from "no such call".
        raise RawGone(
            f"the raw payload of call {call_id!r} was purged after the raw retention period "
            f"({parser.settings.raw_retention_days:g} days); the CDR is still at "
            f"/v1/cdrs/{call_id}"
        )
    text = stored_payload(row) if row is not None else None
    if row is None or (text is None and row.payload_ref is None):
        raise NotFound(
            f"no raw payload for call id {call_id!r}: unknown call, or past the raw retention"
        )
    # A claim-checked payload lives in the object store (ObjectNotFound → 404 once purged).
    content = text if text is not None else await parser.raw_object(row.payload_ref)
    return RawPayload(content, row.content_type, row.sha256, row.envelope_id)


async def dead_letter_page(
    parser: ParserService, *, cursor: str | None, limit: int
) -> DeadLetterPage:
    """Dead letters newest first; ``cursor`` continues a previous page."""
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


async def dead_letter(parser: ParserService, letter_id: int) -> DeadLetterOut:
    """One dead letter; ``NotFound`` when there is none."""
    row = await parser.repo.get_dead_letter(letter_id)
    if row is None:
        raise NotFound(f"no dead letter with id {letter_id}")
    return DeadLetterOut.model_validate(dict(row._mapping))


async def retry_dead_letter(parser: ParserService, letter_id: int) -> DeadLetterOut:
    """Re-publish a dead letter (``ParserService.retry_dead_letter``); the updated letter."""
    row = await parser.retry_dead_letter(letter_id)
    return DeadLetterOut.model_validate(dict(row._mapping))


async def pending_halves(
    parser: ParserService, *, older_than_s: float, limit: int
) -> dict[str, object]:
    """Call start/end halves waiting at least ``older_than_s`` for their other half."""
    now = datetime.now(UTC)
    total, rows = await parser.repo.pending_halves(
        now - timedelta(seconds=older_than_s), limit=limit
    )
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
