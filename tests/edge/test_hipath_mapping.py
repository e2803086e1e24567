"""Every line of the public HiPath corpus (tests/fixtures/hipath) mapped to the issue's fields.

The expected values were written by reading each line's columns (1-based: 1-16 end date and
time, 17-19 trunk, 20-25 extension, 26-30 ring mm:ss, 31-38 talk hh:mm:ss, 39-63 number, 64-74
charge units, 75-76 call type), not by running the mapper. The PBX clock is Europe/Dublin, so
summer lines move by an hour and winter lines do not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cdr_parser.hipath import InvalidLine, RingNotice, map_line, map_payload
from cdrmodel.edge import SerialLine, edge_call_id
from cdrmodel.errors import UnmappableRecord
from tests.edge.conftest import fixture_lines

TZ = "Europe/Dublin"
# line | end (PBX clock) | direction | caller | callee | ring s | talk s | trunk | type | units
# "ring" rows are type-0 notices: no CDR.
EXPECTED = """
1|2019-04-10 23:19:06|out|104|00441619251900|0|5|2|2|
2|2019-04-10 23:28:01|out||0061393038625|1|0|2|2|
3|2019-04-10 23:19:06|out|104|00441619251900|0|5|2|2|
4|2019-04-11 00:34:13|out|104|0876153281|0|6|2|2|
5|2019-04-11 00:35:38|ring
6|2019-04-11 00:36:28|ring
7|2019-04-11 00:36:34|in|79923|100|5|0|2|1|
8|2019-04-11 00:49:13|ring
9|2019-04-11 00:49:24|in|0876153281|100|10|0|1|1|
10|2018-09-09 20:16:50|in|0877629926|100|1|6|1|1|
11|2019-02-22 23:11:41|ring
12|2019-02-22 22:55:27|out|058|0922735086|7|0|3|2|
13|2000-12-11 08:23:23|out|16|02317324856|0|323|4|2|12
14|2000-12-11 09:25:34|in||11|34|0|2|1|
15|2000-12-11 10:03:42|out|14|38449434444495598376|0|20563|2|2|245
16|2000-12-11 11:12:45|out|18|834756|0|83|3|2|34
17|2000-12-12 12:23:50|out|11|3844733399|0|238|4|2|7
18|2000-12-12 14:05:24|out|18|834756|0|83|3|2|31
19|2000-12-12 14:43:33|out|12|5345545556|0|25|3|2|5
20|2000-12-12 14:44:12|out|12|5345545556|0|732|3|8|10
21|2000-12-13 09:43:52|out|5|39398989983|0|65|1|4|76
22|2000-12-15 09:44:34|out|15|189????|0|132|4|2|23
23|2000-12-15 12:20:26|ring
24|2000-12-15 13:43:25|in|08972212345|15|0|324|3|1|
25|2000-12-15 13:45:28|ring
26|2000-12-15 13:45:28|ring
27|2000-12-15 13:49:28|out|16|02317324856|0|0|4|2|
28|2021-01-31 15:23:44|ring
29|2021-01-31 15:23:58|in|353877629926|250|5|7|9|1|
30|2021-01-31 15:24:35|in|353877629926|223|0|10|9|35|
31|2021-01-31 15:24:57|ring
32|2021-01-31 15:25:43|out|110|0857739075|0|13|5|2|
33|2021-01-31 15:26:22|in|353877629926|110|0|77|9|35|
34|2021-01-31 15:26:39|in|353877629926|110|0|16|9|37|
35|2021-01-31 15:28:27|ring
36|2021-01-31 15:29:29|out|110|0857739075|0|30|5|2|
37|2021-01-31 15:29:42|out|110|0857739075|0|12|5|38|
38|2021-01-31 15:34:58|out|110|0857739075|0|14|5|2|
39|2021-01-31 15:37:45|ring
40|2021-01-31 15:37:58|in|353877629926|251|5|7|9|1|
41|2021-01-31 15:38:20|in|353877629926|117|0|3|9|35|
42|2021-01-31 15:40:53|out|110|0877629926|0|32|5|2|
43|2021-01-31 15:41:57|out|117|0877629926|0|5|5|36|
44|2021-01-31 15:50:47|ring
45|2021-01-31 15:51:04|in||110|0|6|5|35|
46|2021-01-31 16:04:15|in|353877629926|500|1|0|9|1|
47|2021-01-31 16:04:35|ring
48|2021-01-31 16:04:56|in|353877629926|117|0|4|9|35|
49|2021-01-31 16:06:25|ring
50|2021-01-31 16:06:43|in|353877629926|251|5|16|9|1|
51|2021-01-31 16:06:59|in|353877629926|251|0|16|9|37|
52|2021-01-31 16:08:21|ring
53|2021-01-31 16:08:39|in|353877629926|250|5|16|9|1|
54|2021-01-31 16:08:41|in|353877629926|250|0|2|9|37|
55|2021-01-31 16:09:13|ring
56|2021-01-31 16:09:30|in|353877629926|251|5|16|9|1|
57|2021-01-31 16:09:48|in|353877629926|251|0|17|9|37|
58|2021-01-31 16:22:14|in|353877629926|500|1|0|9|1|
59|2021-01-31 16:22:39|ring
60|2021-01-31 16:22:56|in|353877629926|250|5|16|9|1|
61|2021-01-31 16:23:12|in|353877629926|250|0|15|9|37|
62|2021-01-31 16:25:23|ring
63|2021-01-31 16:25:56|out|110|0857739075|0|9|5|2|
64|2021-01-31 16:26:37|in|353877629926|110|0|67|9|35|
65|2021-01-31 16:26:39|in|353877629926|110|0|2|9|37|
66|2021-01-31 15:23:49|ring
67|2021-01-31 15:24:25|in|353877629926|110|0|0|9|35|
68|2021-04-27 21:33:56|ring
"""
ROWS = [row.split("|") for row in EXPECTED.strip().splitlines()]
FRAMING = bytes([0x00, 0x10, 0x02, 0x03, 0x11, 0x13])


def serial(seq: int, line: bytes, tz: str = TZ) -> SerialLine:
    # The agent drops the framing bytes before it queues a line (cdr_ingest.edge.capture).
    return SerialLine("pbx-1", seq, tz, "hipath-serial", 0.0, line.translate(None, FRAMING))


def test_the_table_covers_the_corpus() -> None:
    assert len(ROWS) == len(fixture_lines()) == 68
    assert [int(r[0]) for r in ROWS] == list(range(1, 69))


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_every_corpus_line_maps_to_the_fields_read_from_it(row: list[str]) -> None:
    seq = int(row[0])
    line = fixture_lines()[seq - 1]
    end = datetime.fromisoformat(row[1]).replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    if row[2] == "ring":
        with pytest.raises(RingNotice):
            map_line(serial(seq, line))
        return
    _, _, direction, caller, callee, ring, talk, trunk, ctype, units = row
    ring_s, talk_s = int(ring), int(talk)
    cdr = map_line(serial(seq, line))
    assert cdr.source == "hipath"
    assert cdr.call_id == edge_call_id("pbx-1", seq)
    assert cdr.origin_host == "pbx-1"
    assert cdr.direction == {"in": "inbound", "out": "outbound"}[direction]
    assert cdr.caller_number == (caller or None)
    assert cdr.callee_number == (callee or None)
    assert cdr.end_time == end
    assert cdr.billsec_s == talk_s
    assert cdr.duration_s == ring_s + talk_s
    assert cdr.start_time == end - timedelta(seconds=ring_s + talk_s)
    assert cdr.answer_time == (end - timedelta(seconds=talk_s) if talk_s else None)
    assert cdr.disposition == ("answered" if talk_s else "no_answer")
    assert cdr.carrier == f"trunk-{trunk}"
    assert cdr.extra["call_type"] == int(ctype)
    assert cdr.extra["ring_s"] == ring_s
    assert cdr.extra["charge_units"] == (int(units) if units else None)
    assert cdr.extra["disa"] is False
    assert cdr.extra.get("missed_call", False) is (direction == "in" and not talk_s)


def test_the_columns_after_76_go_to_extra() -> None:
    lines = fixture_lines()
    assert map_line(serial(10, lines[9])).extra["account_code"] == "9923"
    thirteen = map_line(serial(13, lines[12])).extra
    assert (thirteen["msn"], thirteen["seizure_code"]) == ("902725", "841")
    assert thirteen["account_code"] is None


def test_disa_and_unknown_types() -> None:
    base = fixture_lines()[0].decode()  # outgoing, type 2
    disa = map_line(serial(1, (base[:74] + "52").encode()))
    assert (disa.direction, disa.extra["disa"], disa.extra["call_type"]) == ("outbound", True, 52)
    transfer_in = map_line(serial(1, (base[:74] + "85").encode()))  # 35 via DISA
    assert transfer_in.direction == "inbound"
    unknown = map_line(serial(1, (base[:74] + "22").encode()))
    assert unknown.direction is None
    assert (unknown.caller_number, unknown.callee_number) == (None, None)
    assert unknown.extra["extension"] == "104"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"10.04.1923:19:06  2   104     00:00:05", "characters long"),
        (b"31.02.1923:19:06  2   104     00:00:0500441619251900".ljust(74) + b" 2", "date"),
        (b"10.04.1923:19:06  2   104     00:00:0500441619251900".ljust(74) + b" X", "call type"),
        (b"10.04.1923:19:06  2   104     00:0x:0500441619251900".ljust(74) + b" 2", "talk"),
        (
            b"10.04.1923:19:06  2   104     00:00:0500441619251900".ljust(63)
            + b"12a".rjust(11)
            + b" 2",
            "units",
        ),
        (bytes(range(0x80, 0xD0)), "non-ASCII"),
    ],
)
def test_a_line_that_is_no_record_is_refused_with_its_reason(line: bytes, reason: str) -> None:
    with pytest.raises(InvalidLine, match=reason):
        map_line(serial(1, line))


def test_a_payload_that_is_no_serial_line_or_names_another_call_is_refused() -> None:
    with pytest.raises(UnmappableRecord, match=r"not a pbx\.serial payload"):
        map_payload('{"device": "x"}')
    good = serial(3, fixture_lines()[0]).to_json()
    with pytest.raises(UnmappableRecord, match="call id"):
        map_payload(good, call_id_hint=edge_call_id("pbx-1", 4))
    assert map_payload(good, call_id_hint=edge_call_id("pbx-1", 3)).callee_number
