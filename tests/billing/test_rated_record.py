"""``rated_record``: the ``cdr.rated`` message is json.dumps's text of the charge, byte for byte
(it is built with ``cdrkit.db.dumps_json`` since issue 15's fifth round)."""

from __future__ import annotations

import gc
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from cdr_billing.money import money
from cdr_billing.service import rated_record, rated_value


def test_the_message_is_json_dumps_of_the_charge() -> None:
    for account, subscriber, amount in (
        (None, "18657194461", Decimal("0.36")),
        ("acc-é", "IMSI510555550000087", Decimal("0")),
        ('a"b\\c\n', "sub 中文", Decimal("12345.675")),
    ):
        row = {
            "call_id": "5a4b3c2d-1111-2222-3333-444455556666",
            "subscriber": subscriber,
            "outcome": "priced",
            "amount": amount,
            "currency": "BRL",
            "tariff_name": "default",
            "tariff_version": 3,
            "rated_at": datetime(2026, 12, 3, 11, 0, 0, 123456, tzinfo=UTC),
        }
        record = rated_record(row, account)
        expected = {
            "call_id": row["call_id"],
            "subscriber": subscriber,
            "account": account,
            "outcome": "priced",
            "amount": money(amount),
            "currency": "BRL",
            "tariff": "default",
            "tariff_version": 3,
            "rated_at": "2026-12-03T11:00:00.123456+00:00",
        }
        assert record.value == json.dumps(expected).encode()
        assert record.key == row["call_id"].encode()


def test_random_charges_give_json_dumps_text() -> None:
    """The message's text is written without json.dumps for the usual types: random strings
    (escapes, non-ASCII, lone surrogates), amounts (negative zero, huge, NaN), times (zones,
    no microseconds, a batch's shared ``rated_at``) and, through the general encoder, values of
    other types (a bool or an int subclass as the version, a non-str name)."""
    rng = random.Random(7)
    alphabet = [
        "a",
        "Z",
        "0",
        " ",
        '"',
        "\\",
        "/",
        "\n",
        "\t",
        "\x00",
        "\x1f",
        "\x7f",
        "é",
        "中",
        "\u2028",
        "\ud800",
        "\U0001f600",
    ]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))

    amounts = [
        "0",
        "-0",
        "0.00",
        "-0.001",
        "0.005",
        "0.36",
        "12345.675",
        "1E+40",
        "-1E-40",
        "NaN",
        "Infinity",
        "123456789012345678901234567890.123",
    ]
    zones = [UTC, timezone(timedelta(hours=-3)), ZoneInfo("America/Sao_Paulo"), None]
    shared = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    for i in range(3000):
        zone = rng.choice(zones)
        when = (
            shared
            if i % 3 == 0
            else datetime(
                2026,
                rng.randrange(1, 13),
                3,
                11,
                0,
                rng.randrange(60),
                rng.choice([0, rng.randrange(1_000_000)]),
                tzinfo=zone,
            )
        )
        version: object = rng.choice([1, 3, 2**70, -1, True, _Int(4)]) if i % 5 == 0 else 1
        name: object = rng.choice(["default", 7, None]) if i % 11 == 0 else text()
        row = {
            "call_id": text().replace("\ud800", "") or "c",  # a key must encode
            "subscriber": text(),
            "outcome": rng.choice(["priced", "free", "not_answered", text()]),
            "amount": Decimal(rng.choice(amounts)),
            "currency": rng.choice(["BRL", text()]),
            "tariff_name": name,
            "tariff_version": version,
            "rated_at": when,
        }
        account = rng.choice([None, text()])
        expected = {
            "call_id": row["call_id"],
            "subscriber": row["subscriber"],
            "account": account,
            "outcome": row["outcome"],
            "amount": money(row["amount"]),  # type: ignore[arg-type]
            "currency": row["currency"],
            "tariff": row["tariff_name"],
            "tariff_version": row["tariff_version"],
            "rated_at": when.isoformat(),
        }
        record = rated_record(row, account)
        assert record.value == json.dumps(expected).encode()
        assert record.key == row["call_id"].encode()  # type: ignore[attr-defined]
    # Collected here, not in a later test's timed block (its full collection took ~300 ms
    # inside test_service.py's loop-hold test when the suite ran with more modules).
    gc.collect()


class _Int(int):
    def __repr__(self) -> str:
        return "not json"


def test_the_record_is_a_record_like_any_other() -> None:
    """``rated_record`` builds its ``Record`` without the frozen dataclass's ``__init__``: the
    same class, fields, equality, hash, repr, pickle, and assignment still refused."""
    import dataclasses
    import pickle

    from cdrkit.bus import Record

    row = {
        "call_id": "c-1",
        "subscriber": "s",
        "outcome": "priced",
        "amount": Decimal("1.5"),
        "currency": "BRL",
        "tariff_name": "default",
        "tariff_version": 1,
        "rated_at": datetime(2026, 12, 3, tzinfo=UTC),
    }
    record = rated_record(row, None)
    plain = Record(value=json.dumps(rated_value(row, None)).encode(), key=b"c-1")
    assert type(record) is Record
    assert record == plain
    assert hash(record) == hash(plain)
    assert repr(record) == repr(plain)
    assert record.headers == ()
    assert pickle.loads(pickle.dumps(record)) == plain
    assert dataclasses.replace(record) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.key = b"x"  # type: ignore[misc]


def test_an_unpriced_charges_zero_is_written_as_json_dumps_writes_it() -> None:
    from cdr_billing.rating import ZERO_AMOUNT

    for amount in (ZERO_AMOUNT, Decimal("0.00"), Decimal("0"), Decimal("-0.00"), Decimal("0.001")):
        row = {
            "call_id": "c-0",
            "subscriber": "s",
            "outcome": "not_answered",
            "amount": amount,
            "currency": "BRL",
            "tariff_name": "default",
            "tariff_version": 1,
            "rated_at": datetime(2026, 12, 3, tzinfo=UTC),
        }
        assert rated_record(row, "a").value == json.dumps(rated_value(row, "a")).encode()
