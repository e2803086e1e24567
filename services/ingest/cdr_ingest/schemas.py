"""The ingest API's answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Accepted(BaseModel):
    id: str = Field(description="the envelope id")
    call_id: str | None = Field(description="None when the parser will have to find it")
    status: Literal["accepted", "duplicate"]


class Rejected(BaseModel):
    index: int
    id: str | None
    error: str
    detail: str


class EventsAccepted(BaseModel):
    accepted: int
    rejected: list[Rejected]


class EventsRefused(BaseModel):
    """Every 400 of the route: a body that is no record at all has only error and detail."""

    error: str
    detail: str
    accepted: int = 0
    rejected: list[Rejected] = []


class SpoolOut(BaseModel):
    depth: int
    bytes: int
    oldest_age_s: float
    segments: int
    draining: bool
    last_error: str | None = None
