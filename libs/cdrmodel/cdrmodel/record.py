"""The normalised Call Detail Record: one record per call leg (ARCHITECTURE §4)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


if TYPE_CHECKING:
    _StrEnum = StrEnum  # to mypy, the enums are plain StrEnums (their .value typed as such)
else:

    class _StrEnum(StrEnum):
        """A ``StrEnum`` whose ``.value`` is read in C: ``enum``'s own ``value`` is a
        Python-level descriptor (two Python frames a read), and pydantic's serializer reads it
        for every enum field of every ``CDR.to_json`` (issue 15, ninth round). The same value
        (``_value_``); members, lookups by value and name, ``.name`` are unchanged
        (``tests/cdrmodel/test_record.py``)."""

        value = property(attrgetter("_value_"))


class Leg(_StrEnum):
    A = "a"
    B = "b"


class Direction(_StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Disposition(_StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELLED = "cancelled"
    FAILED = "failed"


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # most: the mapping builds its times in UTC
        return value
    if value.tzinfo is None:
        raise ValueError("times must carry a timezone")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


class CDR(BaseModel):
    """A call leg, normalised. Unknown or missing input fields are ``None``, never guessed."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    schema_version: int = SCHEMA_VERSION
    call_id: str = Field(min_length=1, max_length=128)
    source: str
    origin_host: str | None = None
    leg: Leg | None = None
    other_leg_id: str | None = None
    direction: Direction | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    callee_number: str | None = None
    account: str | None = None
    tenant: str | None = None
    carrier: str | None = None
    start_time: UtcDatetime
    answer_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    duration_s: int | None = Field(default=None, ge=0)
    billsec_s: int | None = Field(default=None, ge=0)
    disposition: Disposition | None = None
    hangup_cause: str | None = None
    sip_code: int | None = Field(default=None, ge=100, le=699)
    pdd_ms: int | None = Field(default=None, ge=0)
    recording_path: str | None = None
    codec: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    received_at: UtcDatetime | None = None

    def to_json(self) -> bytes:
        # The serializer's bytes as they are: model_dump_json would make a str to encode again.
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> CDR:
        # model_validate_json's own call, without its Python frame and keyword defaults
        return cls.__pydantic_validator__.validate_json(data)  # type: ignore[no-any-return]
