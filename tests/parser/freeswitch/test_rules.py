"""The rules (``docs/freeswitch-mapping.md``), each in both formats: a synthetic document rendered
as mod_xml_cdr and as mod_json_cdr must map the same way."""

from __future__ import annotations

import json

import pytest

from cdr_parser.freeswitch import (
    map_json,
    map_xml,
)
from cdrmodel import Direction, Disposition, Leg
from tests.parser.freeswitch.documents import (
    CGRATES_JSON,
    INCOMING_B,
    TINY_2009,
    answered,
    edited,
    unanswered,
)


@pytest.mark.parametrize(
    ("billsec", "was_answered", "cause", "sip", "expected"),
    [
        ("68", True, "NORMAL_CLEARING", "200", Disposition.ANSWERED),
        ("5", True, "NO_USER_RESPONSE", None, Disposition.ANSWERED),  # billsec > 0 wins
        ("0", False, "USER_BUSY", "486", Disposition.BUSY),
        ("0", False, "NORMAL_CLEARING", "600", Disposition.BUSY),
        ("0", False, "ORIGINATOR_CANCEL", "487", Disposition.CANCELLED),
        ("0", False, None, "487", Disposition.CANCELLED),
        ("0", False, "NO_ANSWER", "487", Disposition.NO_ANSWER),  # the cause decides first
        ("0", False, "NO_USER_RESPONSE", "408", Disposition.NO_ANSWER),
        ("0", False, "ALLOTTED_TIMEOUT", None, Disposition.NO_ANSWER),
        ("0", False, "SUBSCRIBER_ABSENT", "480", Disposition.NO_ANSWER),
        ("0", False, "NORMAL_CLEARING", None, Disposition.NO_ANSWER),
        ("0", True, "NORMAL_CLEARING", None, Disposition.FAILED),
        ("0", False, "NORMAL_TEMPORARY_FAILURE", "503", Disposition.FAILED),
        ("0", False, "CALL_REJECTED", "603", Disposition.FAILED),
        ("0", False, None, None, None),  # nothing to go on
    ],
)
def test_disposition(
    fmt: str,
    billsec: str,
    was_answered: bool,
    cause: str | None,
    sip: str | None,
    expected: Disposition | None,
) -> None:
    doc = answered(billsec=billsec) if was_answered else unanswered(cause, billsec=billsec)
    if was_answered:
        if cause is None:
            del doc.variables["hangup_cause"]
        else:
            doc.variables["hangup_cause"] = cause
    if sip is not None:
        doc.variables["sip_term_status"] = sip
    assert doc.map(fmt).disposition is expected


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"sip_term_status": "486", "proto_specific_hangup_cause": "sip:503"}, 486),
        (
            {
                "last_bridge_proto_specific_hangup_cause": "sip:480",
                "proto_specific_hangup_cause": "sip:487",
            },
            480,
        ),
        ({"proto_specific_hangup_cause": "sip:404"}, 404),
        # the answer to this leg's INVITE beats the cause noted at hangup
        ({"proto_specific_hangup_cause": "sip:503", "sip_invite_failure_status": "486"}, 486),
        ({"last_bridge_proto_specific_hangup_cause": "q850:16", "sip_term_status": "0"}, None),
        ({"proto_specific_hangup_cause": "q850:16", "sip_invite_failure_status": "503"}, 503),
        ({"sip_term_status": "nonsense"}, None),
        ({"sip_term_status": "99"}, None),
    ],
)
def test_sip_code_precedence(fmt: str, variables: dict[str, str], expected: int | None) -> None:
    assert unanswered(**variables).map(fmt).sip_code == expected


