"""The real documents (``tests/fixtures/freeswitch/``) map to the CDRs an operator expects, and
so do they with one thing changed. Expected values were written by reading the documents; each
comment names the element it came from."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from cdr_parser.freeswitch import (
    json_call_id,
    map_json,
    map_xml,
    parse_json,
    parse_xml,
    xml_call_id,
)
from cdrmodel import Direction, Disposition, Leg
from cdrmodel.errors import UnmappableRecord
from tests.parser.freeswitch.documents import (
    CGRATES_JSON,
    ERROR_CALL,
    FUSIONPBX_CONF,
    INCOMING_B,
    TINY_2009,
    TO_VOICEMAIL,
    edited,
    edited_map,
    map_file,
    utc,
)


def test_2009_tinycdr_cancelled_a_leg_through_a_gateway() -> None:
    cdr = map_file(TINY_2009)
    # no <variables><uuid> in 2009: callflow/caller_profile/uuid
    assert cdr.call_id == "91353230-461f-11de-aa7f-b10b4edc0c92"
    assert cdr.source == "freeswitch"
    # no <originator> anywhere, only <originatee>
    assert cdr.leg is Leg.A
    # variables/bridge_uuid (= signal_bond = originatee_caller_profile/uuid)
    assert cdr.other_leg_id == "913d2a1c-461f-11de-aa7f-b10b4edc0c92"
    # no direction variable: context "default" (a local user) bridged to sofia/gateway/carlos/2622
    assert cdr.direction is Direction.OUTBOUND
    # caller_profile/caller_id_number "1000", caller_id_name "Jayson Vaughn" (beats the
    # effective_caller_id_name "Extension%201000")
    assert cdr.caller_number == "1000"
    assert cdr.caller_name == "Jayson Vaughn"
    # caller_profile/destination_number
    assert cdr.callee_number == "2622"
    # variables/accountcode
    assert cdr.account == "1000"
    # variables/domain_name
    assert cdr.tenant == "192.168.6.32"
    # variables/last_arg "sofia/gateway/carlos/2622"
    assert cdr.carrier == "carlos"
    # start_uepoch 1242921226180441 (start_stamp 10:53:46 is the switch's local time, UTC-5)
    assert cdr.start_time == utc(2009, 5, 21, 15, 53, 46, 180441)
    # answer_uepoch 0: never answered
    assert cdr.answer_time is None
    # end_uepoch 1242921227691068
    assert cdr.end_time == utc(2009, 5, 21, 15, 53, 47, 691068)
    # variables/duration, variables/billsec
    assert cdr.duration_s == 1
    assert cdr.billsec_s == 0
    # variables/hangup_cause
    assert cdr.hangup_cause == "ORIGINATOR_CANCEL"
    # variables/sip_term_status
    assert cdr.sip_code == 487
    # billsec 0 and ORIGINATOR_CANCEL
    assert cdr.disposition is Disposition.CANCELLED
    # progress_media_uepoch 1242921226281214 - start_uepoch 1242921226180441 = 100773 us
    # (earlier than progress_uepoch; the document's progress_mediamsec "400" is wrong)
    assert cdr.pdd_ms == 101
    # variables/read_codec
    assert cdr.codec == "PCMA"
    # nothing recorded
    assert cdr.recording_path is None
    # no hostname variable, no switchname attribute
    assert cdr.origin_host is None


def test_2009_tinycdr_percent_encoded_values_are_decoded() -> None:
    cdr = map_file(TINY_2009)
    # <sip_call_id>uezqmckgyeznkvl%40onedrop.nationwide-recovery.com</sip_call_id>
    assert cdr.extra["sip_call_id"] == "uezqmckgyeznkvl@onedrop.nationwide-recovery.com"
    # <endpoint_disposition>EARLY%20MEDIA</endpoint_disposition>
    assert cdr.extra["endpoint_disposition"] == "EARLY MEDIA"
    assert cdr.extra["last_arg"] == "sofia/gateway/carlos/2622"


def test_2009_caller_name_falls_back_to_the_decoded_effective_caller_id() -> None:
    text = TINY_2009.read_text()
    text = text.replace("<caller_id_name>Jayson Vaughn</caller_id_name>", "<caller_id_name/>")
    cdr = map_xml(parse_xml(text))
    # <effective_caller_id_name>Extension%201000</effective_caller_id_name>
    assert cdr.caller_name == "Extension 1000"


def test_2009_document_without_uuid_variable_takes_the_caller_profile_uuid() -> None:
    root = parse_xml(TINY_2009.read_bytes())
    variables = root.find("variables")
    assert variables is not None
    assert variables.find("uuid") is None
    assert xml_call_id(root) == "91353230-461f-11de-aa7f-b10b4edc0c92"
    assert map_xml(root, call_id_hint="ffffffff-0000-0000-0000-000000000000").call_id == (
        "91353230-461f-11de-aa7f-b10b4edc0c92"
    )


def test_error_call_answered_for_zero_seconds_is_failed() -> None:
    cdr = map_file(ERROR_CALL)
    # variables/uuid
    assert cdr.call_id == "0006a2fa-b032-43e8-9d70-708f363fe3b7"
    assert cdr.leg is Leg.A
    # no bridge_uuid, signal_bond, last_bridge_to or originatee: never bridged
    assert cdr.other_leg_id is None
    # direction "inbound" is the channel's; context "default" (a local subscriber) and no
    # bridge at all: nothing says where the call was going
    assert cdr.direction is None
    assert cdr.extra["channel_direction"] == "inbound"
    assert "missed_call" not in cdr.extra
    # caller_profile/caller_id_number and caller_id_name
    assert cdr.caller_number == "IMSI510555550000087"
    assert cdr.caller_name == "IMSI510555550000087"
    # caller_profile/destination_number
    assert cdr.callee_number == "6281248174025"
    # no accountcode, no sip_auth_username (authenticated by ACL, sip_acl_authed_by)
    assert cdr.account is None
    # no domain_name/dialed_domain/domain_uuid; an inbound channel: variables/sip_req_host
    assert cdr.tenant == "127.0.0.1"
    # no gateway anywhere: variables/sofia_profile_name
    assert cdr.carrier == "openbts"
    # start_uepoch, answer_uepoch, end_uepoch
    assert cdr.start_time == utc(2015, 2, 12, 12, 3, 5, 698089)
    assert cdr.answer_time == utc(2015, 2, 12, 12, 3, 6, 38092)
    assert cdr.end_time == utc(2015, 2, 12, 12, 3, 6, 38092)
    # variables/duration 1, billsec 0
    assert cdr.duration_s == 1
    assert cdr.billsec_s == 0
    assert cdr.hangup_cause == "NORMAL_CLEARING"
    # no sip_term_status, no proto_specific_hangup_cause, no sip_invite_failure_status
    assert cdr.sip_code is None
    # billsec 0 but answered (answer_uepoch set): not "no answer"; NORMAL_CLEARING is not a
    # busy/cancel/no-answer cause → failed (the dialplan rejected the call)
    assert cdr.disposition is Disposition.FAILED
    # progress_uepoch 0 and progress_media_uepoch 0: no ringing, no early media
    assert cdr.pdd_ms is None
    # variables/read_codec
    assert cdr.codec == "GSM"
    assert cdr.recording_path is None
    # <cdr core-uuid=...> has no switchname
    assert cdr.origin_host is None
    assert cdr.extra["core_uuid"] == "370fd8a7-7e11-4af5-9b80-c5ea96aff708"
    # <sip_user_agent>OpenBTS%204.0TRUNK%20Build%20Date%20Aug%2019%202014</sip_user_agent>
    assert cdr.extra["sip_user_agent"] == "OpenBTS 4.0TRUNK Build Date Aug 19 2014"


def test_incoming_b_leg_with_originator() -> None:
    cdr = map_file(INCOMING_B)
    # variables/uuid
    assert cdr.call_id == "26444af2-5f94-40b5-9578-824ce7c75ab8"
    # caller_profile/<originator> and variables/originator
    assert cdr.leg is Leg.B
    # originator_caller_profile/uuid (= originating_leg_uuid = bridge_uuid)
    assert cdr.other_leg_id == "7c1088a5-ce12-4417-9b57-9d649ae984ec"
    # B-leg whose caller profile context is "public" (the A-leg came from outside) and which
    # rings sofia/openbts/IMSI… (no gateway): inbound
    assert cdr.direction is Direction.INBOUND
    assert cdr.extra["channel_direction"] == "outbound"
    # a B-leg carries no missed-call flag
    assert "missed_call" not in cdr.extra
    # caller_profile/caller_id_number, caller_id_name
    assert cdr.caller_number == "18657194461"
    assert cdr.caller_name == "18657194461"
    # caller_profile/destination_number
    assert cdr.callee_number == "IMSI901550000000072"
    # no accountcode, no sip_auth_username
    assert cdr.account is None
    # no domain variables, and on a leg the switch dialled sip_to_host is the phone, not a
    # tenant
    assert cdr.tenant is None
    # variables/sofia_profile_name
    assert cdr.carrier == "openbts"
    # start_uepoch, answer_uepoch, end_uepoch
    assert cdr.start_time == utc(2015, 3, 9, 5, 58, 7, 314987)
    assert cdr.answer_time == utc(2015, 3, 9, 5, 58, 12, 654914)
    assert cdr.end_time == utc(2015, 3, 9, 5, 58, 36, 895158)
    # variables/duration, variables/billsec
    assert cdr.duration_s == 29
    assert cdr.billsec_s == 24
    assert cdr.hangup_cause == "NORMAL_CLEARING"
    # no sip_term_status; last_bridge_proto_specific_hangup_cause "sip%3A200"
    assert cdr.sip_code == 200
    assert cdr.disposition is Disposition.ANSWERED
    # progress_uepoch 1425880692035044 - start_uepoch 1425880687314987 = 4720057 us
    assert cdr.pdd_ms == 4720
    assert cdr.codec == "GSM"
    assert cdr.recording_path is None
    # <cdr switchname="vagrant-ubuntu-trusty-32">
    assert cdr.origin_host == "vagrant-ubuntu-trusty-32"
    assert cdr.extra["context"] == "public"


def test_cgrates_json_answered_a_leg() -> None:
    doc = parse_json(CGRATES_JSON.read_bytes())
    assert json_call_id(doc) == "3da8bf84-c133-4959-9e24-e72875cb33a1"
    cdr = map_json(doc)
    # variables.uuid
    assert cdr.call_id == "3da8bf84-c133-4959-9e24-e72875cb33a1"
    # no originator anywhere, only originatee
    assert cdr.leg is Leg.A
    # variables.bridge_uuid
    assert cdr.other_leg_id == "f52c26f1-b018-4963-bf6d-a3111d1a0320"
    # context "default" (local user) bridged to user/1002@10.10.10.204 (a local user)
    assert cdr.direction is Direction.INTERNAL
    assert cdr.extra["missed_call"] is False
    # callflow[0] (profile_index 2, the latest) caller_profile
    assert cdr.caller_number == "1001"
    assert cdr.caller_name == "1001"
    assert cdr.callee_number == "1002"
    # no accountcode, no sip_auth_username
    assert cdr.account is None
    # no domain_name: variables.dialed_domain
    assert cdr.tenant == "10.10.10.204"
    # no gateway: variables.sofia_profile_name
    assert cdr.carrier == "internal"
    # start_uepoch 1515666344534355 (start_stamp 11:25:44 is local time, UTC+1)
    assert cdr.start_time == utc(2018, 1, 11, 10, 25, 44, 534355)
    # answer_uepoch, end_uepoch
    assert cdr.answer_time == utc(2018, 1, 11, 10, 25, 47, 954373)
    assert cdr.end_time == utc(2018, 1, 11, 10, 26, 55, 494269)
    # duration "71", billsec "68" (CGRateS expects Usage=68s)
    assert cdr.duration_s == 71
    assert cdr.billsec_s == 68
    assert cdr.hangup_cause == "NORMAL_CLEARING"
    # last_bridge_proto_specific_hangup_cause "sip:200"
    assert cdr.sip_code == 200
    assert cdr.disposition is Disposition.ANSWERED
    # progress_uepoch 1515666344594267 - start_uepoch 1515666344534355 = 59912 us
    assert cdr.pdd_ms == 60
    assert cdr.codec == "PCMU"
    assert cdr.recording_path is None
    # top-level "switchname"
    assert cdr.origin_host == "FSDev1"
    assert cdr.extra["sip_call_id"] == "818e26f805701988c1a330175d7d2629@0:0:0:0:0:0:0:0"


def test_fusionpbx_config_file_is_not_a_cdr() -> None:
    with pytest.raises(UnmappableRecord, match="configuration"):
        parse_xml(FUSIONPBX_CONF.read_bytes())
    root = etree.fromstring(FUSIONPBX_CONF.read_bytes())
    with pytest.raises(UnmappableRecord):
        map_xml(root)


def test_destination_is_the_oldest_callflows_and_a_transfer_to_voicemail_is_missed() -> None:
    cdr = map_file(TO_VOICEMAIL)
    # callflow profile_index 1 (written last): what the caller dialled
    assert cdr.callee_number == "6281248174025"
    # callflow profile_index 2 (written first): where the dialplan sent the call
    assert cdr.extra["final_destination"] == "*996281248174025"
    # variables/call_direction
    assert cdr.direction is Direction.INBOUND
    # an inbound A-leg sent to FusionPBX's voicemail (*99<ext>): missed
    assert cdr.extra["missed_call"] is True
    # the rest is the original document's
    assert cdr.caller_number == "IMSI510555550000087"
    assert cdr.disposition is Disposition.FAILED


def test_caller_id_falls_back_through_origination_then_effective_on_a_real_document() -> None:
    root = edited(
        INCOMING_B,
        profile={"caller_id_number": None, "caller_id_name": None},
        origination_caller_id_number="5511999990000",
        effective_caller_id_number="1000",
        effective_caller_id_name="Reception",
    )
    cdr = map_xml(root)
    # number: no profile value, no caller_id_number variable → origination_caller_id_number
    assert cdr.caller_number == "5511999990000"
    # name: no profile, caller_id_name or origination_caller_id_name → effective_caller_id_name
    assert cdr.caller_name == "Reception"


def test_tenant_from_presence_id_on_a_real_b_leg() -> None:
    # the real B-leg has no domain variables and its sip_to_host is the phone
    root = edited(INCOMING_B, presence_id="IMSI901550000000072@cell.example")
    assert map_xml(root).tenant == "cell.example"


def test_missed_call_on_real_documents() -> None:
    # the 2009 A-leg, cancelled by the caller while ringing, as an inbound call
    assert edited_map(TINY_2009, call_direction="inbound").extra["missed_call"] is True
    # as FreeSWITCH derived it: a local user calling out through a gateway is not missed
    assert map_file(TINY_2009).extra["missed_call"] is False
    # FusionPBX's own variable wins on any leg
    assert edited_map(INCOMING_B, missed_call="true").extra["missed_call"] is True
    # voicemail answered it (voicemail_answer_stamp): still missed
    cgrates = json.loads(CGRATES_JSON.read_text())
    cgrates["variables"] |= {
        "call_direction": "inbound",
        "voicemail_answer_stamp": "2018-01-11 11:25:47",
    }
    assert map_json(cgrates).extra["missed_call"] is True
    del cgrates["variables"]["voicemail_answer_stamp"]
    assert map_json(cgrates).extra["missed_call"] is False  # answered by 1002
