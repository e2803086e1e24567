"""Pexip conferences: list, and one with its participants' CDRs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cdr_parser.deps import ParserDep
from cdr_parser.repository import CdrFilter
from cdr_parser.schemas import ConferenceDetail, ConferenceOut, ConferencePage
from cdr_parser.service import row_to_cdr
from cdrkit.auth import READ
from cdrkit.params import known_query_only
from cdrkit.query import decode_cursor, encode_cursor, parse_instant
from cdrmodel.errors import InvalidInput, NotFound

router = APIRouter(tags=["conferences"], dependencies=[Depends(known_query_only)])

# A conference has at most a few thousand participants; one page of CDRs holds them.
MAX_PARTICIPANTS = 1000


def _text(value: str | None, name: str) -> str | None:
    if value is not None and "\x00" in value:
        raise InvalidInput(f"{name} holds a NUL character; no conference has one")
    return value


@router.get("/v1/conferences", response_model=ConferencePage, dependencies=[READ])
async def list_conferences(
    parser: ParserDep,
    since: Annotated[str | None, Query(description="end_time ≥ this (epoch s or ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="end_time < this")] = None,
    name: Annotated[str | None, Query(description="the conference (VMR) name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> ConferencePage:
    """Pexip conference instances, newest end time first, with cursor paging."""
    after = None
    if cursor:
        values = decode_cursor(cursor)
        try:
            after = datetime.fromisoformat(values[0]), str(values[1])
        except (IndexError, ValueError, TypeError) as exc:
            raise InvalidInput("the cursor is not one this API issued") from exc
        if after[0].tzinfo is None or "\x00" in after[1]:
            raise InvalidInput("the cursor is not one this API issued")
    rows = await parser.conferences.list(
        since=parse_instant(since, "since") if since else None,
        until=parse_instant(until, "until") if until else None,
        name=_text(name, "name"),
        after=after,
        limit=limit,
    )
    items = [ConferenceOut.model_validate(dict(r._mapping)) for r in rows]
    next_cursor = None
    if len(items) == limit and items[-1].end_time is not None:
        next_cursor = encode_cursor([items[-1].end_time.isoformat(), items[-1].conference_id])
    return ConferencePage(items=items, next_cursor=next_cursor)


@router.get("/v1/conferences/{conference_id}", response_model=ConferenceDetail, dependencies=[READ])
async def get_conference(conference_id: str, parser: ParserDep) -> ConferenceDetail:
    """One Pexip conference instance and the CDRs of its participants."""
    _text(conference_id, "the conference id")
    row = await parser.conferences.get(conference_id)
    if row is None:
        raise NotFound(f"no Pexip conference with id {conference_id!r}")
    cdrs = await parser.repo.list(
        CdrFilter(conference=conference_id), after=None, limit=MAX_PARTICIPANTS
    )
    return ConferenceDetail(**dict(row._mapping), participants=[row_to_cdr(r) for r in cdrs])