@pytest.mark.parametrize(
    ("variables", "profile", "context", "apps", "expected"),
    [
        ({"call_direction": "local"}, {}, "public", [], Direction.INTERNAL),
        ({"call_direction": "inbound"}, {}, "default", [], Direction.INBOUND),
        ({"call_direction": "outbound"}, {}, "public", [], Direction.OUTBOUND),
        (
            {"direction": "inbound", "last_app": "bridge", "last_arg": "user/1001@pbx"},
            {},
            "public",
            [],
            Direction.INBOUND,
        ),
        (
            {"direction": "inbound", "last_app": "bridge", "last_arg": "sofia/gateway/gw1/5511"},
            {},
            "default",
            [],
            Direction.OUTBOUND,
        ),
        (
            {"direction": "inbound", "last_app": "bridge", "last_arg": "user/1002@pbx"},
            {},
            "default",
            [],
            Direction.INTERNAL,
        ),
        (
            # the bridge is found in app_log when another app ran after it
            {"direction": "inbound", "last_app": "voicemail"},
            {},
            "default",
            [("bridge", "{x=1}sofia/gateway/gw2/5511|sofia/gateway/gw3/5511"), ("hangup", "")],
            Direction.OUTBOUND,
        ),
        ({"direction": "inbound"}, {}, "default", [], None),  # never bridged: unknown
        (
            # from a carrier, to a carrier: transit, none of the three
            {
                "direction": "inbound",
                "sip_gateway_name": "gw1",
                "last_app": "bridge",
                "last_arg": "sofia/gateway/gw2/5511",
            },
            {},
            "public",
            [],
            None,
        ),
        (
            # an A-leg the switch originated itself (API originate): unknown
            {"direction": "outbound", "last_app": "bridge", "last_arg": "user/1001@pbx"},
            {},
            "default",
            [],
            None,
        ),
        ({"direction": "outbound", "originator": "a-1"}, {}, "public", [], Direction.INBOUND),
        (
            {"direction": "outbound", "originator": "a-1", "sip_gateway_name": "gw1"},
            {},
            "default",
            [],
            Direction.OUTBOUND,
        ),
        ({"direction": "outbound", "originator": "a-1"}, {}, "default", [], Direction.INTERNAL),
    ],
)
def test_direction(
    fmt: str,
    variables: dict[str, str],
    profile: dict[str, str],
    context: str,
    apps: list[tuple[str, str]],
    expected: Direction | None,
) -> None:
    doc = answered(**variables)
    doc.profile = {"context": context} | profile
    doc.apps = apps
    assert doc.map(fmt).direction is expected


def test_missed_call_flag(fmt: str) -> None:
    inbound = {"call_direction": "inbound"}
    assert unanswered(**inbound).map(fmt).extra["missed_call"] is True
    assert answered(billsec="60", **inbound).map(fmt).extra["missed_call"] is False
    assert unanswered(call_direction="outbound").map(fmt).extra["missed_call"] is False
    assert "missed_call" not in unanswered(originator="a-1", **inbound).map(fmt).extra
    # FusionPBX's own verdict wins
    assert unanswered(missed_call="false", **inbound).map(fmt).extra["missed_call"] is False


def test_other_leg_precedence(fmt: str) -> None:
    doc = answered(bridge_uuid="bridge", signal_bond="bond", last_bridge_to="last")
    doc.originatee_uuid = "originatee"
    assert doc.map(fmt).other_leg_id == "bridge"
    del doc.variables["bridge_uuid"]
    assert doc.map(fmt).other_leg_id == "bond"
    del doc.variables["signal_bond"]
    assert doc.map(fmt).other_leg_id == "last"
    del doc.variables["last_bridge_to"]
    assert doc.map(fmt).other_leg_id == "originatee"

    b_leg = answered(originating_leg_uuid="originating", originator="orig-var", bridge_uuid="br")
    b_leg.originator_uuid = "profile"
    cdr = b_leg.map(fmt)
    assert cdr.leg is Leg.B
    assert cdr.other_leg_id == "profile"
    b_leg.originator_uuid = None
    assert b_leg.map(fmt).other_leg_id == "originating"
    del b_leg.variables["originating_leg_uuid"]
    assert b_leg.map(fmt).other_leg_id == "orig-var"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {
                "sip_gateway_name": "gw-var",
                "last_app": "bridge",
                "last_arg": "sofia/gateway/gw-arg/1",
            },
            "gw-var",
        ),
        (
            {
                "last_app": "bridge",
                "last_arg": "[leg_timeout=20]sofia/gateway/gw-arg/1",
                "sofia_profile_name": "internal",
            },
            "gw-arg",
        ),
        (
            {
                "current_application": "bridge",
                "current_application_data": "sofia/gateway/gw-cur/1",
            },
            "gw-cur",
        ),
        ({"channel_name": "sofia/gateway/gw-chan/5511", "originator": "a"}, "gw-chan"),
        ({"sofia_profile_name": "external", "channel_name": "sofia/internal/1@x"}, "external"),
        ({"sip_profile_name": "sipprof"}, "sipprof"),
        ({"channel_name": "sofia/internal/1001%40pbx"}, "internal"),
        ({}, None),
    ],
)
def test_carrier_precedence(fmt: str, variables: dict[str, str], expected: str | None) -> None:
    assert answered(**variables).map(fmt).carrier == expected


