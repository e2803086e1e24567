from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from cdrmodel import CDR


class CdrPage(BaseModel):
    items: list[CDR]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    id: int
    envelope_id: str | None
    call_id: str | None
    stage: str
    error: str
    reason: str
    topic: str | None
    partition: int | None
    offset: int | None
    envelope: dict[str, Any] | None
    raw_value: str | None
    created_at: datetime
    retried_at: datetime | None
    retry_count: int = 0
    last_failed_at: datetime | None = None


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


class PendingHalf(BaseModel):
    call_id: str
    type: str
    id: str | None
    timestamp: str
    source: str | None
    destination: str | None
    received_at: str
    waiting_s: float


class PendingPage(BaseModel):
    total: int
    items: list[PendingHalf]


class ConferenceOut(BaseModel):
    """A Pexip conference instance (history record, or an event sink's conference_ended)."""

    conference_id: str
    name: str | None
    service_type: str | None
    tag: str | None
    start_time: datetime | None
    end_time: datetime | None
    duration_s: int | None
    participant_count: int | None
    participant_ids: list[str]
    feed: str


class ConferencePage(BaseModel):
    items: list[ConferenceOut]
    next_cursor: str | None


class ConferenceDetail(ConferenceOut):
    participants: list[CDR]  # the CDRs of its participants stored so far (GET /v1/cdrs?conference=)


class DeviceList(BaseModel):
    """The edge agents (GET /v1/edge/devices)."""

    items: list[dict[str, Any]]
