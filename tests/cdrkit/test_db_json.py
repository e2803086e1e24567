"""``cdrkit.db.dumps_json``: json.dumps's text and errors, and the engines' JSON columns use it;
``ColumnArrays.arrays``: the transpose of ``ColumnArrays.rows`` (issue 15, fifth round)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from cdrkit.db import ColumnArrays, create_engine, dumps_json

VALUES: list[Any] = [
    {},
    [],
    "",
    "plain",
    "é ü 中文 \U0001f600 \ud800 lone surrogate",
    'quotes " and \\ backslash \n\r\t\b\f \x00 \x1f \x7f',
    0,
    -1,
    10**40,
    1.5,
    -0.0,
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    None,
    (1, "two", None),
    {"a": 1, "b": [1, 2, {"c": None}], "é": "ü", "n": 2.25},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    {
        "sip_call_id": "510553e8140010-9679ac7639eb719d",
        "sip_user_agent": "OpenBTS 4.0TRUNK Build Date Aug 19 2014",
        "missed_call": True,
        "context": "default",
    },
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_text_is_json_dumps(value: Any) -> None:
    assert dumps_json(value) == json.dumps(value)


def test_random_documents_are_json_dumps() -> None:
    rng = random.Random(15)
    alphabet = 'abc"\\\n\x01é中\U0001f600 '

    def make(depth: int) -> Any:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        if kind == 1:
            return rng.choice([rng.randrange(-(10**20), 10**20), rng.random() * 1e6, None, True])
        if kind == 2:
            return rng.choice([math.pi, -2.5e-310, 0.1])
        if kind == 3:
            return rng.choice(["", 0, False])
        if kind == 4:
            return [make(depth + 1) for _ in range(rng.randrange(5))]
        return {make(4) if rng.random() < 0.2 else str(i): make(depth + 1) for i in range(5)}

    for _ in range(3_000):
        value = make(0)
        try:
            want = json.dumps(value)
        except TypeError:  # not a JSON key
            with pytest.raises(TypeError):
                dumps_json(value)
            continue
        assert dumps_json(value) == want


def test_the_errors_are_json_dumps() -> None:
    for bad in (Decimal("1.5"), {"at": datetime(2026, 1, 1, tzinfo=UTC)}, [object()], {(1,): 2}):
        with pytest.raises(TypeError) as theirs:
            json.dumps(bad)
        with pytest.raises(TypeError) as ours:
            dumps_json(bad)
        assert str(ours.value) == str(theirs.value)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        dumps_json(loop)
    # A failed call leaves nothing behind: the same containers encode afterwards.
    shared = {"k": [1, 2]}
    with pytest.raises(TypeError):
        dumps_json([shared, object()])
    assert dumps_json([shared, shared]) == json.dumps([shared, shared])


def test_engines_serialise_json_columns_with_it(tmp_path: Path) -> None:
    sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    postgres = create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none")
    for engine in (sqlite, postgres):
        assert engine.dialect._json_serializer is dumps_json  # type: ignore[attr-defined]


# -- ColumnArrays.arrays ---------------------------------------------------------------------


def _tables() -> list[Any]:
    from cdr_billing.models import billing_calls, charges
    from cdr_parser.models import cdrs, dead_letters, raw_payloads

    return [cdrs, raw_payloads, dead_letters, billing_calls, charges]


def _row(table: Any, rng: random.Random, now: datetime) -> dict[str, Any]:
    from sqlalchemy import JSON, Integer, LargeBinary, Numeric
    from sqlalchemy.types import TypeDecorator

    from cdrkit.db import UtcDateTime

    row: dict[str, Any] = {}
    for column in table.c:
        if rng.random() < 0.15:
            continue  # missing: bound as None
        if rng.random() < 0.2:
            row[column.name] = None
            continue
        kind = column.type
        if not isinstance(kind, UtcDateTime) and isinstance(kind, TypeDecorator):
            kind = kind.impl_instance  # billing's Money: Numeric
        if isinstance(kind, UtcDateTime):
            value: Any = now - timedelta(seconds=rng.randrange(10**6))
        elif isinstance(kind, JSON):
            value = {"a": rng.randrange(100), "é": ["x", None]}
        elif isinstance(kind, Numeric):
            value = Decimal(rng.randrange(10**6)) / 100
        elif isinstance(kind, Integer):
            value = rng.randrange(10**6)
        elif isinstance(kind, LargeBinary):
            value = rng.randbytes(20)
        else:
            value = f"text-{rng.randrange(10**6)}"
        row[column.name] = value
    return row


@pytest.mark.parametrize("size", [0, 1, 7, 130])
def test_arrays_are_the_rows_transposed(size: int) -> None:
    dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
    rng = random.Random(size)
    now = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    for table in _tables():
        arrays = ColumnArrays(table)
        rows = [_row(table, rng, now) for _ in range(size)]
        bound = arrays.rows(dialect, rows)
        expected = (
            [list(column) for column in zip(*bound, strict=True)]
            if bound
            else [[] for _ in arrays.names]
        )
        assert arrays.arrays(dialect, rows) == expected, table.name
