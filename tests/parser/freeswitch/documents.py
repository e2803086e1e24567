"""The documents the FreeSWITCH mapping tests read: the real fixtures, the hand-made variants
(``data/``, each file's header says what was changed), and ``Doc``, a synthetic leg rendered as
mod_xml_cdr or mod_json_cdr."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lxml import etree

from cdr_parser.freeswitch import map_json, map_xml, parse_json, parse_xml
from cdrmodel import CDR

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "freeswitch"
TINY_2009 = FIXTURES / "freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
ERROR_CALL = FIXTURES / "freeswitch_xml_cdr_ccm_client_error-call-cdr.xml"
INCOMING_B = FIXTURES / "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
CGRATES_JSON = FIXTURES / "freeswitch_json_cdr_cgrates_answered.json"
FUSIONPBX_CONF = FIXTURES / "fusionpbx_xml_cdr.conf.xml"
DATA = Path(__file__).resolve().parent / "data"
TO_VOICEMAIL = DATA / "error-call-transferred-to-voicemail.cdr.xml"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def all_text(root: etree._Element) -> str:
    return "".join(str(text) for text in root.itertext())


def map_file(path: Path) -> CDR:
    return map_xml(parse_xml(path.read_bytes()))


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


def edited(
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


def edited_map(path: Path, **changes: str) -> CDR:
    return map_xml(edited(path, **changes))
