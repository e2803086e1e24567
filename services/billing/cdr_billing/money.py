"""Money as the API shows it, and the bounds an entered amount must keep.

Amounts are ``Decimal``, never float. An amount entered through the API (an adjustment) is exact in
its currency's minor unit (ISO 4217: two decimals for BRL, none for JPY, three for KWD) and within
``BILLING_MAX_ADJUSTMENT``; anything else is a 400 before anything is stored.

Showing money never fails: a value stored before these bounds existed (an exponent of 10^26 in a
SQLite text column, say) is shown as it is, never a 500 for the charge or the bill it is on.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal

# ISO 4217 currencies whose minor unit is not 1/100.
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}
# Wide enough for any amount the bounds let in (and for sums of many), with no trap: a stored
# value from before the bounds gives an inexact or non-finite result, not an exception.
_WIDE = Context(prec=60, Emax=10**6, Emin=-(10**6), traps=[])
CENT = Decimal("0.01")


def minor_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_exponent(currency))


def is_exact(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` is finite and has no more decimals than the currency's minor unit."""
    return amount.is_finite() and amount == amount.quantize(quantum(currency), context=_WIDE)


def total(amounts: Iterable[Decimal]) -> Decimal:
    out = Decimal(0)
    for amount in amounts:
        out = _WIDE.add(out, amount)
    return out


def cents(value: Decimal) -> Decimal | None:
    """``value`` rounded half up to two decimals, None when it cannot be (non-finite, huge)."""
    if not value.is_finite() or value.adjusted() > 30:
        return None
    return value.quantize(CENT, ROUND_HALF_UP, context=_WIDE)


def money(value: Decimal) -> str:
    """Two decimals (rounded half up); a value that cannot be rounded so is shown as stored."""
    rounded = cents(value)
    return str(value) if rounded is None else str(rounded)


def read_decimal(value: object) -> Decimal:
    """A stored amount as a ``Decimal``; text that is no number reads as NaN, never an error."""
    return _WIDE.create_decimal(str(value)).normalize(_WIDE)
