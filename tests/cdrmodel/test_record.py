from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from cdrmodel import CDR, Direction, Disposition, Leg, PayloadKind, RawEnvelope, sha256_hex


def _full() -> CDR:
    start = datetime(2026, 3, 1, 21, 57, 13, 123456, tzinfo=UTC)
    return CDR(
        call_id="91353230-461f-11de-aa7f-b10b4edc0c92",
        source="freeswitch",
        origin_host="fs1",
        leg=Leg.A,
        other_leg_id="913d2a1c-461f-11de-aa7f-b10b4edc0c92",
        direction=Direction.OUTBOUND,
        caller_number="1000",
        caller_name="Extension 1000",
        callee_number="2622",
        account="1000",
        tenant="example.com",
        carrier="carlos",
        start_time=start,
        answer_time=start + timedelta(seconds=3),
        end_time=start + timedelta(seconds=1240),
        duration_s=1240,
        billsec_s=1237,
        disposition=Disposition.ANSWERED,
        hangup_cause="NORMAL_CLEARING",
        sip_code=200,
        pdd_ms=1500,
        recording_path="/var/lib/freeswitch/recordings/x.wav",
        codec="PCMA",
        extra={"sip_call_id": "abc@host", "read_rate": 8000},
        received_at=start + timedelta(seconds=1241),
    )


def test_json_round_trips_exactly() -> None:
    cdr = _full()
    again = CDR.from_json(cdr.to_json())
    assert again == cdr
    assert again.to_json() == cdr.to_json()


def test_times_are_normalised_to_utc() -> None:
    brt = timezone(timedelta(hours=-3))
    cdr = CDR(call_id="x", source="t", start_time=datetime(2026, 1, 1, 21, 0, tzinfo=brt))
    assert cdr.start_time == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert cdr.start_time.utcoffset() == timedelta(0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CDR(call_id="x", source="t", start_time=datetime(2026, 1, 1))


def test_frozen_and_closed() -> None:
    cdr = _full()
    with pytest.raises(ValidationError):
        cdr.call_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CDR(call_id="x", source="t", start_time=datetime.now(UTC), surprise=1)  # type: ignore[call-arg]


def test_envelope_has_exactly_one_payload() -> None:
    now = datetime.now(UTC)
    env = RawEnvelope(
        id="e1",
        kind=PayloadKind.FREESWITCH_XML,
        received_at=now,
        content_type="application/xml",
        payload="<cdr/>",
        sha256=sha256_hex("<cdr/>"),
    )
    assert RawEnvelope.from_json(env.to_json()) == env
    with pytest.raises(ValidationError, match="exactly one"):
        RawEnvelope(id="e2", kind="freeswitch.xml", received_at=now, content_type="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sha256"):
        RawEnvelope(
            id="e3",
            kind=PayloadKind.FREESWITCH_XML,
            received_at=now,
            content_type="x",
            payload_ref="file:///tmp/x",
        )


def test_enum_values_are_read_as_before() -> None:
    # .value is read in C (issue 15, ninth round): the member's own _value_, as enum's own
    # descriptor gives it, in the CDR's JSON too; members and lookups unchanged.
    from enum import Enum, StrEnum

    descriptor = Enum.__dict__["value"]  # enum's own .value
    for cls in (Leg, Direction, Disposition):
        assert issubclass(cls, StrEnum)
        for member in cls:
            assert member.value is member._value_
            assert member.value == descriptor.__get__(member, cls) == str(member)
            assert cls(member.value) is member
            assert cls[member.name] is member
        assert "value" not in cls.__members__
    for leg, direction, disposition in zip(
        [*Leg, Leg.A, Leg.B, Leg.A], [*Direction, None, None], [*Disposition], strict=False
    ):
        cdr = _full().model_copy(
            update={"leg": leg, "direction": direction, "disposition": disposition}
        )
        text = cdr.to_json().decode()
        assert f'"leg":"{leg._value_}"' in text
        assert f'"disposition":"{disposition._value_}"' in text
        assert (
            '"direction":null' if direction is None else f'"direction":"{direction._value_}"'
        ) in text
        again = CDR.from_json(cdr.to_json())
        assert again == cdr
        assert again.leg is leg
        assert again.disposition is disposition
