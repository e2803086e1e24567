"""Bill periods and the formats a bill prints (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from cdr_billing.money import cents
from cdrmodel.errors import InvalidInput

CENT = Decimal("0.01")
_YM = re.compile(r"^(\d{4})-(\d{2})$")
_MY = re.compile(r"^(\d{2})/(\d{4})$")
SYMBOLS = {"BRL": "R$", "USD": "US$", "EUR": "€", "GBP": "£"}


class InvalidPeriod(InvalidInput):
    code = "invalid_period"


def parse_period(text: str) -> tuple[int, int]:
    """``YYYY-MM`` or ``MM/YYYY`` → (year, month)."""
    m = _YM.match(text.strip())
    if m:
        year, month = int(m[1]), int(m[2])
    elif (m := _MY.match(text.strip())) is not None:
        month, year = int(m[1]), int(m[2])
    else:
        raise InvalidPeriod(f"period {text!r} is not a month like 2024-02 or 02/2024")
    if not 1 <= month <= 12 or year < 1970:
        raise InvalidPeriod(f"period {text!r} is not a month like 2024-02 or 02/2024")
    return year, month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_bounds(year: int, month: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month as a UTC interval ``[start, end)``, its midnights taken in ``zone``."""
    ny, nm = next_month(year, month)
    start = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(ny, nm, 1, tzinfo=zone).astimezone(UTC)
    return start, end


def last_closed_month(now: datetime, zone: ZoneInfo) -> tuple[int, int]:
    local = now.astimezone(zone)
    return (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)


def check_closed(year: int, month: int, now: datetime, zone: ZoneInfo) -> None:
    """A bill exists only for a month that has ended (in the billing timezone)."""
    _, end = month_bounds(year, month, zone)
    if end > now:
        local = now.astimezone(zone)
        which = (
            "is still open" if (year, month) == (local.year, local.month) else "is in the future"
        )
        ly, lm = last_closed_month(now, zone)
        raise InvalidPeriod(
            f"the month {year:04d}-{month:02d} {which}: a bill can only be asked for a closed "
            f"month (the last closed month is {ly:04d}-{lm:02d})"
        )


def format_duration(seconds: int) -> str:
    """``0h35m42s``; hours are not wrapped at 24."""
    h, rem = divmod(max(seconds, 0), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m}m{s}s"


def format_price(amount: Decimal, currency: str) -> str:
    """``R$ 3,96`` (Brazilian grouping for BRL), else ``USD 1,234.50``."""
    value = cents(amount)
    if value is None:
        return f"{SYMBOLS.get(currency, currency)} {amount}"  # stored before the bounds existed
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.2f}"
    if currency == "BRL":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return f"{sign}{SYMBOLS.get(currency, currency)} {text}"
