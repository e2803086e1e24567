"""Times: microsecond epochs first, then callflow times, epoch seconds, and zone-less stamps only
when the switch zone is known; post-dial delay; times that go backwards are unmappable."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from cdr_parser.freeswitch import (
    map_json,
    map_xml,
)
from cdrmodel.errors import UnmappableRecord
from tests.parser.freeswitch.documents import (
    CGRATES_JSON,
    ERROR_CALL,
    INCOMING_B,
    START_US,
    Doc,
    answered,
    edited,
    utc,
)


def test_times_come_from_microsecond_epochs(fmt: str) -> None:
    cdr = answered().map(fmt)
    assert cdr.start_time == utc(2023, 11, 14, 22, 13, 20, 250000)
    assert cdr.answer_time == utc(2023, 11, 14, 22, 13, 24, 750000)
    assert cdr.end_time == utc(2023, 11, 14, 22, 14, 24, 750000)
    # no duration/billsec variables: whole epoch seconds, as FreeSWITCH computes them
    assert cdr.duration_s == 1_700_000_064 - 1_700_000_000
    assert cdr.billsec_s == 1_700_000_064 - 1_700_000_004


def test_times_fall_back_to_callflow_then_epoch_seconds(fmt: str) -> None:
    doc = answered()
    for name in ("start_uepoch", "answer_uepoch", "end_uepoch"):
        del doc.variables[name]
    doc.times = {"created_time": str(START_US), "answered_time": "0"}
    doc.variables |= {"answer_epoch": "1700000004", "end_epoch": "1700000064"}
    cdr = doc.map(fmt)
    assert cdr.start_time == utc(2023, 11, 14, 22, 13, 20, 250000)
    # callflow answered_time present and 0: never answered, the epoch is not consulted
    assert cdr.answer_time is None
    assert cdr.end_time == utc(2023, 11, 14, 22, 14, 24)
    assert cdr.billsec_s == 0


def test_stamps_are_used_only_when_the_switch_zone_is_known(fmt: str) -> None:
    doc = Doc(
        variables={
            "uuid": "u-stamp",
            "start_stamp": "2009-05-21 10:53:46",
            "end_stamp": "2009-05-21 10:53:47",
            "hangup_cause": "ORIGINATOR_CANCEL",
        }
    )
    with pytest.raises(UnmappableRecord, match="no start time"):
        doc.map(fmt)
    cdr = doc.map(fmt, stamp_tz=timezone(timedelta(hours=-5)))
    assert cdr.start_time == utc(2009, 5, 21, 15, 53, 46)
    assert cdr.end_time == utc(2009, 5, 21, 15, 53, 47)
    assert cdr.duration_s == 1


def test_pdd_prefers_the_microsecond_stamps_then_the_msec_variables(fmt: str) -> None:
    doc = answered(
        progress_uepoch=str(START_US + 1_800_400),
        progress_media_uepoch=str(START_US + 2_500_000),
        progressmsec="9999",
    )
    assert doc.map(fmt).pdd_ms == 1800
    doc = answered(progressmsec="1500", progress_mediamsec="0")
    assert doc.map(fmt).pdd_ms == 1500
    doc = answered(progress_uepoch="0", progress_media_uepoch="0", progressmsec="1500")
    assert doc.map(fmt).pdd_ms is None  # the stamps say: never reached progress


@pytest.mark.parametrize(
    ("path", "changes", "reason"),
    [
        # end_uepoch a second before start_uepoch 1423742585698089
        (ERROR_CALL, {"end_uepoch": "1423742584698089"}, "ended .* before it started"),
        (ERROR_CALL, {"answer_uepoch": "1423742585000000"}, "answered .* before it started"),
        # end_uepoch before answer_uepoch 1425880692654914
        (INCOMING_B, {"end_uepoch": "1425880690000000"}, "ended .* before it was answered"),
        (INCOMING_B, {"duration": "-5"}, "duration variable is negative"),
        (INCOMING_B, {"billsec": "-1"}, "billsec variable is negative"),
        (INCOMING_B, {"billsec": "24s"}, "billsec variable is not a whole number"),
    ],
)
def test_times_that_go_backwards_and_bad_durations_are_unmappable(
    path: Path, changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(UnmappableRecord, match=reason):
        map_xml(edited(path, **changes))


def test_callflow_times_that_go_backwards_are_unmappable() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    for name in ("start_uepoch", "answer_uepoch", "end_uepoch"):
        del doc["variables"][name]
    # callflow[0] times: hangup_time before created_time 1515666344534355
    doc["callflow"][0]["times"]["hangup_time"] = "1515666300000000"
    with pytest.raises(UnmappableRecord, match="times go backwards"):
        map_json(doc)


def test_as_datetime_is_the_epoch_plus_the_microseconds() -> None:
    import random
    from datetime import UTC, datetime, timedelta

    from cdr_parser.freeswitch.times import as_datetime

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(15)
    edges = [0, 1, -1, 999_999, 1_000_000, 1_764_000_000_123_456, 253_402_300_799_999_999]
    for us in edges + [
        rng.randrange(-62_135_596_800_000_000, 253_402_300_800_000_000) for _ in range(2_000)
    ]:
        got, want = as_datetime(us), epoch + timedelta(microseconds=us)
        assert got == want
        assert got.tzinfo is UTC
    for us in (253_402_300_800_000_000, -62_135_596_800_000_001, 10**30):
        with pytest.raises(OverflowError) as got_error:
            as_datetime(us)
        with pytest.raises(OverflowError) as want_error:
            epoch + timedelta(microseconds=us)
        assert str(got_error.value) == str(want_error.value)
