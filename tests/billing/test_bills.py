"""Bill periods and formats."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from cdr_billing.bills import (
    InvalidPeriod,
    check_closed,
    format_duration,
    format_price,
    last_closed_month,
    month_bounds,
    parse_period,
)

UTC_ZONE = ZoneInfo("UTC")


def test_duration_format() -> None:
    assert format_duration(35 * 60 + 42) == "0h35m42s"
    assert format_duration(0) == "0h0m0s"
    assert format_duration(50 * 3600 + 61) == "50h1m1s"  # hours are not wrapped at 24


def test_price_format() -> None:
    assert format_price(Decimal("3.96"), "BRL") == "R$ 3,96"
    assert format_price(Decimal("0.54"), "BRL") == "R$ 0,54"
    assert format_price(Decimal("1234.5"), "BRL") == "R$ 1.234,50"
    assert format_price(Decimal("-0.18"), "BRL") == "-R$ 0,18"
    assert format_price(Decimal("1234.5"), "USD") == "US$ 1,234.50"


def test_periods() -> None:
    assert parse_period("2024-02") == (2024, 2)
    assert parse_period("02/2024") == (2024, 2)
    for bad in ("2024-13", "2024/02", "feb", "2-2024"):
        with pytest.raises(InvalidPeriod):
            parse_period(bad)


def test_closed_months() -> None:
    now = datetime(2024, 3, 1, 0, 0, 1, tzinfo=UTC)
    check_closed(2024, 2, now, UTC_ZONE)
    with pytest.raises(InvalidPeriod, match="is still open"):
        check_closed(2024, 3, now, UTC_ZONE)
    with pytest.raises(InvalidPeriod, match="is in the future"):
        check_closed(2024, 4, now, UTC_ZONE)
    assert last_closed_month(now, UTC_ZONE) == (2024, 2)
    assert last_closed_month(datetime(2024, 1, 5, tzinfo=UTC), UTC_ZONE) == (2023, 12)
    # in São Paulo (UTC-3) February is still open at 2024-03-01 02:00Z
    sp = ZoneInfo("America/Sao_Paulo")
    with pytest.raises(InvalidPeriod):
        check_closed(2024, 2, datetime(2024, 3, 1, 2, tzinfo=UTC), sp)
    assert month_bounds(2024, 2, sp) == (
        datetime(2024, 2, 1, 3, tzinfo=UTC),
        datetime(2024, 3, 1, 3, tzinfo=UTC),
    )
