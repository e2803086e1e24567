"""The ingest API's answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cdrkit.openapi import Answer


class Accepted(Answer):
    id: str = Field(description="the envelope id")
    call_id: str | None = Field(description="None when the parser will have to find it")
    status: Literal["accepted", "duplicate"]


class Rejected(Answer):
    index: int
    id: str | None
    error: str
    detail: str


class EventsAccepted(Answer):
    accepted: int
    rejected: list[Rejected]


class EventsRefused(Answer):
    """Every 400 of the route: a body that is no record at all has only error and detail."""

    error: str
    detail: str
    accepted: int = 0
    rejected: list[Rejected] = []


class SpoolOut(Answer):
    depth: int
    bytes: int
    oldest_age_s: float
    segments: int
    draining: bool
    last_error: str | None = None


class RecordsAccepted(Answer):
    """Pexip history / event-sink answer."""

    accepted: int
    rejected: list[dict[str, Any]]
    ignored: int | None = Field(default=None, description="event-sink events that end nothing")


class RecordsRefused(Answer):
    error: str
    detail: str
    accepted: int = 0
    rejected: list[dict[str, Any]] = []
    ignored: int | None = None


class Recorded(Answer):
    status: str


class Items(Answer):
    items: list[dict[str, Any]]


class EdgeAccepted(Answer):
    accepted: int
    duplicates: int


class EdgeRefused(Answer):
    error: str
    detail: str
    rejected: list[Any] = []


class CheckinAccepted(Answer):
    status: str
    id: str
