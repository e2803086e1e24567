"""FreeSWITCH mod_xml_cdr / mod_json_cdr documents map to the CDRs an operator expects.

Expected values were written by reading the documents; each comment names the element it came
from. The rules themselves are in docs/freeswitch-mapping.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
from cdrkit.xml import SAFE_PARSER as SAFE_XML_PARSER
from cdrmodel import CDR, Direction, Disposition, Leg
from cdrmodel.errors import InvalidInput, NotWellFormed, UnmappableRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch"
TINY_2009 = FIXTURES / "freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
ERROR_CALL = FIXTURES / "freeswitch_xml_cdr_ccm_client_error-call-cdr.xml"
INCOMING_B = FIXTURES / "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
CGRATES_JSON = FIXTURES / "freeswitch_json_cdr_cgrates_answered.json"
FUSIONPBX_CONF = FIXTURES / "fusionpbx_xml_cdr.conf.xml"
# Hand-made from the real documents above; each file's header says what was changed.
DATA = Path(__file__).resolve().parent / "data"
TO_VOICEMAIL = DATA / "error-call-transferred-to-voicemail.cdr.xml"


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def _all_text(root: etree._Element) -> str:
    return "".join(str(text) for text in root.itertext())


def _xml(path: Path) -> CDR:
    return map_xml(parse_xml(path.read_bytes()))


# --------------------------------------------------------------------------------------------
# The real documents


def test_2009_tinycdr_cancelled_a_leg_through_a_gateway() -> None:
    cdr = _xml(TINY_2009)
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
    assert cdr.start_time == _utc(2009, 5, 21, 15, 53, 46, 180441)
    # answer_uepoch 0: never answered
    assert cdr.answer_time is None
    # end_uepoch 1242921227691068
    assert cdr.end_time == _utc(2009, 5, 21, 15, 53, 47, 691068)
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
    cdr = _xml(TINY_2009)
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
    cdr = _xml(ERROR_CALL)
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
    assert cdr.start_time == _utc(2015, 2, 12, 12, 3, 5, 698089)
    assert cdr.answer_time == _utc(2015, 2, 12, 12, 3, 6, 38092)
    assert cdr.end_time == _utc(2015, 2, 12, 12, 3, 6, 38092)
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
    cdr = _xml(INCOMING_B)
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
    assert cdr.start_time == _utc(2015, 3, 9, 5, 58, 7, 314987)
    assert cdr.answer_time == _utc(2015, 3, 9, 5, 58, 12, 654914)
    assert cdr.end_time == _utc(2015, 3, 9, 5, 58, 36, 895158)
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
    assert cdr.start_time == _utc(2018, 1, 11, 10, 25, 44, 534355)
    # answer_uepoch, end_uepoch
    assert cdr.answer_time == _utc(2018, 1, 11, 10, 25, 47, 954373)
    assert cdr.end_time == _utc(2018, 1, 11, 10, 26, 55, 494269)
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


def test_extra_is_a_small_selection_never_the_whole_variable_set() -> None:
    for cdr in (_xml(TINY_2009), _xml(ERROR_CALL), _xml(INCOMING_B)):
        assert 0 < len(cdr.extra) <= 16
        assert "switch_r_sdp" not in cdr.extra
        assert all(isinstance(v, str | bool) for v in cdr.extra.values())


def test_hints_and_received_at_are_used() -> None:
    received = _utc(2024, 1, 2, 3, 4, 5)
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


# --------------------------------------------------------------------------------------------
# Safety and malformed input


def test_xxe_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-PASSWORD")
    # A file that, if loaded as an external parameter entity, would declare an entity.
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOP-SECRET-FROM-DTD">')
    general = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        "<cdr><variables><uuid>&xxe;</uuid></variables></cdr>"
    )
    parameter = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY % p SYSTEM "{dtd.as_uri()}"> %p;]>'
        "<cdr><variables><uuid>&leak;</uuid></variables></cdr>"
    )
    # error-based exfiltration: the file's content would end up in a parser error message
    error_based = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY % file SYSTEM "{secret.as_uri()}">'
        "<!ENTITY % eval \"<!ENTITY &#x25; error SYSTEM 'file:///nonexistent/%file;'>\">"
        "%eval; %error;]><cdr/>"
    )
    for doc in (general, parameter, error_based):
        with pytest.raises(InvalidInput) as caught:
            parse_xml(doc.encode())
        assert "TOP-SECRET" not in caught.value.detail
    for doc in (general, parameter):
        # and the parser itself reads no file and expands nothing
        root = etree.fromstring(doc.encode(), SAFE_XML_PARSER)
        assert "TOP-SECRET" not in _all_text(root)
        assert b"TOP-SECRET" not in etree.tostring(root)
        internal: Any = root.getroottree().docinfo.internalDTD  # stubs lack DTD.entities()
        assert "leak" not in [entity.name for entity in internal.entities()]


def test_billion_laughs_is_not_expanded() -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    for reference in ("&lol9;", "&lol4;"):
        doc = (
            f'<?xml version="1.0"?><!DOCTYPE cdr [{entities}]>'
            f'<cdr switchname="{reference}"><variables><uuid>{reference}</uuid></variables></cdr>'
        ).encode()
        started = time.perf_counter()
        with pytest.raises(InvalidInput):
            parse_xml(doc)
        assert time.perf_counter() - started < 1.0
    # lol4 parses with the module's parser, and element text stays unexpanded
    root = etree.fromstring(doc, SAFE_XML_PARSER)
    assert "lollol" not in _all_text(root)


def test_truncated_xml_is_not_well_formed() -> None:
    data = INCOMING_B.read_bytes()
    with pytest.raises(NotWellFormed) as caught:
        parse_xml(data[: len(data) // 2])
    assert caught.value.detail.startswith("the XML document is not well-formed")


@pytest.mark.parametrize("payload", [b"", b"   ", b"cdr=%3Ccdr%3E", b"<cdr><variables></cdr>"])
def test_garbage_is_not_well_formed(payload: bytes) -> None:
    with pytest.raises(NotWellFormed):
        parse_xml(payload)


def test_str_payload_that_is_not_text_is_not_well_formed() -> None:
    with pytest.raises(NotWellFormed):
        parse_xml("<cdr>\udcff</cdr>")  # a lone surrogate cannot be UTF-8


def test_str_payload_with_an_encoding_declaration_parses() -> None:
    text = ERROR_CALL.read_text().replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="ISO-8859-1"?>'
    )
    text = text.replace("<caller_id_name>IMSI510555550000087", "<caller_id_name>José")
    assert map_xml(parse_xml(text)).caller_name == "José"


def test_document_without_a_start_time_is_unmappable() -> None:
    text = TINY_2009.read_text()
    for name in ("start_epoch", "start_uepoch", "created_time"):
        text = text.replace(f"<{name}>", f"<x_{name}>").replace(f"</{name}>", f"</x_{name}>")
    with pytest.raises(UnmappableRecord, match="no start time"):
        map_xml(parse_xml(text))


def test_document_without_any_call_id_is_unmappable() -> None:
    text = TINY_2009.read_text().replace("<uuid>91353230-461f-11de-aa7f-b10b4edc0c92</uuid>", "")
    root = parse_xml(text)
    assert xml_call_id(root) is None
    with pytest.raises(UnmappableRecord, match="call id"):
        map_xml(root)
    cdr = map_xml(root, call_id_hint="a_91353230-461f-11de-aa7f-b10b4edc0c92")
    assert cdr.call_id == "91353230-461f-11de-aa7f-b10b4edc0c92"
    assert cdr.leg is Leg.A


def test_a_value_the_model_refuses_is_unmappable() -> None:
    text = ERROR_CALL.read_text().replace(
        "<uuid>0006a2fa-b032-43e8-9d70-708f363fe3b7</uuid>", f"<uuid>{'x' * 200}</uuid>", 1
    )
    with pytest.raises(UnmappableRecord, match="call_id"):
        map_xml(parse_xml(text))


def test_five_megabyte_document_with_a_huge_variable_maps() -> None:
    huge = "A%20" * 1_250_000  # 5 MB of percent-encoded text in one variable
    text = INCOMING_B.read_text().replace(
        "<variables>", f"<variables>\n    <sip_multipart>{huge}</sip_multipart>", 1
    )
    assert len(text) > 5_000_000
    cdr = map_xml(parse_xml(text.encode()))
    assert cdr.call_id == "26444af2-5f94-40b5-9578-824ce7c75ab8"
    assert cdr.billsec_s == 24


def test_text_node_beyond_libxml2s_default_limit_parses() -> None:
    # libxml2 refuses text nodes over 10 MB unless huge_tree is on.
    big = "x" * 11_000_000
    text = INCOMING_B.read_text().replace(
        "<variables>", f"<variables>\n    <sip_multipart>{big}</sip_multipart>", 1
    )
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(text.encode(), etree.XMLParser(huge_tree=False))
    assert map_xml(parse_xml(text.encode())).call_id == "26444af2-5f94-40b5-9578-824ce7c75ab8"


# --------------------------------------------------------------------------------------------
# JSON specifics


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


# --------------------------------------------------------------------------------------------
# The rules, each in both formats (a synthetic document rendered as mod_xml_cdr and as
# mod_json_cdr must map the same way)

START_US = 1_700_000_000_250_000  # 2023-11-14T22:13:20.25Z
ANSWER_US = START_US + 4_500_000
END_US = ANSWER_US + 60_000_000


@dataclass
class Doc:
    variables: dict[str, str] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)
    apps: list[tuple[str, str]] = field(default_factory=list)
    originator_uuid: str | None = None
    originatee_uuid: str | None = None
    switchname: str | None = None

    def xml(self) -> bytes:
        out = ["<?xml version='1.0'?>"]
        out.append(f'<cdr switchname="{self.switchname}">' if self.switchname else "<cdr>")
        out.append("<variables>")
        # mod_xml_cdr percent-encodes every variable value
        out += [f"<{k}>{quote(v, safe='/,')}</{k}>" for k, v in self.variables.items()]
        out.append("</variables>")
        if self.apps:
            out.append("<app_log>")
            out += [
                f'<application app_name="{n}" app_data="{d}"></application>' for n, d in self.apps
            ]
            out.append("</app_log>")
        out.append("<callflow><caller_profile>")
        out += [f"<{k}>{v}</{k}>" for k, v in self.profile.items()]
        if self.originator_uuid:
            out.append(
                "<originator><originator_caller_profile>"
                f"<uuid>{self.originator_uuid}</uuid>"
                "</originator_caller_profile></originator>"
            )
        if self.originatee_uuid:
            out.append(
                "<originatee><originatee_caller_profile>"
                f"<uuid>{self.originatee_uuid}</uuid>"
                "</originatee_caller_profile></originatee>"
            )
        out.append("</caller_profile><times>")
        out += [f"<{k}>{v}</{k}>" for k, v in self.times.items()]
        out.append("</times></callflow></cdr>")
        return "\n".join(out).encode()

    def json(self) -> dict[str, Any]:
        profile: dict[str, Any] = dict(self.profile)
        if self.originator_uuid:
            profile["originator"] = {"originator_caller_profiles": [{"uuid": self.originator_uuid}]}
        if self.originatee_uuid:
            profile["originatee"] = {"originatee_caller_profiles": [{"uuid": self.originatee_uuid}]}
        doc: dict[str, Any] = {
            "variables": dict(self.variables),
            "callflow": [{"caller_profile": profile, "times": dict(self.times)}],
        }
        if self.apps:
            doc["app_log"] = {
                "applications": [{"app_name": n, "app_data": d} for n, d in self.apps]
            }
        if self.switchname:
            doc["switchname"] = self.switchname
        return doc

    def map(self, fmt: str, **kwargs: Any) -> CDR:
        if fmt == "xml":
            return map_xml(parse_xml(self.xml()), **kwargs)
        return map_json(parse_json(json.dumps(self.json())), **kwargs)


def answered(**variables: str) -> Doc:
    base = {
        "uuid": "11111111-1111-4111-8111-111111111111",
        "start_uepoch": str(START_US),
        "answer_uepoch": str(ANSWER_US),
        "end_uepoch": str(END_US),
        "hangup_cause": "NORMAL_CLEARING",
    }
    return Doc(variables=base | variables, profile={"context": "default"})


def unanswered(cause: str | None = "NORMAL_CLEARING", **variables: str) -> Doc:
    doc = answered(answer_uepoch="0", **variables)
    if cause is None:
        del doc.variables["hangup_cause"]
    else:
        doc.variables["hangup_cause"] = cause
    return doc


@pytest.fixture(params=["xml", "json"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_times_come_from_microsecond_epochs(fmt: str) -> None:
    cdr = answered().map(fmt)
    assert cdr.start_time == _utc(2023, 11, 14, 22, 13, 20, 250000)
    assert cdr.answer_time == _utc(2023, 11, 14, 22, 13, 24, 750000)
    assert cdr.end_time == _utc(2023, 11, 14, 22, 14, 24, 750000)
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
    assert cdr.start_time == _utc(2023, 11, 14, 22, 13, 20, 250000)
    # callflow answered_time present and 0: never answered, the epoch is not consulted
    assert cdr.answer_time is None
    assert cdr.end_time == _utc(2023, 11, 14, 22, 14, 24)
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
    assert cdr.start_time == _utc(2009, 5, 21, 15, 53, 46)
    assert cdr.end_time == _utc(2009, 5, 21, 15, 53, 47)
    assert cdr.duration_s == 1


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


# --------------------------------------------------------------------------------------------
# The real documents with one thing changed (item 6 of the ingest issue, and what makes a
# document unmappable)


def _edited(
    path: Path,
    drop: tuple[str, ...] = (),
    profile: dict[str, str | None] | None = None,
    **set_: str,
) -> etree._Element:
    """The fixture with variables dropped or set (percent-encoded, as mod_xml_cdr writes them)
    and fields of its (only) caller profile replaced or, with ``None``, removed."""
    root = parse_xml(path.read_bytes())
    variables = root.find("variables")
    assert variables is not None
    for name in drop:
        for element in variables.findall(name):
            variables.remove(element)
    for name, value in set_.items():
        element = variables.find(name)
        if element is None:
            element = etree.SubElement(variables, name)
        element.text = quote(value, safe="")
    caller_profile = root.find("callflow/caller_profile")
    assert caller_profile is not None
    for name, field_value in (profile or {}).items():
        for element in caller_profile.findall(name):
            caller_profile.remove(element)
        if field_value is not None:
            etree.SubElement(caller_profile, name).text = field_value
    return root


def test_destination_is_the_oldest_callflows_and_a_transfer_to_voicemail_is_missed() -> None:
    cdr = _xml(TO_VOICEMAIL)
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


def test_json_destination_is_the_oldest_callflows() -> None:
    # both profiles of the real document say 1002: nothing to report
    assert "final_destination" not in map_json(parse_json(CGRATES_JSON.read_bytes())).extra
    doc = json.loads(CGRATES_JSON.read_text())
    doc["callflow"][1]["caller_profile"]["destination_number"] = "5000"  # profile_index 1
    cdr = map_json(doc)
    assert cdr.callee_number == "5000"
    assert cdr.extra["final_destination"] == "1002"


def test_caller_id_falls_back_through_origination_then_effective_on_a_real_document() -> None:
    root = _edited(
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


def test_tenant_from_presence_id_on_a_real_b_leg() -> None:
    # the real B-leg has no domain variables and its sip_to_host is the phone
    root = _edited(INCOMING_B, presence_id="IMSI901550000000072@cell.example")
    assert map_xml(root).tenant == "cell.example"


def test_b_leg_detected_by_originating_leg_uuid_alone() -> None:
    # the real B-leg without its <originator> profile and originator variable
    root = _edited(INCOMING_B, drop=("originator",))
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
    root = _edited(ERROR_CALL, originating_leg_uuid="0006a2fa-b032-43e8-9d70-708f363fe3b7")
    cdr = map_xml(root)
    assert cdr.leg is Leg.A
    assert cdr.other_leg_id is None


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


def test_b_leg_without_a_uuid_of_its_own_is_unmappable() -> None:
    root = _edited(INCOMING_B, drop=("uuid",), profile={"uuid": None})
    # even with the query parameter: a B-leg full of its A-leg's uuids needs its own
    for hint in (None, "26444af2-5f94-40b5-9578-824ce7c75ab8"):
        with pytest.raises(UnmappableRecord, match=r"B-leg .* no uuid of its own"):
            map_xml(root, call_id_hint=hint)
    doc = json.loads(CGRATES_JSON.read_text())
    del doc["variables"]["uuid"], doc["callflow"][0]["caller_profile"]["uuid"]
    doc["variables"]["originator"] = "f52c26f1-b018-4963-bf6d-a3111d1a0320"
    with pytest.raises(UnmappableRecord, match="B-leg"):
        map_json(doc, call_id_hint="3da8bf84-c133-4959-9e24-e72875cb33a1")


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
        map_xml(_edited(path, **changes))


def test_callflow_times_that_go_backwards_are_unmappable() -> None:
    doc = json.loads(CGRATES_JSON.read_text())
    for name in ("start_uepoch", "answer_uepoch", "end_uepoch"):
        del doc["variables"][name]
    # callflow[0] times: hangup_time before created_time 1515666344534355
    doc["callflow"][0]["times"]["hangup_time"] = "1515666300000000"
    with pytest.raises(UnmappableRecord, match="times go backwards"):
        map_json(doc)


def test_billsec_above_zero_is_answered_whatever_the_cause() -> None:
    for cause in ("USER_BUSY", "NO_ANSWER", "ORIGINATOR_CANCEL", "RECOVERY_ON_TIMER_EXPIRE"):
        # the real answered B-leg (billsec 24) with another cause
        assert map_xml(_edited(INCOMING_B, hangup_cause=cause)).disposition is (
            Disposition.ANSWERED
        )


def test_ring_group_member_that_lost_the_race_is_no_answer_not_missed() -> None:
    # the real B-leg, never answered, cancelled because another member took the call
    root = _edited(
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


def test_missed_call_on_real_documents() -> None:
    # the 2009 A-leg, cancelled by the caller while ringing, as an inbound call
    assert _edited_map(TINY_2009, call_direction="inbound").extra["missed_call"] is True
    # as FreeSWITCH derived it: a local user calling out through a gateway is not missed
    assert _xml(TINY_2009).extra["missed_call"] is False
    # FusionPBX's own variable wins on any leg
    assert _edited_map(INCOMING_B, missed_call="true").extra["missed_call"] is True
    # voicemail answered it (voicemail_answer_stamp): still missed
    cgrates = json.loads(CGRATES_JSON.read_text())
    cgrates["variables"] |= {
        "call_direction": "inbound",
        "voicemail_answer_stamp": "2018-01-11 11:25:47",
    }
    assert map_json(cgrates).extra["missed_call"] is True
    del cgrates["variables"]["voicemail_answer_stamp"]
    assert map_json(cgrates).extra["missed_call"] is False  # answered by 1002


def _edited_map(path: Path, **changes: str) -> CDR:
    return map_xml(_edited(path, **changes))


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
    root = _edited(TINY_2009, api_on_answer="uuid_record ${uuid} start /var/rec/x.wav")
    assert map_xml(root).recording_path is None