@pytest.mark.parametrize(
    ("variables", "apps", "is_answered", "expected"),
    [
        (
            {
                "record_path": "/rec/acme/archive/2024/Jan/02/",
                "record_name": "u1.wav",
                "cc_record_filename": "/cc/u1.wav",
            },
            [("record_session", "/rs/u1.wav")],
            True,
            "/rec/acme/archive/2024/Jan/02/u1.wav",
        ),
        (
            # record_samples: FreeSWITCH closed a session recording
            {
                "record_name": "relative.wav",
                "record_samples": "480000",
                "cc_record_filename": "/cc/u1.wav",
            },
            [("record_session", "/rs/first.wav"), ("record_session", "/rs/last.wav +600")],
            True,
            "/rs/last.wav",
        ),
        # record_session ran but never recorded anything (no record_samples)
        ({}, [("record_session", "/rs/never.wav")], True, None),
        (
            {"cc_record_filename": "/cc/u1.wav", "sofia_record_file": "/s/u1.wav"},
            [],
            True,
            "/cc/u1.wav",
        ),
        ({"sofia_record_file": "/s/u1.wav"}, [], True, "/s/u1.wav"),
        (
            {"api_on_answer": "uuid_record ${uuid} start /var/rec/u1.mp3 3600"},
            [],
            True,
            "/var/rec/u1.mp3",
        ),
        # api_on_answer never ran: the call was not answered
        ({"api_on_answer": "uuid_record ${uuid} start /var/rec/u1.mp3"}, [], False, None),
        ({}, [], True, None),
    ],
)
def test_recording_path_precedence(
    fmt: str,
    variables: dict[str, str],
    apps: list[tuple[str, str]],
    is_answered: bool,
    expected: str | None,
) -> None:
    doc = answered(**variables) if is_answered else unanswered(**variables)
    doc.apps = apps
    assert doc.map(fmt).recording_path == expected


def test_tenant_account_caller_callee_and_codec_fallbacks(fmt: str) -> None:
    doc = answered(
        domain_name="acme.example.com",
        dialed_domain="dialed.example.com",
        sip_req_host="10.0.0.1",
        accountcode="acct-7",
        sip_auth_username="1001",
        caller_id_number="cid-var",
        effective_caller_id_number="eff",
        sip_req_user="req",
        sip_to_user="to",
        write_codec="G722",
    )
    doc.profile |= {"caller_id_number": "prof", "destination_number": "dest"}
    cdr = doc.map(fmt)
    assert (cdr.tenant, cdr.account, cdr.caller_number, cdr.callee_number, cdr.codec) == (
        "acme.example.com",
        "acct-7",
        "prof",
        "dest",
        "G722",
    )
    del doc.variables["domain_name"], doc.variables["accountcode"]
    del doc.profile["caller_id_number"], doc.profile["destination_number"]
    cdr = doc.map(fmt)
    assert (cdr.tenant, cdr.account, cdr.caller_number, cdr.callee_number) == (
        "dialed.example.com",
        "1001",
        "cid-var",
        "req",
    )
    del doc.variables["dialed_domain"], doc.variables["caller_id_number"]
    del doc.variables["sip_req_user"]
    cdr = doc.map(fmt)
    assert (cdr.tenant, cdr.caller_number, cdr.callee_number) == ("10.0.0.1", "eff", "to")
    # on a leg the switch dialled, the SIP hosts name the far end, never the tenant
    doc.variables["direction"] = "outbound"
    assert doc.map(fmt).tenant is None


def test_origin_host_precedence(fmt: str) -> None:
    doc = answered(hostname="fs-host")
    doc.switchname = "fs-switch"
    assert doc.map(fmt, origin_host="10.1.1.1").origin_host == "fs-host"
    del doc.variables["hostname"]
    assert doc.map(fmt, origin_host="10.1.1.1").origin_host == "fs-switch"
    doc.switchname = None
    assert doc.map(fmt, origin_host="10.1.1.1").origin_host == "10.1.1.1"


def test_utf8_percent_encoded_values(fmt: str) -> None:
    doc = answered(effective_caller_id_name="Jo%C3%A3o%20%E2%82%AC")
    # the XML builder encodes again: decode exactly once, so pre-encode only for JSON
    if fmt == "xml":
        doc.variables["effective_caller_id_name"] = "João €"
    assert doc.map(fmt).caller_name == "João €"


