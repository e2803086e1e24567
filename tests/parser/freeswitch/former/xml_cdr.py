"""mod_xml_cdr documents: parsing, the leg's uuid, and the :class:`Source` over an lxml tree.

The variables are collected in one C-level pass over ``<variables>`` into a dict of raw text (a
switch posts one document per leg, some of them megabytes); no XPath, no deep copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from lxml import etree

from cdrkit.xml import parse_xml as safe_parse_xml
from cdrmodel.errors import UnmappableRecord
from cdrmodel.record import CDR
from tests.parser.freeswitch.former.build import build
from tests.parser.freeswitch.former.source import (
    PROFILE_FIELDS,
    SCANNED_APPS,
    TIMES_FIELDS,
    VARIABLES,
)
from tests.parser.freeswitch.former.values import clean, decoded

__all__ = ["XmlSource", "map_xml", "parse_xml", "xml_call_id"]


def parse_xml(payload: bytes | str) -> etree._Element:
    """Parse a mod_xml_cdr document safely (``cdrkit.xml``); the root is a ``<cdr>`` element.

    Raises ``NotWellFormed`` for anything libxml2 refuses, ``UnsafeDocument`` for a DOCTYPE and
    ``UnmappableRecord`` for a well-formed document that is not a CDR.
    """
    root = safe_parse_xml(payload)
    if root.tag != "cdr":
        raise UnmappableRecord(
            f"The document's root element is <{root.tag}>, not <cdr>: it is not a FreeSWITCH CDR."
        )
    return root


def xml_call_id(root: etree._Element) -> str | None:
    """The leg's uuid from a parsed mod_xml_cdr document, or ``None``; cheap (no full mapping)."""
    for variables in root.iterchildren("variables"):
        for uuid in variables.iterchildren("uuid"):
            value = decoded(uuid.text)
            if value:
                return value
        break
    for callflow in root.iterchildren("callflow"):
        return _grandchild_text(callflow, "caller_profile", "uuid")
    return None


def map_xml(
    root: etree._Element,
    *,
    received_at: datetime | None = None,
    call_id_hint: str | None = None,
    a_leg_hint: bool | None = None,
    origin_host: str | None = None,
    stamp_tz: tzinfo | None = None,
) -> CDR:
    """Map a document from :func:`parse_xml` to a CDR.

    ``call_id_hint``/``a_leg_hint`` come from mod_xml_cdr's ``uuid=[a_]<uuid>`` query parameter.
    ``stamp_tz`` is the switch's time zone; only then are the zone-less ``*_stamp`` variables used
    as a last resort for times (see the mapping document).
    """
    if root.tag != "cdr":
        raise UnmappableRecord(
            f"The document's root element is <{root.tag}>, not <cdr>: it is not a FreeSWITCH CDR."
        )
    return build(
        XmlSource(root),
        received_at=received_at,
        call_id_hint=call_id_hint,
        a_leg_hint=a_leg_hint,
        origin_host=origin_host,
        stamp_tz=stamp_tz,
    )


class XmlSource:
    __slots__ = (
        "_app_log",
        "_channel_data",
        "_first_cf",
        "_last_cf",
        "_originatee",
        "_originator",
        "_times",
        "_variables_el",
        "core_uuid",
        "has_originator",
        "profile",
        "switchname",
        "variables",
    )

    def __init__(self, root: etree._Element) -> None:
        variables = channel_data = app_log = first_cf = last_cf = None
        # mod_xml_cdr writes a handful of top-level children; one pass finds them all.
        for child in root:
            tag = child.tag
            if tag == "variables":
                variables = child
            elif tag == "callflow":
                if first_cf is None:
                    first_cf = child
                last_cf = child
            elif tag == "app_log":
                app_log = child
            elif tag == "channel_data":
                channel_data = child
        self._variables_el = variables
        self._channel_data = channel_data
        self._app_log = app_log
        self._first_cf = first_cf
        self._last_cf = last_cf
        self.variables: Mapping[str, Any] = (
            {c.tag: c.text for c in variables.iterchildren(*VARIABLES)}
            if variables is not None
            else {}
        )
        self._times: Mapping[str, Any] | None = None
        profile, self._originator, self._originatee = _caller_profile(first_cf)
        self.profile: Mapping[str, Any] = profile
        self.has_originator = self._originator is not None
        self.switchname = clean(root.get("switchname"))
        self.core_uuid = clean(root.get("core-uuid"))

    def rare(self, name: str) -> str | None:
        if self._variables_el is not None:
            for element in self._variables_el.iterchildren(name):
                return decoded(element.text)
        return None

    def times(self) -> Mapping[str, Any]:
        if self._times is None:
            self._times = {}
            if self._first_cf is not None:
                for times in self._first_cf.iterchildren("times"):
                    self._times = {c.tag: c.text for c in times.iterchildren(*TIMES_FIELDS)}
                    break
        return self._times

    def originator_uuid(self) -> str | None:
        if self._originator is None:
            return None
        return _grandchild_text(self._originator, "originator_caller_profile", "uuid")

    def originatee_uuid(self) -> str | None:
        if self._originatee is None:
            return None
        return _grandchild_text(self._originatee, "originatee_caller_profile", "uuid")

    def entry(self, field: str) -> str | None:
        if self._last_cf is not None and self._last_cf is not self._first_cf:
            return _grandchild_text(self._last_cf, "caller_profile", field)
        return clean(self.profile.get(field))

    def channel_direction(self) -> str | None:
        if self._channel_data is None:
            return None
        return _child_text(self._channel_data, "direction")

    def scan_apps(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self._app_log is not None:
            # One forward pass: a later entry overwrites an earlier one, so the latest wins.
            for app in self._app_log.iterchildren("application"):
                name = app.get("app_name")
                if name in SCANNED_APPS:
                    found[name] = app.get("app_data") or ""
        return found


def _child_text(element: etree._Element, child: str) -> str | None:
    for found in element.iterchildren(child):
        return clean(found.text)
    return None


def _grandchild_text(element: etree._Element, child: str, grandchild: str) -> str | None:
    for found in element.iterchildren(child):
        for leaf in found.iterchildren(grandchild):
            return clean(leaf.text)
        return None
    return None


def _caller_profile(
    callflow: etree._Element | None,
) -> tuple[dict[str, str | None], etree._Element | None, etree._Element | None]:
    """The callflow's caller-profile fields, and its <originator> and <originatee> elements."""
    profile: dict[str, str | None] = {}
    originator = originatee = None
    if callflow is not None:
        # iterchildren(tag) filters in C; ElementPath's find() costs a microsecond a call.
        for caller_profile in callflow.iterchildren("caller_profile"):
            for child in caller_profile.iterchildren(*PROFILE_FIELDS):
                tag = child.tag
                if tag == "originator":
                    originator = child
                elif tag == "originatee":
                    originatee = child
                else:
                    profile[tag] = child.text
            break
    return profile, originator, originatee
