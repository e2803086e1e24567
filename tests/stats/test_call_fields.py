"""Decoding a ``cdr.normalized`` message into the few fields stats uses, and its bucket."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdr_stats.call_fields import BadCall, Call, bucket_of, decode_call
from cdrmodel import CDR
from tests.stats.conftest import make_cdr, real_cdrs


def _call(cdr: CDR) -> Call:
    return decode_call(cdr.to_json())


def test_a_call_ending_exactly_on_a_multiple_of_360_s_opens_the_next_bucket() -> None:
    edge = 1_700_000_000 - 1_700_000_000 % 360
    assert bucket_of(edge) == edge
    assert bucket_of(edge - 0.000001) == edge - 360
    assert bucket_of(edge + 359.999) == edge
    assert _call(make_cdr(edge)).bucket == edge
    assert _call(make_cdr(edge - 1)).bucket == edge - 360


def test_real_cdrs_decode_to_their_end_time_bucket() -> None:
    for cdr in real_cdrs().values():
        call = _call(cdr)
        assert cdr.end_time is not None
        assert call.end_epoch == cdr.end_time.timestamp()
        assert call.bucket == int(cdr.end_time.timestamp()) // 360 * 360
        assert call.answered == (cdr.disposition == "answered")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[1]",
        b'{"call_id": ""}',
        b'{"call_id": "x", "end_time": "yesterday"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00Z", "billsec_s": "12"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00Z", "sip_code": 42}',
    ],
)
def test_undecodable_messages_are_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(BadCall):
        decode_call(value)


def test_no_end_time_uses_start_plus_duration() -> None:
    call = decode_call(b'{"call_id": "x", "start_time": "2024-01-01T00:05:00Z", "duration_s": 61}')
    assert call.end_epoch == datetime(2024, 1, 1, 0, 6, 1, tzinfo=UTC).timestamp()
    assert call.bucket == datetime(2024, 1, 1, 0, 6, tzinfo=UTC).timestamp()