@pytest.mark.parametrize("half", ["number", "name"])
def test_caller_id_precedence_number_and_name_separately(fmt: str, half: str) -> None:
    other = "name" if half == "number" else "number"
    doc = answered(
        **{
            f"caller_id_{half}": "var",
            f"origination_caller_id_{half}": "origination",
            f"effective_caller_id_{half}": "effective",
            f"effective_caller_id_{other}": "other-effective",
        }
    )
    doc.profile[f"caller_id_{half}"] = "profile"
    doc.profile[f"caller_id_{other}"] = "other-profile"
    expected = ["profile", "var", "origination", "effective", None]
    removals = [
        lambda: doc.profile.pop(f"caller_id_{half}"),
        lambda: doc.variables.pop(f"caller_id_{half}"),
        lambda: doc.variables.pop(f"origination_caller_id_{half}"),
        lambda: doc.variables.pop(f"effective_caller_id_{half}"),
    ]
    for step, value in enumerate(expected):
        cdr = doc.map(fmt)
        assert getattr(cdr, f"caller_{half}") == value
        # the other half keeps its own source, whatever this half falls back to
        assert getattr(cdr, f"caller_{other}") == "other-profile"
        if step < len(removals):
            removals[step]()


@pytest.mark.parametrize(
    ("variables", "context", "expected"),
    [
        ({"domain_name": "d.example", "dialed_domain": "dialed.example"}, None, "d.example"),
        (
            {"dialed_domain": "dialed.example", "sip_invite_domain": "inv.example"},
            None,
            "dialed.example",
        ),
        ({"sip_invite_domain": "inv.example", "domain_uuid": "0f0e"}, None, "inv.example"),
        ({"domain_uuid": "0f0e", "sip_req_host": "10.0.0.1"}, None, "0f0e"),
        ({"sip_req_host": "10.0.0.1", "sip_to_host": "10.0.0.2"}, None, "10.0.0.1"),
        ({"sip_to_host": "10.0.0.2", "presence_id": "1001@p.example"}, None, "10.0.0.2"),
        ({"presence_id": "1001@p.example"}, "ctx.example", "p.example"),
        ({"presence_id": "no-domain"}, "ctx.example", "ctx.example"),
        # FreeSWITCH's shared contexts, and a context that is no domain name, name no tenant
        ({}, "public", None),
        ({}, "default", None),
        ({}, "openbts", None),
        # a leg the switch dialled: the SIP hosts name the far end, presence_id still counts
        (
            {"direction": "outbound", "sip_to_host": "phone.lan", "presence_id": "1002@p.example"},
            None,
            "p.example",
        ),
    ],
)
def test_tenant_fallbacks(
    fmt: str, variables: dict[str, str], context: str | None, expected: str | None
) -> None:
    doc = answered(**variables)
    doc.profile = {} if context is None else {"context": context}
    assert doc.map(fmt).tenant == expected


def test_billsec_above_zero_is_answered_whatever_the_cause() -> None:
    for cause in ("USER_BUSY", "NO_ANSWER", "ORIGINATOR_CANCEL", "RECOVERY_ON_TIMER_EXPIRE"):
        # the real answered B-leg (billsec 24) with another cause
        assert map_xml(edited(INCOMING_B, hangup_cause=cause)).disposition is (Disposition.ANSWERED)


def test_ring_group_member_that_lost_the_race_is_no_answer_not_missed() -> None:
    # the real B-leg, never answered, cancelled because another member took the call
    root = edited(
        INCOMING_B,
        drop=("last_bridge_proto_specific_hangup_cause",),
        answer_uepoch="0",
        billsec="0",
        hangup_cause="LOSE_RACE",
        sip_term_status="487",
    )
    times = root.find("callflow/times/answered_time")
    assert times is not None
    times.text = "0"
    cdr = map_xml(root)
    assert cdr.answer_time is None
    assert cdr.sip_code == 487
    assert cdr.disposition is Disposition.NO_ANSWER
    assert "missed_call" not in cdr.extra  # a B-leg is an attempt, not a call


def test_recording_from_the_last_app_when_there_is_no_app_log() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    del doc["app_log"]
    doc["variables"] |= {
        "last_app": "record_session",
        "last_arg": "/var/rec/3da8bf84.wav +3600",
        "record_samples": "544000",
    }
    assert map_json(doc).recording_path == "/var/rec/3da8bf84.wav"


def test_recording_from_uuid_record_in_the_bridge_dial_string() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    doc["variables"]["last_arg"] = (
        "{api_on_answer='uuid_record ${uuid} start /var/rec/3da8bf84.mp3'}user/1002@10.10.10.204"
    )
    assert map_json(doc).recording_path == "/var/rec/3da8bf84.mp3"
    # the 2009 document never answered: api_on_answer never ran
    root = edited(TINY_2009, api_on_answer="uuid_record ${uuid} start /var/rec/x.wav")
    assert map_xml(root).recording_path is None
