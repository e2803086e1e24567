"""The shared mapping: which leg a document is, its call id, hints, and the small ``extra``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from cdr_parser.freeswitch import build as build_module
from cdr_parser.freeswitch import (
    map_json,
    map_xml,
    parse_json,
    parse_xml,
)
from cdrmodel import Leg
from cdrmodel.errors import UnmappableRecord
from tests.parser.freeswitch.documents import (
    CGRATES_JSON,
    ERROR_CALL,
    INCOMING_B,
    TINY_2009,
    answered,
    edited,
    map_file,
    utc,
)


def test_extra_is_a_small_selection_never_the_whole_variable_set() -> None:
    for cdr in (map_file(TINY_2009), map_file(ERROR_CALL), map_file(INCOMING_B)):
        assert 0 < len(cdr.extra) <= 16
        assert "switch_r_sdp" not in cdr.extra
        assert all(isinstance(v, str | bool) for v in cdr.extra.values())


def test_hints_and_received_at_are_used() -> None:
    received = utc(2024, 1, 2, 3, 4, 5)
    cdr = map_xml(parse_xml(ERROR_CALL.read_bytes()), received_at=received, origin_host="10.0.0.9")
    assert cdr.received_at == received
    # no hostname variable and no switchname: the sender
    assert cdr.origin_host == "10.0.0.9"
    # the document's own switchname wins over the sender
    cdr = map_xml(parse_xml(INCOMING_B.read_bytes()), origin_host="10.0.0.9")
    assert cdr.origin_host == "vagrant-ubuntu-trusty-32"


def test_a_leg_hint_forces_the_a_leg() -> None:
    root = parse_xml(INCOMING_B.read_bytes())
    assert map_xml(root, a_leg_hint=True).leg is Leg.A
    # no "a_" prefix is no evidence (prefix-a-leg may be off): the document decides
    assert map_xml(root, a_leg_hint=False).leg is Leg.B
    assert map_xml(root, call_id_hint="a_26444af2-5f94-40b5-9578-824ce7c75ab8").leg is Leg.A


def test_b_leg_detected_by_originating_leg_uuid_alone() -> None:
    # the real B-leg without its <originator> profile and originator variable
    root = edited(INCOMING_B, drop=("originator",))
    caller_profile = root.find("callflow/caller_profile")
    assert caller_profile is not None
    originator = caller_profile.find("originator")
    assert originator is not None
    caller_profile.remove(originator)
    cdr = map_xml(root)
    # variables/originating_leg_uuid
    assert cdr.leg is Leg.B
    assert cdr.other_leg_id == "7c1088a5-ce12-4417-9b57-9d649ae984ec"


def test_originating_leg_uuid_equal_to_the_own_uuid_is_no_b_leg() -> None:
    # some billing scripts set originating_leg_uuid to the A-leg's own uuid
    root = edited(ERROR_CALL, originating_leg_uuid="0006a2fa-b032-43e8-9d70-708f363fe3b7")
    cdr = map_xml(root)
    assert cdr.leg is Leg.A
    assert cdr.other_leg_id is None


def test_b_leg_without_a_uuid_of_its_own_is_unmappable() -> None:
    root = edited(INCOMING_B, drop=("uuid",), profile={"uuid": None})
    # even with the query parameter: a B-leg full of its A-leg's uuids needs its own
    for hint in (None, "26444af2-5f94-40b5-9578-824ce7c75ab8"):
        with pytest.raises(UnmappableRecord, match=r"B-leg .* no uuid of its own"):
            map_xml(root, call_id_hint=hint)
    doc = json.loads(CGRATES_JSON.read_text())
    del doc["variables"]["uuid"], doc["callflow"][0]["caller_profile"]["uuid"]
    doc["variables"]["originator"] = "f52c26f1-b018-4963-bf6d-a3111d1a0320"
    with pytest.raises(UnmappableRecord, match="B-leg"):
        map_json(doc, call_id_hint="3da8bf84-c133-4959-9e24-e72875cb33a1")


def test_received_at_in_another_zone_is_stored_in_utc() -> None:
    from datetime import timedelta, timezone

    from cdrmodel import RawEnvelope

    # As the model does: an aware time in UTC; pydantic's own zone (an envelope's "Z" or
    # "+02:00") and a fixed offset alike.
    envelope = RawEnvelope.model_validate_json(
        b'{"id":"e","kind":"freeswitch.xml","received_at":"2024-01-02T05:04:05.5+02:00",'
        b'"content_type":"text/xml","payload":"x"}'
    )
    plus_two = datetime(2024, 1, 2, 5, 4, 5, 500000, tzinfo=timezone(timedelta(hours=2)))
    for received in (envelope.received_at, plus_two):
        cdr = map_xml(parse_xml(ERROR_CALL.read_bytes()), received_at=received)
        assert cdr.received_at == received
        assert cdr.received_at is not None
        assert cdr.received_at.tzinfo is UTC
        assert cdr.received_at.hour == 3
        assert cdr.received_at.microsecond == 500000


def test_naive_received_at_is_refused() -> None:
    with pytest.raises(UnmappableRecord, match="received_at: Value error, times must carry"):
        map_xml(parse_xml(ERROR_CALL.read_bytes()), received_at=datetime(2024, 1, 2, 3, 4, 5))


def test_call_id_of_128_characters_maps_and_129_is_refused() -> None:
    uuid = "0006a2fa-b032-43e8-9d70-708f363fe3b7"
    for length, ok in ((128, True), (129, False)):
        text = ERROR_CALL.read_text().replace(
            f"<uuid>{uuid}</uuid>", f"<uuid>{'c' * length}</uuid>"
        )
        if ok:
            assert map_xml(parse_xml(text)).call_id == "c" * length
        else:
            with pytest.raises(UnmappableRecord, match="call_id: String should have at most 128"):
                map_xml(parse_xml(text))


def test_the_fixtures_are_built_without_the_models_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mapper's values have the model's types: a mapped fixture (with an envelope's
    # received_at, in pydantic's own UTC zone) never goes through pydantic's validation, which
    # costs more than a tenth of the mapping.
    from cdrmodel import RawEnvelope

    def refuse(fields: object) -> None:
        raise AssertionError("validated")

    received = RawEnvelope.model_validate_json(
        b'{"id":"e","kind":"freeswitch.xml","received_at":"2024-01-02T03:04:05Z",'
        b'"content_type":"text/xml","payload":"x"}'
    ).received_at
    monkeypatch.setattr(build_module, "_validated", refuse)
    for path in (TINY_2009, ERROR_CALL, INCOMING_B):
        assert map_xml(parse_xml(path.read_bytes()), received_at=received).received_at == received


def test_extra_variables_are_stripped_and_empty_ones_left_out(fmt: str) -> None:
    """The variables copied into ``extra`` are what ``var()`` makes of them: stripped, percent-
    decoded, left out when empty or blank (``_extra`` does var()'s steps itself for a plain
    text)."""
    doc = answered(sip_user_agent="@UA@", last_app="@EMPTY@", read_rate="@BLANK@", last_arg="a b%")
    raw = {"@UA@": "  Twinkle/1.2 \t", "@EMPTY@": "", "@BLANK@": " \t "}
    if fmt == "xml":
        text = doc.xml()
        for mark, value in raw.items():
            text = text.replace(quote(mark).encode(), value.encode())
        cdr = map_xml(parse_xml(text))
    else:
        doc.variables.update({k: raw.get(v, v) for k, v in doc.variables.items()})
        doc.variables["last_arg"] = "a%20b%25"
        cdr = map_json(parse_json(json.dumps(doc.json())))
    assert cdr.extra["sip_user_agent"] == "Twinkle/1.2"
    assert cdr.extra["last_arg"] == "a b%"
    assert "last_app" not in cdr.extra
    assert "read_rate" not in cdr.extra
