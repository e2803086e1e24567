"""Request bodies of the billing API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cdrkit.openapi import Answer
from cdrkit.storable import StorableBody


class BandIn(StorableBody):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    days: list[str] = Field(default=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], min_length=1)
    start: str = Field(description="HH:MM[:SS] in the tariff's timezone")
    end: str = Field(description="HH:MM[:SS]; not after start means it runs past midnight")


class IncrementsIn(StorableBody):
    model_config = ConfigDict(extra="forbid")

    first_s: int = 60
    next_s: int = 60
    rounding: Literal["down", "up"] = "down"


class DestinationIn(StorableBody):
    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(default="", max_length=32)
    name: str = Field(default="", max_length=128)
    prices: dict[str, Decimal] = Field(description="band name -> price per unit_s seconds")
    standing_charge: Decimal | None = None


class TariffIn(StorableBody):
    """A new version of a tariff (the version number is assigned by the server)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    effective_from: AwareDatetime | None = None  # default: now
    currency: str = "BRL"
    timezone: str | None = None  # default: BILLING_TIMEZONE
    standing_charge: Decimal = Decimal(0)
    minimum_charge: Decimal = Decimal(0)
    unit_s: int = 60
    increments: IncrementsIn = IncrementsIn()
    bands: list[BandIn] = Field(min_length=1)
    destinations: list[DestinationIn] = Field(min_length=1)
    overnight: Literal["same_day", "next_day"] = Field(
        default="same_day",
        description=(
            "a band whose end is not after its start: same_day = on each listed day, start to "
            "midnight and midnight to end; next_day = start into the next day's end"
        ),
    )
    extension_ranges: list[str] = Field(
        default=[], max_length=100, description='on-net called numbers, e.g. ["1000-1999"]: free'
    )
    free_prefixes: list[str] = Field(
        default=[], max_length=1000, description='called numbers starting so are free, e.g. "0800"'
    )


class AssignmentIn(StorableBody):
    model_config = ConfigDict(extra="forbid")

    tariff: str = Field(min_length=1, max_length=64)


# What numeric(18, 6) can hold; BILLING_MAX_ADJUSTMENT is the operator's own, lower, bound.
MONEY_LIMIT = Decimal(10) ** 12


class AdjustmentIn(StorableBody):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(
        allow_inf_nan=False,
        gt=-MONEY_LIMIT,
        lt=MONEY_LIMIT,
        description="signed, in the charge's currency, at most its minor unit (two decimals for "
        "BRL) and BILLING_MAX_ADJUSTMENT in size; negative lowers the charge",
        examples=["-0.51", "2.00"],
    )
    reason: str = Field(min_length=1, max_length=1000)
    kind: Literal["correction", "credit"] = Field(
        default="correction",
        description="correction: may lower the charge's total to zero, not below; credit: a "
        "negative amount that may take the total below zero (money owed to the subscriber)",
    )


class RerateResult(BaseModel):
    examined: int
    priced: int
    still_unpriced: int
    since: datetime
    until: datetime


# -- answers ------------------------------------------------------------------------------------
# Amounts are decimal strings ("0.54"), times ISO 8601 strings. Fields may be added (the routes
# answer with exclude_unset: a key the service leaves out stays out), never renamed.


class BandOut(Answer):
    name: str
    days: list[str]
    start: str
    end: str


class IncrementsOut(Answer):
    first_s: int
    next_s: int
    rounding: str


class DestinationOut(Answer):
    prefix: str
    name: str
    prices: dict[str, str]
    standing_charge: str | None = None


class TariffVersionOut(Answer):
    name: str
    version: int
    effective_from: str
    currency: str
    timezone: str
    standing_charge: str
    minimum_charge: str
    unit_s: int
    increments: IncrementsOut
    bands: list[BandOut]
    overnight: str = "same_day"
    extension_ranges: list[str] = []
    free_prefixes: list[str] = []
    destination_count: int
    destinations: list[DestinationOut] | None = None


class TariffOut(Answer):
    name: str
    versions: list[TariffVersionOut]


class TariffList(Answer):
    default: str
    items: list[TariffOut]


class AssignmentOut(Answer):
    subscriber: str
    tariff: str


class AdjustmentOut(Answer):
    id: int
    call_id: str
    amount: str
    currency: str
    reason: str
    created_at: str


class TariffRef(Answer):
    name: str
    version: int


class ChargeFields(Answer):
    """What a charge and a line of the charges list both show."""

    call_id: str
    subscriber: str
    outcome: str
    destination: str | None
    start_time: str
    end_time: str
    billed_s: int
    amount: str
    currency: str
    tariff: TariffRef


class ChargeOut(ChargeFields):
    rated_at: str
    explanation: dict[str, Any]
    adjustments: list[AdjustmentOut]
    total: str


class BillCall(Answer):
    call_id: str
    destination: str | None
    start_date: str
    start_time: str
    duration: str
    price: str
    amount: str


class BillAdjustment(AdjustmentOut):
    price: str


class BillOut(Answer):
    subscriber: str
    period: str
    timezone: str
    currency: str
    total: str
    total_price: str
    calls: list[BillCall]
    adjustments: list[BillAdjustment]
    provisional: bool = False
    as_of: str | None = Field(default=None, description="a provisional bill: when it was made")


class AssignmentView(Answer):
    subscriber: str
    tariff: str
    assigned: bool = Field(description="false: no assignment, the default tariff applies")
    assigned_at: str | None


class ChargeItem(ChargeFields):
    reason: str | None = Field(default=None, description="why a call was not priced")


class ChargePage(Answer):
    items: list[ChargeItem]
    next_cursor: str | None
