"""Decoding a ``cdr.normalized`` message into the few fields stats uses, and its bucket."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from cdr_stats.call_fields import BadCall, Call, bucket_of, decode_call, read_json
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


# The message is read by jiter (pydantic_core.from_json, about half json.loads's cost) and by
# json.loads whenever jiter refuses it: what decodes, and to what, must be json.loads's.
_CALL = '{"call_id": "x", "end_time": "2024-01-01T00:00:00Z", '


@pytest.mark.parametrize(
    "value",
    [
        (_CALL + '"caller_name": "\\ud800"}').encode(),  # a lone surrogate: jiter refuses it
        (_CALL + '"caller_name": "\\udc00\\ud800x"}').encode(),
        (_CALL + '"caller_name": "').encode() + b"\xed\xa0\x80" + b'"}',  # surrogatepass
        b"\xef\xbb\xbf" + (_CALL + '"carrier": "c"}').encode(),  # a UTF-8 BOM
        (_CALL + '"carrier": "é"}').encode("utf-16"),  # json.loads detects UTF-16
        (_CALL + '"carrier": "é"}').encode("utf-32-le"),
        _CALL + '"carrier": "é", "pdd_ms": 1, "pdd_ms": 2}',  # a str; the last value wins
        (_CALL + '"extra": {"a": NaN, "b": -Infinity, "c": 1e400, "d": -0.0, "e": 1e5}}'),
        (_CALL + '"extra": {"big": 123456789012345678901234567890, "z": -0}}').encode(),
    ],
)
def test_what_json_loads_reads_decodes_as_json_loads_reads_it(value: bytes | str) -> None:
    call = decode_call(value)
    assert repr(call.raw) == repr(json.loads(value))
    assert call.call_id == "x"


def test_random_documents_decode_as_json_loads_decodes_them() -> None:
    """Documents and byte-level mutations of them: ``read_json`` (so decode_call) refuses
    exactly what json.loads refuses, with its error, and reads the rest as json.loads does
    (repr: -0.0, nan, key order)."""
    rng = random.Random(15)
    pieces = [
        '"',
        "\\",
        "\\u",
        "d800",
        "dc00",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "e",
        "-",
        ".",
        "0",
        "1e400",
        "NaN",
        "Infinity",
        "null",
        "true",
        "\x01",
        "é",
        "\U0001f600",
        " ",
        "\t",
    ]

    def value(depth: int) -> object:
        kind = rng.randrange(8 if depth < 4 else 5)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.choice([0, -1, 2**70, rng.randrange(-(10**9), 10**9)])
        if kind == 2:
            return rng.choice([0.1, -0.0, 1e-320, 1.7976931348623157e308, rng.random() * 1e6])
        if kind in (3, 4):
            return "".join(
                rng.choice(["a", "é", "\n", '"', "\\", "\u2028", "\U0001f600"])
                for _ in range(rng.randrange(6))
            )
        if kind == 5:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(["a", "b", "é", ""]): value(depth + 1) for _ in range(rng.randrange(4))}

    checked = refused = 0
    for _ in range(3000):
        doc = {"call_id": "x", "end_time": "2024-01-01T00:00:00Z", "extra": value(0)}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        for _ in range(rng.randrange(4)):  # mutate: insert, delete or replace a piece
            at = rng.randrange(len(text) + 1)
            cut = rng.randrange(3)
            text = text[:at] + rng.choice(pieces) * (rng.random() < 0.8) + text[at + cut :]
        data: bytes | str = text if rng.random() < 0.2 else text.encode("utf-8", "surrogatepass")
        try:
            expected = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            with pytest.raises(type(exc)):
                read_json(data)
            with pytest.raises(BadCall):
                decode_call(data)
            refused += 1
            continue
        assert repr(read_json(data)) == repr(expected)
        try:
            call = decode_call(data)
        except BadCall:  # json.loads read it, but it is no countable call (call_id …)
            continue
        assert repr(call.raw) == repr(expected)
        checked += 1
    assert checked > 500
    assert refused > 500


def test_every_field_lands_in_its_place() -> None:
    """Each field of ``Call`` from its own key (Call is built positionally)."""
    doc = {
        "call_id": "id",
        "end_time": "2024-01-01T00:06:01Z",
        "billsec_s": 11,
        "duration_s": 12,
        "pdd_ms": 13,
        "sip_code": 486,
        "hangup_cause": "USER_BUSY",
        "disposition": "busy",
        "carrier": "car",
        "account": "acc",
        "direction": "inbound",
        "tenant": "ten",
        "caller_number": "100",
        "callee_number": "200",
    }
    call = decode_call(json.dumps(doc))
    end = datetime(2024, 1, 1, 0, 6, 1, tzinfo=UTC).timestamp()
    assert call == Call(
        call_id="id",
        end_epoch=end,
        bucket=bucket_of(end),
        answered=False,
        billsec_s=11,
        duration_s=12,
        pdd_ms=13,
        sip_code=486,
        hangup_cause="USER_BUSY",
        disposition="busy",
        carrier="car",
        account="acc",
        direction="inbound",
        tenant="ten",
        caller_number="100",
        callee_number="200",
        raw=doc,
    )
