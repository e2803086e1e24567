"""The mock feed's FreeSWITCH CDRs are realistic enough that the real mapper takes all of them."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from cdr_parser.freeswitch import map_xml, parse_xml, xml_call_id
from cdrflow.mock import generate_cdr
from cdrmodel import Direction, Disposition, Leg

NOW = datetime(2024, 3, 15, 18, 30, tzinfo=UTC)


def test_500_generated_cdrs_all_map() -> None:
    rng = random.Random(20240315)
    dispositions: Counter[Disposition | None] = Counter()
    directions: Counter[Direction | None] = Counter()
    legs: Counter[Leg | None] = Counter()
    carriers: set[str | None] = set()
    for _ in range(500):
        call_id, xml = generate_cdr(rng, now=NOW)
        root = parse_xml(xml)
        assert xml_call_id(root) == call_id
        cdr = map_xml(root)
        assert cdr.call_id == call_id
        # ends within the minute before now, never in the future
        assert cdr.end_time is not None
        assert NOW - timedelta(seconds=61) <= cdr.end_time <= NOW
        assert cdr.start_time <= cdr.end_time
        assert cdr.caller_number
        assert cdr.callee_number
        assert cdr.tenant
        if cdr.disposition is Disposition.ANSWERED:
            assert cdr.billsec_s
            assert cdr.answer_time is not None
        else:
            assert cdr.billsec_s == 0
            assert cdr.answer_time is None
        if cdr.leg is Leg.B:
            assert cdr.other_leg_id
        dispositions[cdr.disposition] += 1
        directions[cdr.direction] += 1
        legs[cdr.leg] += 1
        carriers.add(cdr.carrier)
    assert set(dispositions) == set(Disposition)
    # realistic shares: answered calls are the majority, the rest is spread out
    assert 0.45 <= dispositions[Disposition.ANSWERED] / 500 <= 0.65
    assert set(directions) == set(Direction)
    assert legs[Leg.A] > legs[Leg.B] > 0
    assert len(carriers - {"internal", None}) >= 4


def test_same_seed_same_documents() -> None:
    first = [generate_cdr(random.Random(5), now=NOW) for _ in range(3)]
    second = [generate_cdr(random.Random(5), now=NOW) for _ in range(3)]
    assert first == second


def test_percent_encoding_like_freeswitch() -> None:
    rng = random.Random(1)
    docs = [generate_cdr(rng, now=NOW)[1] for _ in range(50)]
    assert all("%40" in doc for doc in docs)  # e.g. sip_from_uri user%40host
    assert any("%20" in doc for doc in docs)


def test_ten_kilobyte_documents() -> None:
    rng = random.Random(10)
    for _ in range(20):
        call_id, xml = generate_cdr(rng, now=NOW, size_bytes=10_000)
        assert abs(len(xml.encode()) - 10_000) <= 500
        assert map_xml(parse_xml(xml)).call_id == call_id


def test_five_megabyte_document_maps() -> None:
    for seed in (3, 4):  # an A-leg and a B-leg
        call_id, xml = generate_cdr(random.Random(seed), now=NOW, size_bytes=5_000_000)
        size = len(xml.encode())
        assert abs(size - 5_000_000) <= 0.05 * 5_000_000
        assert map_xml(parse_xml(xml.encode())).call_id == call_id
