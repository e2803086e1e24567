# ruff: noqa: F811  (the billing and db_url fixtures come from test_service)
"""Money is bounded and exact: an adjustment is refused (4xx, nothing stored) unless its amount is
finite, within BILLING_MAX_ADJUSTMENT and exact in the currency's minor unit; a correction never
takes a charge below zero (a credit may); stored data never makes a charge or bill answer 500."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from cdr_billing.models import adjustments
from cdr_billing.money import is_exact, money
from cdrflow.platform import create_service_app
from tests.billing.test_service import (  # noqa: F401  (fixtures)
    Billing,
    billing,
    db_url,
    event_cdr,
)
from tests.e2e.conftest import serving

CALL, SUBSCRIBER, PERIOD = "m1", "11999998888", "2018-02"  # the worked example: R$ 0,54


async def _adjustment_count(billing: Billing) -> int:
    engine = billing.app.state.cdrflow.runtime.engine
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(adjustments)) or 0)


async def _priced(billing: Billing) -> None:
    await billing.publish(event_cdr(CALL, "2018-02-28 21:57:13", "2018-02-28 22:17:53"))
    assert (await billing.client.get(f"/v1/charges/{CALL}")).json()["amount"] == "0.54"


def _adjust(billing: Billing, amount: Any, **extra: Any) -> Any:
    body = {"amount": amount, "reason": "test", **extra}
    return billing.client.post(f"/v1/charges/{CALL}/adjustments", json=body)


OUT_OF_BOUNDS = [1e26, "1e999999", -1.79e308, "NaN", "-Infinity", "0.001", "0.545", "10000.01", 0]


async def test_an_amount_out_of_bounds_is_a_4xx_and_nothing_is_stored(billing: Billing) -> None:
    await _priced(billing)
    for amount in OUT_OF_BOUNDS:
        r = await _adjust(billing, amount)
        assert r.status_code in (400, 422), (amount, r.text)
        assert r.json()["error"] in ("invalid_amount", "invalid_request")
    assert await _adjustment_count(billing) == 0
    assert (await billing.client.get(f"/v1/charges/{CALL}")).json()["total"] == "0.54"
    bill = await billing.client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": PERIOD})
    assert (bill.status_code, bill.json()["total"]) == (200, "0.54")


async def test_a_correction_stops_at_zero_and_a_credit_goes_below(billing: Billing) -> None:
    await _priced(billing)
    r = await _adjust(billing, "-100")
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "below_zero"
    assert await _adjustment_count(billing) == 0
    assert (await _adjust(billing, "-0.54")).status_code == 201
    assert (await billing.client.get(f"/v1/charges/{CALL}")).json()["total"] == "0.00"
    assert (await _adjust(billing, "-0.01")).status_code == 409
    assert (await _adjust(billing, "1.00", kind="credit")).status_code == 400  # a credit lowers
    r = await _adjust(billing, "-100", kind="credit")
    assert r.status_code == 201, r.text
    bill = (await billing.client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": PERIOD})).json()
    assert (bill["total"], bill["total_price"]) == ("-100.00", "-R$ 100,00")


async def test_concurrent_corrections_never_take_a_charge_below_zero(billing: Billing) -> None:
    await _priced(billing)
    answers = await asyncio.gather(*(_adjust(billing, "-0.10") for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [201] * 5 + [409] * 3
    assert (await billing.client.get(f"/v1/charges/{CALL}")).json()["total"] == "0.04"


async def test_the_maximum_is_configurable(tmp_path: Path, db_url: str) -> None:
    app = create_service_app(
        "billing",
        database_url=db_url,
        bus_url=f"memory://money-{tmp_path.name}",
        data_dir=tmp_path,
        max_adjustment="5",
    )
    async with serving(app) as client:
        billing = Billing(app, client, "")
        await _priced(billing)
        r = await _adjust(billing, "5.01", kind="correction")
        assert (r.status_code, r.json()["error"]) == (400, "invalid_amount")
        assert "BILLING_MAX_ADJUSTMENT" in r.json()["detail"]
        assert (await _adjust(billing, "5.00")).status_code == 201


async def test_stored_amounts_never_make_a_charge_or_bill_answer_500(billing: Billing) -> None:
    """Rows written before the bounds existed (any text in SQLite's money column, the largest
    numeric(18, 6) on PostgreSQL) are shown, not a 500."""
    await _priced(billing)
    engine = billing.app.state.cdrflow.runtime.engine
    charge = (await billing.client.get(f"/v1/charges/{CALL}")).json()
    row = {
        "call_id": CALL,
        "subscriber": SUBSCRIBER,
        "call_end_time": charge["end_time"],
        "currency": "BRL",
        "reason": "legacy",
        "created_at": charge["rated_at"],
    }
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for stored in ("1E+26", "1e999999", "-1.79e308", "not a number"):
                await conn.execute(
                    text(
                        "INSERT INTO adjustments (call_id, subscriber, call_end_time, amount, "
                        "currency, reason, created_at) VALUES (:call_id, :subscriber, "
                        ":call_end_time, :amount, :currency, :reason, :created_at)"
                    ),
                    {
                        **row,
                        "amount": stored,
                        "call_end_time": "2018-02-28 22:17:53.000000",
                        "created_at": "2018-03-01 00:00:00.000000",
                    },
                )
        else:
            await conn.execute(
                insert(adjustments).values(
                    amount=Decimal("999999999999.999999"),
                    **{
                        **row,
                        "call_end_time": _parse(row["call_end_time"]),
                        "created_at": _parse(row["created_at"]),
                    },
                )
            )
    r = await billing.client.get(f"/v1/charges/{CALL}")
    assert r.status_code == 200, r.text
    bill = await billing.client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": PERIOD})
    assert bill.status_code == 200, bill.text
    assert len(bill.json()["adjustments"]) == len(r.json()["adjustments"]) > 0


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)


def test_minor_units() -> None:
    assert is_exact(Decimal("0.54"), "BRL")
    assert not is_exact(Decimal("0.545"), "BRL")
    assert is_exact(Decimal("5"), "JPY")
    assert not is_exact(Decimal("5.5"), "JPY")
    assert is_exact(Decimal("1.125"), "KWD")
    assert not is_exact(Decimal("NaN"), "BRL")
    assert money(Decimal("1E+999999")) == "1E+999999"
    assert money(Decimal("0.545")) == "0.55"
