"""Billing's tables: versioned tariffs, assignments, the calls it consumed, the charge ledger
(immutable: a trigger refuses UPDATE and DELETE) and adjustments.

Money is ``Numeric`` on PostgreSQL and a decimal string on SQLite (which has no exact decimal
type), always ``Decimal`` in Python, never float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from cdr_billing.money import read_decimal
from cdrkit.db import UtcDateTime


class Money(TypeDecorator[Decimal]):
    """Exact decimal money on every backend."""

    impl = Numeric(18, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(18, 6))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return read_decimal(value) if dialect.name == "sqlite" else Decimal(value)


def _id() -> Column[int]:
    return Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


metadata = MetaData()

tariffs = Table(
    "tariffs",
    metadata,
    _id(),
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("effective_from", UtcDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("standing_charge", Money, nullable=False),
    Column("minimum_charge", Money, nullable=False),
    Column("unit_s", Integer, nullable=False),
    Column("first_increment_s", Integer, nullable=False),
    Column("next_increment_s", Integer, nullable=False),
    Column("rounding", String(8), nullable=False),
    Column("bands", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # overnight, extension_ranges, free_prefixes (0002); NULL on versions stored before it:
    # those read bands crossing midnight as "next_day" and have no on-net rules.
    Column("rules", JSON),
    UniqueConstraint("name", "version", name="uq_tariffs_name_version"),
)

tariff_destinations = Table(
    "tariff_destinations",
    metadata,
    Column("tariff_id", ForeignKey("tariffs.id"), primary_key=True),
    Column("prefix", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("prices", JSON, nullable=False),  # band -> decimal string
    Column("standing_charge", Money),
)

tariff_assignments = Table(
    "tariff_assignments",
    metadata,
    Column("subscriber", String(128), primary_key=True),
    Column("tariff_name", String(64), nullable=False),
    Column("assigned_at", UtcDateTime, nullable=False),
)

# What billing keeps of every consumed CDR, so rerating never needs the parser's tables.
billing_calls = Table(
    "billing_calls",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("subscriber", String(128)),
    Column("source", String(32), nullable=False),
    Column("caller_number", String(64)),
    Column("callee_number", String(64)),
    Column("account", String(128)),
    Column("start_time", UtcDateTime, nullable=False),
    Column("answer_time", UtcDateTime),
    Column("end_time", UtcDateTime),
    Column("duration_s", Integer),
    Column("billsec_s", Integer),
    Column("disposition", String(16)),
    Column("consumed_at", UtcDateTime, nullable=False),
    # Why the call has no charge yet (cleared when it gets one).
    Column("unpriced_reason", Text),
    Index("ix_billing_calls_start_time", "start_time"),
)

charges = Table(
    "charges",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("subscriber", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),  # priced | not_answered | free
    Column("destination", String(64)),
    Column("start_time", UtcDateTime, nullable=False),
    Column("end_time", UtcDateTime, nullable=False),  # the bill month is the month it ended
    Column("billed_s", Integer, nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tariff_name", String(64), nullable=False),
    Column("tariff_version", Integer, nullable=False),
    Column("explanation", JSON, nullable=False),
    Column("rated_at", UtcDateTime, nullable=False),
    # Bills and GET /v1/charges: one subscriber's charges by end time, keyset on the call id.
    Index("ix_charges_subscriber_end_time_call_id", "subscriber", "end_time", "call_id"),
)

adjustments = Table(
    "adjustments",
    metadata,
    _id(),
    Column("call_id", String(128), ForeignKey("charges.call_id"), nullable=False),
    Column("subscriber", String(128), nullable=False),
    Column("call_end_time", UtcDateTime, nullable=False),  # listed on the call's bill
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_adjustments_subscriber_end_time", "subscriber", "call_end_time"),
    Index("ix_adjustments_call_id", "call_id"),
)
