"""The parser's store rows made the cheaper ways of issue 15's eighth round, held to what the
general code makes: ``_StoreArrays.arrays`` to ``ColumnArrays.arrays`` (the same lists, value for
value, through the same bind processors), ``call_too_long`` to its loop over every span (the
same verdict and message), ``cdr_row``/``raw_row`` to the enums' ``.value``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cdr_parser.freeswitch import map_xml, parse_xml
from cdr_parser.models import cdrs as cdrs_table
from cdr_parser.models import raw_payloads
from cdr_parser.repository import _CDR_ARRAYS, _RAW_ARRAYS, _StoreArrays
from cdr_parser.rows import call_too_long, cdr_row, pack_raw, raw_row
from cdrkit.db import ColumnArrays
from cdrkit.db.engine import create_engine
from cdrmodel import CDR, Origin, PayloadKind, RawEnvelope

FIXTURES = Path(__file__).parents[1] / "fixtures" / "freeswitch"
NOW = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def _cdrs() -> list[CDR]:
    out = []
    for path in sorted(FIXTURES.glob("freeswitch_xml_cdr_*.xml")):
        out.append(map_xml(parse_xml(path.read_bytes()), received_at=NOW))
    assert len(out) >= 3
    return out


def _envelope(cdr: CDR, **changes: Any) -> RawEnvelope:
    fields: dict[str, Any] = {
        "id": "e" * 32,
        "kind": PayloadKind.FREESWITCH_XML,
        "received_at": NOW,
        "source": Origin(remote_addr="127.0.0.1"),
        "content_type": "application/xml",
        "call_id": cdr.call_id,
        "payload": "<cdr>é \ud800</cdr>",
        "sha256": "0" * 64,
    }
    fields.update(changes)
    return RawEnvelope(**fields)


def _dialects() -> list[Any]:
    return [
        create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none").dialect,
        create_engine("sqlite+aiosqlite:///:memory:").dialect,
    ]


@pytest.mark.parametrize("dialect", _dialects(), ids=["postgresql", "sqlite"])
def test_store_arrays_are_the_general_column_arrays(dialect: Any) -> None:
    cdrs = _cdrs()
    rows = [cdr_row(c, NOW) for c in cdrs]
    # other shapes: no answer/end times, a time in another zone, an extra with every kind of
    # value the JSON column takes, a row without some columns (the general way: None)
    rows.append({**rows[0], "call_id": "x1", "answer_time": None, "end_time": None})
    rows.append(
        {
            **rows[1],
            "call_id": "x2",
            "start_time": datetime(2026, 5, 1, 14, tzinfo=timezone(timedelta(hours=2))),
            "extra": {"a": [1, 2.5, None], "b": {"c": 'é\n"'}, "d": True, "e": 10**20},
        }
    )
    rows.append({"call_id": "x3", "start_time": NOW, "extra": {}})
    for batch in (rows, rows[:1], rows[-1:], []):
        want = ColumnArrays(cdrs_table).arrays(dialect, batch)
        got = _CDR_ARRAYS.arrays(dialect, batch)
        assert got == want
        assert _CDR_ARRAYS.rows(dialect, batch) == ColumnArrays(cdrs_table).rows(dialect, batch)
        assert [type(c) for c in got] == [list] * len(_CDR_ARRAYS.names)
        for g, w in zip(got, want, strict=True):
            assert [type(v) for v in g] == [type(v) for v in w]
    assert any(v is not None for v in _CDR_ARRAYS.arrays(dialect, rows)[-3])  # extra processed

    raws = [pack_raw(raw_row(_envelope(c), c.call_id, NOW)) for c in cdrs] + [
        pack_raw(raw_row(_envelope(cdrs[0], payload=None, payload_ref="file:///x"), "y", NOW))
    ]
    for batch in (raws, []):
        want = ColumnArrays(raw_payloads).arrays(dialect, batch)
        assert _RAW_ARRAYS.arrays(dialect, batch) == want


def test_store_arrays_take_the_general_way_for_a_row_missing_a_column() -> None:
    dialect = _dialects()[0]
    rows = [{"call_id": "a"}, {"call_id": "b", "codec": "PCMA", "extra": {"k": "v"}}]
    assert _StoreArrays(cdrs_table).arrays(dialect, rows) == ColumnArrays(cdrs_table).arrays(
        dialect, rows
    )


def _call_too_long_reference(cdr: Any, max_s: float) -> str | None:
    """The loop as it was before the eighth round (every span, in order)."""
    spans = {"duration_s": cdr.duration_s, "billsec_s": cdr.billsec_s}
    if cdr.start_time is not None and cdr.end_time is not None:
        spans["start → end"] = int((cdr.end_time - cdr.start_time).total_seconds())
    for what, seconds in spans.items():
        if seconds is not None and seconds > max_s:
            return (
                f"the call lasts {seconds} s ({what}), longer than CDRFLOW_MAX_CALL_DURATION_S "
                f"({max_s:.0f} s)"
            )
    return None


class _Call:
    def __init__(self, duration_s: Any, billsec_s: Any, span: timedelta | None) -> None:
        self.duration_s, self.billsec_s = duration_s, billsec_s
        self.start_time = NOW
        self.end_time = None if span is None else NOW + span


def test_call_too_long_is_the_loop_over_every_span() -> None:
    seconds = [None, 0, 5, 9, 10, 11, 100]
    spans = [
        None,
        timedelta(0),
        timedelta(seconds=10),
        timedelta(seconds=10, microseconds=999_999),
        timedelta(seconds=11),
        timedelta(seconds=-30),
        timedelta(seconds=100),
    ]
    checked = refused = 0
    for max_s in (10.0, 10.5, 9.9999996, 0.0, math.inf, math.nan):
        for duration in seconds:
            for billsec in seconds:
                for span in spans:
                    call = _Call(duration, billsec, span)
                    want = _call_too_long_reference(call, max_s)
                    assert call_too_long(call, max_s) == want, (max_s, duration, billsec, span)  # type: ignore[arg-type]
                    checked += 1
                    refused += want is not None
    assert checked == 6 * 7 * 7 * 7
    assert 0 < refused < checked
    no_start = _Call(None, None, None)
    no_start.start_time = None  # type: ignore[assignment]
    assert call_too_long(no_start, 1.0) is None  # type: ignore[arg-type]


def test_rows_carry_the_enums_text() -> None:
    for cdr in _cdrs():
        row = cdr_row(cdr, NOW)
        for key in ("leg", "direction", "disposition"):
            value = getattr(cdr, key)
            want = None if value is None else value.value
            assert row[key] == want, key
            assert type(row[key]) is type(want), key
        raw = raw_row(_envelope(cdr), cdr.call_id, NOW)
        assert raw["kind"] == "freeswitch.xml"
        assert type(raw["kind"]) is str


def test_the_checked_raw_row_with_its_call_id_is_the_raw_row() -> None:
    # ParserService stores the raw row it checked (call id "") with the call id set, instead of
    # a second raw_row (issue 15, ninth round): the same row, key for key, in the same order.
    from cdr_parser.service import _with_call_id

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    envelopes = [_envelope(c) for c in _cdrs()]
    envelopes.append(
        _envelope(_cdrs()[0], payload=None, payload_ref="file:///x/y", sha256="0" * 64)
    )
    envelopes.append(_envelope(_cdrs()[0], call_id=None, a_leg=True, kind=PayloadKind.PBX_SERIAL))
    for env in envelopes:
        for call_id in ("c-1", env.id, "x" * 128):
            got = _with_call_id(raw_row(env, "", now), call_id)
            want = raw_row(env, call_id, now)
            assert list(got.items()) == list(want.items())
