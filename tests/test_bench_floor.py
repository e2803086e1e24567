"""The stack's floor (``bench.floor_stack``) does the work it is measured doing: the figures of
``python -m bench e2e floor`` are only a lower bound for cdrflow if the floor decodes, reads and
prices the real documents right. Expected values read off the fixtures by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote_plus, unquote_to_bytes

import pytest

from bench.floor_stack import SQLITE_DDL, _sink, form_field, normalise, price

FIXTURES = Path(__file__).parent / "fixtures" / "freeswitch"


@pytest.mark.parametrize(
    ("name", "call_id", "caller", "callee", "billsec", "cause"),
    [
        (
            "freeswitch_xml_cdr_ccm_client_error-call-cdr.xml",
            "0006a2fa-b032-43e8-9d70-708f363fe3b7",
            "IMSI510555550000087",
            "6281248174025",
            0,
            "NORMAL_CLEARING",
        ),
        (
            "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml",
            "26444af2-5f94-40b5-9578-824ce7c75ab8",
            "18657194461",
            "IMSI901550000000072",  # the first caller profile's, not the originatee's
            24,
            "NORMAL_CLEARING",
        ),
        (
            # 2009: no uuid variable, the caller profile's uuid is the call id
            "freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml",
            "91353230-461f-11de-aa7f-b10b4edc0c92",
            "1000",
            "2622",
            0,
            "ORIGINATOR_CANCEL",
        ),
    ],
)
def test_the_floor_reads_each_fixture(
    name: str, call_id: str, caller: str, callee: str, billsec: int, cause: str
) -> None:
    doc = (FIXTURES / name).read_bytes()
    # Posted url-encoded, as the bench's load posts it.
    body = b"cdr=" + quote_plus(doc).encode()
    assert form_field(body) == doc
    record, packed = normalise(doc)
    assert record["call_id"] == call_id
    assert (record["caller"], record["callee"]) == (caller, callee)
    assert (record["billsec"], record["hangup_cause"]) == (billsec, cause)
    assert len(packed) < len(doc)  # the raw document really is packed


@pytest.mark.parametrize(
    "value",
    [b"%3Ca%3E+b", b"a=b%3D", b"%zz%3C", b"line%0Abreak", b"raw\nnewline", b"100%", b"%3"],
)
def test_the_floor_decodes_forms_as_urllib_does(value: bytes) -> None:
    assert form_field(b"cdr=" + value) == unquote_to_bytes(value.replace(b"+", b" "))


def test_the_floor_prices_by_the_longest_prefix() -> None:
    assert price("+44 20 7946 0000", 60) == 0.015  # 4420, not 44
    assert price("4413 496 0000", 120) == 0.04
    assert price("0800 123", 60) == 0.0  # no prefix matches
    assert price(None, 60) == 0.0


def test_the_floor_all_in_one_charges_and_counts_a_redelivered_batch_once() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SQLITE_DDL)
    doc = (FIXTURES / "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml").read_bytes()
    rows = [normalise(doc)]
    _sink(db, rows)
    _sink(db, rows)  # redelivered after a crash before the offsets line
    # IMSI901550000000072: no price list prefix matches, so the charge is 0
    assert db.execute("SELECT count(*), sum(amount) FROM charges").fetchone() == (1, 0.0)
    assert db.execute("SELECT sum(calls) FROM buckets").fetchone() == (1,)
