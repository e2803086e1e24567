"""Pexip conferences: list, and one with its participants' CDRs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cdr_parser import queries
from cdr_parser.deps import ParserDep
from cdr_parser.schemas import ConferenceDetail, ConferencePage
from cdrkit.auth import READ
from cdrkit.params import known_query_only
from cdrkit.query import parse_instant
from cdrmodel.errors import InvalidInput

router = APIRouter(tags=["conferences"], dependencies=[Depends(known_query_only)])


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
    return await queries.conference_page(
        parser,
        since=parse_instant(since, "since") if since else None,
        until=parse_instant(until, "until") if until else None,
        name=_text(name, "name"),
        cursor=cursor,
        limit=limit,
    )


@router.get("/v1/conferences/{conference_id}", response_model=ConferenceDetail, dependencies=[READ])
async def get_conference(conference_id: str, parser: ParserDep) -> ConferenceDetail:
    """One Pexip conference instance and the CDRs of its participants."""
    _text(conference_id, "the conference id")
    return await queries.conference(parser, conference_id)
