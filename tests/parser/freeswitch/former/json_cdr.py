"""mod_json_cdr documents: parsing, the leg's uuid, and the :class:`Source` over a parsed dict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from cdrmodel.errors import NotWellFormed, UnmappableRecord
from cdrmodel.record import CDR
from tests.parser.freeswitch.former.build import build
from tests.parser.freeswitch.former.source import SCANNED_APPS
from tests.parser.freeswitch.former.values import clean, decoded, var

__all__ = ["JsonSource", "json_call_id", "map_json", "parse_json"]


def parse_json(payload: bytes | str) -> dict[str, Any]:
    """Parse a mod_json_cdr document; raises ``NotWellFormed`` / ``UnmappableRecord``."""
    try:
        doc = json.loads(payload)
    except RecursionError as exc:
        raise NotWellFormed("The CDR is not usable JSON: it is nested too deeply.") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise NotWellFormed(f"The CDR is not well-formed JSON: {exc}.") from exc
    if not isinstance(doc, dict):
        raise UnmappableRecord(
            f"The JSON document is a {type(doc).__name__}, not an object: it is not a "
            "mod_json_cdr CDR."
        )
    return doc


def json_call_id(doc: Mapping[str, Any]) -> str | None:
    """The leg's uuid from a parsed mod_json_cdr document, or ``None``; cheap."""
    variables = doc.get("variables")
    if isinstance(variables, dict):
        value = decoded(variables.get("uuid"))
        if value:
            return value
    flows = _json_callflows(doc)
    if flows:
        profile = flows[0].get("caller_profile")
        if isinstance(profile, dict):
            return clean(profile.get("uuid"))
    return None


def map_json(
    doc: Mapping[str, Any],
    *,
    received_at: datetime | None = None,
    call_id_hint: str | None = None,
    a_leg_hint: bool | None = None,
    origin_host: str | None = None,
    stamp_tz: tzinfo | None = None,
) -> CDR:
    """Map a document from :func:`parse_json` to a CDR (same rules as :func:`map_xml`)."""
    if not isinstance(doc, Mapping):
        raise UnmappableRecord("The JSON document is not an object: it is not a mod_json_cdr CDR.")
    return build(
        JsonSource(doc),
        received_at=received_at,
        call_id_hint=call_id_hint,
        a_leg_hint=a_leg_hint,
        origin_host=origin_host,
        stamp_tz=stamp_tz,
    )


def _json_callflows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    # mod_json_cdr writes one callflow as an object in old versions, an array in newer ones.
    callflow = doc.get("callflow")
    if isinstance(callflow, dict):
        return [callflow]
    if isinstance(callflow, list):
        return [flow for flow in callflow if isinstance(flow, dict)]
    return []


def _json_profile_uuid(value: Any, kind: str) -> str | None:
    # {"originator": {"originator_caller_profiles": [{...}]}} (current) or a single
    # "originator_caller_profile" object (older writers).
    if not isinstance(value, dict):
        return None
    profiles = value.get(f"{kind}_caller_profiles")
    if profiles is None:
        profiles = value.get(f"{kind}_caller_profile")
    if isinstance(profiles, dict):
        profiles = [profiles]
    if isinstance(profiles, list):
        for profile in profiles:
            if isinstance(profile, dict):
                uuid = clean(profile.get("uuid"))
                if uuid:
                    return uuid
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class JsonSource:
    __slots__ = (
        "_doc",
        "_first",
        "_flows",
        "core_uuid",
        "has_originator",
        "profile",
        "switchname",
        "variables",
    )

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc
        variables = doc.get("variables")
        self.variables: Mapping[str, Any] = variables if isinstance(variables, dict) else {}
        self._flows = _json_callflows(doc)
        self._first: dict[str, Any] = self._flows[0] if self._flows else {}
        self.profile: Mapping[str, Any] = _dict(self._first.get("caller_profile"))
        self.has_originator = self.profile.get("originator") is not None
        self.switchname = clean(doc.get("switchname"))
        self.core_uuid = clean(doc.get("core-uuid"))

    def rare(self, name: str) -> str | None:
        return var(self.variables, name)

    def times(self) -> Mapping[str, Any]:
        return _dict(self._first.get("times"))

    def originator_uuid(self) -> str | None:
        return _json_profile_uuid(self.profile.get("originator"), "originator")

    def originatee_uuid(self) -> str | None:
        return _json_profile_uuid(self.profile.get("originatee"), "originatee")

    def entry(self, field: str) -> str | None:
        last = self._flows[-1] if self._flows else {}
        return clean(_dict(last.get("caller_profile")).get(field))

    def channel_direction(self) -> str | None:
        return clean(_dict(self._doc.get("channel_data")).get("direction"))

    def scan_apps(self) -> dict[str, str]:
        app_log = self._doc.get("app_log")
        applications = app_log.get("applications") if isinstance(app_log, dict) else app_log
        found: dict[str, str] = {}
        if isinstance(applications, list):
            for app in applications:  # the latest entry wins
                if isinstance(app, dict):
                    name = app.get("app_name")
                    data = app.get("app_data")
                    if name in SCANNED_APPS and isinstance(data, str):
                        found[name] = data
        return found
