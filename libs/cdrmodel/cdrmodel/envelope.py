"""The raw envelope ingest publishes to ``cdr.raw`` and the dead letter published to ``cdr.dlq``."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENVELOPE_VERSION = 1


class PayloadKind(StrEnum):
    FREESWITCH_XML = "freeswitch.xml"
    FREESWITCH_JSON = "freeswitch.json"
    CALL_EVENT = "call.event"
    PBX_SERIAL = "pbx.serial"
    PEXIP_PARTICIPANT = "pexip.participant"
    PEXIP_CONFERENCE = "pexip.conference"
    EDGE_CHECKIN = "edge.checkin"  # an edge agent's health report: the parser's device registry


class Origin(BaseModel):
    """Who sent the payload: remote address, switch node, authenticated user."""

    model_config = ConfigDict(frozen=True)

    remote_addr: str | None = None
    node: str | None = None
    user: str | None = None


class RawEnvelope(BaseModel):
    """A payload exactly as a switch sent it, plus where it came from.

    Either ``payload`` (inline text) or ``payload_ref`` (a claim check: ``file://`` or ``s3://``
    URI of the stored payload) is set; ``sha256`` is the digest of the payload's UTF-8 bytes.
    """

    model_config = ConfigDict(frozen=True)

    v: int = ENVELOPE_VERSION
    id: str
    kind: PayloadKind
    received_at: datetime
    source: Origin = Field(default_factory=Origin)
    content_type: str
    call_id: str | None = None
    a_leg: bool | None = None
    payload: str | None = None
    payload_ref: str | None = None
    sha256: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> RawEnvelope:
        if (self.payload is None) == (self.payload_ref is None):
            raise ValueError("exactly one of payload and payload_ref must be set")
        if self.payload_ref is not None and self.sha256 is None:
            raise ValueError("a payload_ref needs its sha256")
        return self

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)

    @classmethod
    def from_json(cls, data: bytes | str) -> RawEnvelope:
        return cls.model_validate_json(data)


def sha256_hex(payload: str | bytes) -> str:
    data = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


class DeadLetter(BaseModel):
    """What could not be processed, why, and enough to process it again (``cdr.dlq``)."""

    model_config = ConfigDict(frozen=True)

    stage: str
    error: str
    reason: str
    failed_at: datetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    envelope: dict[str, Any] | None = None
    raw_value: str | None = None

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)
