"""The FreeSWITCH mapping held to its former self (``former/``: main ``2c48b60``, verbatim): on
every fixture and hand-made document, and on thousands of random legs (XML and JSON) whose
variables, caller profile, times, app_log and hints are drawn from the values each rule
distinguishes, the same CDR (field by field, type by type, the same JSON) or the same refusal
(the same exception type and message). Issue 15, ninth round: the rules were made cheaper."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_parser.freeswitch import map_json, map_xml, parse_json, parse_xml
from cdrmodel import CDR
from tests.parser.freeswitch.conftest import same_cdr
from tests.parser.freeswitch.documents import DATA, FIXTURES, Doc
from tests.parser.freeswitch.former import json_cdr as former_json
from tests.parser.freeswitch.former import xml_cdr as former_xml

US = 1_700_000_000_250_000

# What each rule tells apart, by variable (raw: mod_xml_cdr's percent-encoding is applied
# by Doc.xml, so "%" here is a literal percent sign).
VALUES: dict[str, list[str]] = {
    "uuid": ["u-own", "", " ", "u-other"],
    "direction": ["inbound", "outbound", "INBOUND", " ", "other"],
    "call_direction": ["inbound", "outbound", "local", "internal", "Outbound", "weird", ""],
    "caller_id_number": ["1000", " ", "+15551234"],
    "caller_id_name": ["Alice", ""],
    "origination_caller_id_number": ["2000"],
    "origination_caller_id_name": ["Bob"],
    "effective_caller_id_number": ["3000"],
    "effective_caller_id_name": ["Carol"],
    "sip_invite_failure_status": ["486", "99", "700", "x", "487"],
    "originator": ["u-a", "u-own", ""],
    "originating_leg_uuid": ["u-a", "u-own", " "],
    "bridge_uuid": ["u-b", "u-own"],
    "signal_bond": ["u-c", "u-own"],
    "last_bridge_to": ["u-d"],
    "domain_name": ["pbx.example.com", " "],
    "dialed_domain": ["dialed.example.com"],
    "sip_invite_domain": ["invite.example.com"],
    "domain_uuid": ["d-uuid"],
    "sip_req_host": ["req.example.com"],
    "sip_to_host": ["to.example.com"],
    "presence_id": ["1000@presence.example.com", "nobody", "x@ "],
    "sip_req_user": ["2622"],
    "sip_to_user": ["2623"],
    "accountcode": ["acct1", ""],
    "sip_auth_username": ["auth1"],
    "sip_gateway_name": ["gw1", " "],
    "last_app": ["bridge", "record_session", "hangup", "voicemail"],
    "last_arg": [
        "sofia/gateway/carlos/2622",
        "{api_on_answer='uuid_record ${uuid} start /rec/a.wav'}sofia/gateway/g2/1",
        "/rec/b.wav +30",
        "user/1001",
        "",
    ],
    "current_application": ["bridge", "park"],
    "current_application_data": ["sofia/internal/1002@h", "sofia/gateway/gw9/5"],
    "channel_name": ["sofia/internal/1000@10.0.0.1", "sofia/gateway/gw7/2622", "loopback/x"],
    "sofia_profile_name": ["internal", ""],
    "sip_profile_name": ["external"],
    "start_uepoch": [str(US), "0", "-5", "abc", ""],
    "answer_uepoch": [str(US + 4_500_000), "0", str(US - 1), str(US + 3_000_000_000)],
    "end_uepoch": [str(US + 64_500_000), "0", str(US - 10), str(US + 7_000_000)],
    "start_epoch": [str(US // 1_000_000), "0"],
    "answer_epoch": [str(US // 1_000_000 + 4)],
    "end_epoch": [str(US // 1_000_000 + 64)],
    "start_stamp": ["2023-11-14 17:13:20", "bad"],
    "answer_stamp": ["2023-11-14 17:13:24"],
    "end_stamp": ["2023-11-14 17:14:24"],
    "progress_uepoch": [str(US + 1_200_000), "0", str(US - 1), str(US + 1_234_500)],
    "progress_media_uepoch": [str(US + 900_000), "0", str(US + 987_654), str(US + 1_499)],
    "progressmsec": ["1500", "0", "x"],
    "progress_mediamsec": ["700"],
    "duration": ["64", "0", "-1", "x", " 12 "],
    "billsec": ["60", "0", "-3", "1.5"],
    "hangup_cause": [
        "NORMAL_CLEARING",
        "USER_BUSY",
        "ORIGINATOR_CANCEL",
        "NO_ANSWER",
        "LOSE_RACE",
        "CALL_REJECTED",
        "",
    ],
    "hangup_cause_q850": ["16", "17"],
    "sip_term_status": ["200", "486", "487", "603", "abc", "42"],
    "last_bridge_proto_specific_hangup_cause": ["sip:487", "q850:16", "sip:x"],
    "proto_specific_hangup_cause": ["sip:408", "sip:480"],
    "missed_call": ["true", "false", "TRUE"],
    "voicemail_answer_stamp": ["2023-11-14 17:13:30"],
    "record_path": ["/rec/", "/rec"],
    "record_name": ["c.wav", "/abs/d.wav"],
    "record_samples": ["8000"],
    "cc_record_filename": ["/cc/e.wav"],
    "sofia_record_file": ["/sofia/f.wav"],
    "api_on_answer": ["uuid_record ${uuid} start /rec/g.wav 60", "echo hi"],
    "read_codec": ["PCMA", ""],
    "write_codec": ["PCMU"],
    "hostname": ["fs1", " "],
    "sip_call_id": ["abc@host", "x%y", "100%25 sure"],
    "sip_user_agent": ["OpenBTS 4.0 caf\u00e9", " "],
    "read_rate": ["8000"],
    "sip_hangup_disposition": ["recv_bye", "send_cancel"],
    "endpoint_disposition": ["ANSWER"],
}
PROFILE: dict[str, list[str]] = {
    "uuid": ["u-own", "u-prof", " "],
    "caller_id_number": ["1000", ""],
    "caller_id_name": ["Alice P"],
    "destination_number": ["2622", "*991000", " "],
    "context": ["default", "public", "pbx.example.com", "nodots"],
}
TIMES = {
    "created_time": [str(US), "0"],
    "answered_time": [str(US + 4_000_000), "0"],
    "hangup_time": [str(US + 64_000_000)],
    "progress_time": [str(US + 1_000_000), "0", str(US + 2_500)],
    "progress_media_time": [str(US + 800_000), " 12 "],
}
APPS = ["bridge", "record_session", "set", "hangup"]
APP_DATA = ["sofia/gateway/gwx/99", "/rec/h.wav +20", "/rec/i.wav", "x=1", ""]


def random_doc(rng: random.Random) -> Doc:
    def some(choices: dict[str, list[str]], share: float) -> dict[str, str]:
        return {k: rng.choice(v) for k, v in choices.items() if rng.random() < share}

    variables = some(VALUES, rng.choice([0.15, 0.3, 0.5]))
    if rng.random() < 0.7:  # most legs have times that make sense
        variables["start_uepoch"] = str(US)
        variables["end_uepoch"] = str(US + 64_500_000)
        if variables.get("answer_uepoch", "0") != "0":
            variables["answer_uepoch"] = str(US + 4_500_000)
        for name in ("duration", "billsec"):
            if variables.get(name, "0") not in ("0", "60", "64"):
                del variables[name]
    return Doc(
        variables=variables,
        profile=some(PROFILE, 0.6),
        times=some(TIMES, 0.4),
        apps=[(rng.choice(APPS), rng.choice(APP_DATA)) for _ in range(rng.choice([0, 0, 1, 3]))],
        originator_uuid=rng.choice([None, None, "u-a", "u-own"]),
        originatee_uuid=rng.choice([None, None, "u-b"]),
        switchname=rng.choice([None, "sw1"]),
    )


def random_hints(rng: random.Random) -> dict[str, Any]:
    return {
        "received_at": rng.choice(
            [
                None,
                datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
                datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                datetime(2025, 1, 2, 3, 4, 5),  # naive: refused
            ]
        ),
        "call_id_hint": rng.choice([None, "u-hint", "a_u-hint", "u-hint", "a_", "x" * 130]),
        "a_leg_hint": rng.choice([None, True, False]),
        "origin_host": rng.choice([None, "node-1"]),
        "stamp_tz": rng.choice([None, None, ZoneInfo("America/New_York")]),
    }


def outcome(mapper: Any, document: Any, hints: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("cdr", mapper(document, **hints))
    except Exception as exc:  # the refusal (or a mapper bug) must be the same too
        return (type(exc).__name__, str(exc))


def same(now: tuple[str, Any], former: tuple[str, Any], what: object) -> None:
    assert now[0] == former[0], (what, now, former)
    if now[0] == "cdr":
        same_cdr(now[1], former[1])
    else:
        assert now[1] == former[1], what


def check_xml(text: bytes | str, hints: dict[str, Any]) -> tuple[str, Any]:
    root = parse_xml(text)
    got = outcome(map_xml, root, hints)
    same(got, outcome(former_xml.map_xml, parse_xml(text), hints), text[:3000])
    return got


def check_json(document: dict[str, Any], hints: dict[str, Any]) -> tuple[str, Any]:
    text = json.dumps(document)
    got = outcome(map_json, parse_json(text), hints)
    same(got, outcome(former_json.map_json, parse_json(text), hints), text)
    return got


def _files() -> list[Path]:
    """The XML CDRs among the fixtures (a ``.conf.xml`` is FusionPBX's module configuration,
    not a CDR: left out here rather than skipped, since CI fails on any skip)."""
    found = [*FIXTURES.glob("*.xml"), *DATA.glob("*.xml")]
    return sorted(p for p in found if not p.name.endswith(".conf.xml"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_the_documents_map_as_before(path: Path) -> None:
    rng = random.Random(path.name)
    for _ in range(8):
        check_xml(path.read_bytes(), random_hints(rng))


def test_the_json_fixture_maps_as_before() -> None:
    text = (FIXTURES / "freeswitch_json_cdr_cgrates_answered.json").read_text()
    rng = random.Random(7)
    for _ in range(8):
        check_json(json.loads(text), random_hints(rng))


@pytest.mark.parametrize("seed", range(8))
def test_random_legs_map_as_before(seed: int) -> None:
    rng = random.Random(1500 + seed)
    kinds: dict[str, int] = {}
    for _ in range(400):
        doc, hints = random_doc(rng), random_hints(rng)
        for got in (check_xml(doc.xml(), hints), check_json(doc.json(), hints)):
            kinds[got[0]] = kinds.get(got[0], 0) + 1
    assert kinds.get("cdr", 0) > 200, kinds
    assert kinds.get("UnmappableRecord", 0) > 50, kinds


def test_random_legs_reach_every_field() -> None:
    rng = random.Random(99)
    filled: set[str] = set()
    for _ in range(600):
        got = check_xml(random_doc(rng).xml(), random_hints(rng))
        if got[0] == "cdr":
            cdr: CDR = got[1]
            filled |= {k for k, v in cdr.__dict__.items() if v not in (None, {})}
            filled |= {f"extra.{k}" for k in cdr.extra}
    assert set(CDR.model_fields) <= filled, set(CDR.model_fields) - filled
