"""mod_json_cdr specifics: both callflow shapes, percent-encoded values, malformed JSON refused
with its reason, the oldest callflow and the originator profile read as in XML."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from cdr_parser.freeswitch import (
    json_call_id,
    map_json,
    parse_json,
)
from cdrmodel import Leg
from cdrmodel.errors import NotWellFormed, UnmappableRecord
from tests.parser.freeswitch.documents import (
    CGRATES_JSON,
)


def test_json_callflow_as_a_single_object_and_percent_encoded_values() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    plain = map_json(doc)
    # mod_json_cdr with encode-values=true: every variable value percent-encoded
    doc["variables"] = {k: quote(v, safe="") for k, v in doc["variables"].items()}
    # older writers: one callflow object instead of an array
    doc["callflow"] = doc["callflow"][0]
    encoded = map_json(doc)
    assert encoded == plain
    assert encoded.extra["last_arg"] == "user/1002@10.10.10.204"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{", NotWellFormed),
        (b"\xff\xfe\x00", NotWellFormed),
        (b"[1, 2]", UnmappableRecord),
        ("[" * 100_000, NotWellFormed),
    ],
)
def test_bad_json(payload: bytes | str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json(payload)


def test_json_without_call_id_or_start_is_unmappable() -> None:
    assert json_call_id({}) is None
    with pytest.raises(UnmappableRecord, match="call id"):
        map_json({})
    with pytest.raises(UnmappableRecord, match="no start time"):
        map_json({"variables": {"uuid": "u-1"}})


def test_json_destination_is_the_oldest_callflows() -> None:
    # both profiles of the real document say 1002: nothing to report
    assert "final_destination" not in map_json(parse_json(CGRATES_JSON.read_bytes())).extra
    doc = json.loads(CGRATES_JSON.read_text())
    doc["callflow"][1]["caller_profile"]["destination_number"] = "5000"  # profile_index 1
    cdr = map_json(doc)
    assert cdr.callee_number == "5000"
    assert cdr.extra["final_destination"] == "1002"


def test_json_b_leg_with_an_originator_profile() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    profile = doc["callflow"][0]["caller_profile"]
    del profile["originatee"]
    profile["originator"] = {
        "originator_caller_profiles": [{"uuid": "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"}]
    }
    cdr = map_json(doc)
    assert cdr.leg is Leg.B
    assert cdr.other_leg_id == "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
