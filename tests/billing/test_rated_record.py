"""``rated_record``: the ``cdr.rated`` message is json.dumps's text of the charge, byte for byte
(it is built with ``cdrkit.db.dumps_json`` since issue 15's fifth round)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from cdr_billing.money import money
from cdr_billing.service import rated_record


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
