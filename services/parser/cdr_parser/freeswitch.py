"""FreeSWITCH mod_xml_cdr / mod_json_cdr documents → :class:`cdrmodel.CDR`.

Pure functions, no I/O. Every rule is listed in ``docs/freeswitch-mapping.md``; the comments here
say why a rule is the way it is.

Speed matters (a switch posts one document per leg, some of them megabytes): the variables are
collected in one C-level pass over ``<variables>`` into a dict of raw text, and only the values the
mapping reads are percent-decoded. No XPath, no deep copies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Protocol
from urllib.parse import unquote

from lxml import etree
from pydantic import ValidationError

from cdrkit.xml import parse_xml as safe_parse_xml
from cdrmodel.errors import NotWellFormed, UnmappableRecord
from cdrmodel.record import CDR, Direction, Disposition, Leg

__all__ = [
    "SOURCE",
    "json_call_id",
    "map_json",
    "map_xml",
    "parse_json",
    "parse_xml",
    "xml_call_id",
]

SOURCE: Final = "freeswitch"


# The variables the mapping (or ``extra``) reads on every CDR. ``iterchildren(*names)`` matches
# tags in C and builds Python proxies only for these instead of for all ~200 variables. Its cost
# grows with the number of names (lxml prepares each one on every call, ~0.2 us) and with how
# many of them the document holds (a proxy each), hence _RARE_VARIABLES.
_VARIABLES: Final[tuple[str, ...]] = (
    "uuid",
    "direction",
    "call_direction",
    "caller_id_number",
    "caller_id_name",
    "origination_caller_id_number",
    "origination_caller_id_name",
    "sip_invite_failure_status",
    "originator",
    "originating_leg_uuid",
    "bridge_uuid",
    "signal_bond",
    "last_bridge_to",
    "domain_name",
    "dialed_domain",
    "domain_uuid",
    "sip_req_host",
    "sip_to_host",
    "accountcode",
    "sip_auth_username",
    "sip_gateway_name",
    "last_app",
    "last_arg",
    "current_application",
    "current_application_data",
    "channel_name",
    "sofia_profile_name",
    "start_uepoch",
    "answer_uepoch",
    "end_uepoch",
    "progress_uepoch",
    "progress_media_uepoch",
    "duration",
    "billsec",
    "hangup_cause",
    "hangup_cause_q850",
    "sip_term_status",
    "last_bridge_proto_specific_hangup_cause",
    "proto_specific_hangup_cause",
    "missed_call",
    "record_path",
    "record_name",
    "record_samples",
    "cc_record_filename",
    "sofia_record_file",
    "api_on_answer",
    "read_codec",
    "hostname",
    "sip_call_id",
    "sip_user_agent",
    "read_rate",
    "sip_hangup_disposition",
    "endpoint_disposition",
)

# Present in most CDRs but read only as a fallback (e.g. *_epoch when *_uepoch is missing): they
# are looked up one by one on demand rather than paid for in the pass above. (A name absent
# from a document costs the pass no proxy, so fallbacks that are usually absent stay there.)
_RARE_VARIABLES: Final[tuple[str, ...]] = (
    "effective_caller_id_number",
    "effective_caller_id_name",
    "sip_req_user",
    "sip_to_user",
    "start_epoch",
    "start_stamp",
    "answer_epoch",
    "answer_stamp",
    "end_epoch",
    "end_stamp",
    "progressmsec",
    "progress_mediamsec",
    "write_codec",
    "sip_profile_name",
)

# Raw variables copied into ``extra`` (decoded) when present: enough to trace a call back to the
# switch and the SIP dialog, never the whole variable set.
_EXTRA_VARIABLES: Final[tuple[str, ...]] = (
    "sip_call_id",
    "sip_user_agent",
    "last_app",
    "last_arg",
    "read_rate",
    "hangup_cause_q850",
    "sip_hangup_disposition",
    "endpoint_disposition",
    "sip_gateway_name",
)

_CALL_DIRECTIONS: Final[dict[str, Direction]] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "local": Direction.INTERNAL,  # FusionPBX's word for extension-to-extension
    "internal": Direction.INTERNAL,
}

_BUSY_CAUSES: Final = frozenset({"USER_BUSY"})
_CANCEL_CAUSES: Final = frozenset({"ORIGINATOR_CANCEL"})
# LOSE_RACE / PICKED_OFF: a ring-group member's leg cancelled because another member (or a
# pickup) took the call: that member did not answer, and nothing failed.
_NO_ANSWER_CAUSES: Final = frozenset(
    {"NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "LOSE_RACE", "PICKED_OFF"}
)
_BUSY_SIP: Final = frozenset({486, 600})
_CANCEL_SIP: Final = 487
_NO_ANSWER_SIP: Final = frozenset({408, 480})

_GATEWAY_RE: Final = re.compile(r"sofia/gateway/([^/\s|,;{}\[\]]+)/")
_PROFILE_RE: Final = re.compile(r"^sofia/([^/]+)/")
# uuid_record <uuid> start <path> [<limit>]; inside a dial string the command is quoted and
# followed by "," "}" or "]", which end the path too.
_UUID_RECORD_RE: Final = re.compile(r"uuid_record\s+\S+\s+start\s+([^\s'\",}\]]+)")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S: Final = 1_000_000

# Caller-profile and <times> children the mapping reads (iterchildren matches them in C).
_PROFILE_FIELDS: Final[tuple[str, ...]] = (
    "uuid",
    "caller_id_number",
    "caller_id_name",
    "destination_number",
    "context",
    "originator",
    "originatee",
)
_TIMES_FIELDS: Final[tuple[str, ...]] = (
    "created_time",
    "answered_time",
    "hangup_time",
    "progress_time",
    "progress_media_time",
)
# app_log applications the mapping looks for: the bridge target and the recording file.
_SCANNED_APPS: Final = frozenset({"bridge", "record_session"})


class _Source(Protocol):
    """What the mapping needs from one document, whichever format it came in.

    Attributes are read for every CDR; methods are fallbacks, evaluated only when a rule
    reaches them (most CDRs never need most of them).
    """

    variables: Mapping[str, Any]  # raw (still percent-encoded) variable values
    profile: Mapping[str, Any]  # the first (latest) callflow's caller profile, flat fields
    has_originator: bool  # the caller profile has an <originator>
    switchname: str | None
    core_uuid: str | None

    def rare(self, name: str) -> str | None: ...  # decoded value of one of _RARE_VARIABLES
    def times(self) -> Mapping[str, Any]: ...  # the first callflow's <times>, microseconds
    def originator_uuid(self) -> str | None: ...
    def originatee_uuid(self) -> str | None: ...
    def entry(self, field: str) -> str | None: ...  # a field of the oldest callflow's profile
    def channel_direction(self) -> str | None: ...  # channel_data/direction
    def scan_apps(self) -> dict[str, str]: ...  # {app: data of its latest app_log entry}


class _XmlSource:
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
            {c.tag: c.text for c in variables.iterchildren(*_VARIABLES)}
            if variables is not None
            else {}
        )
        profile: dict[str, str | None] = {}
        self._originator = self._originatee = None
        self._times: Mapping[str, Any] | None = None
        if first_cf is not None:
            # iterchildren(tag) filters in C; ElementPath's find() costs a microsecond a call.
            for caller_profile in first_cf.iterchildren("caller_profile"):
                for child in caller_profile.iterchildren(*_PROFILE_FIELDS):
                    tag = child.tag
                    if tag == "originator":
                        self._originator = child
                    elif tag == "originatee":
                        self._originatee = child
                    else:
                        profile[tag] = child.text
                break
        self.profile: Mapping[str, Any] = profile
        self.has_originator = self._originator is not None
        self.switchname = _clean(root.get("switchname"))
        self.core_uuid = _clean(root.get("core-uuid"))

    def rare(self, name: str) -> str | None:
        if self._variables_el is not None:
            for element in self._variables_el.iterchildren(name):
                return _decoded(element.text)
        return None

    def times(self) -> Mapping[str, Any]:
        if self._times is None:
            self._times = {}
            if self._first_cf is not None:
                for times in self._first_cf.iterchildren("times"):
                    self._times = {c.tag: c.text for c in times.iterchildren(*_TIMES_FIELDS)}
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
        return _clean(self.profile.get(field))

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
                if name in _SCANNED_APPS:
                    found[name] = app.get("app_data") or ""
        return found


class _JsonSource:
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
        self.switchname = _clean(doc.get("switchname"))
        self.core_uuid = _clean(doc.get("core-uuid"))

    def rare(self, name: str) -> str | None:
        return _var(self.variables, name)

    def times(self) -> Mapping[str, Any]:
        return _dict(self._first.get("times"))

    def originator_uuid(self) -> str | None:
        return _json_profile_uuid(self.profile.get("originator"), "originator")

    def originatee_uuid(self) -> str | None:
        return _json_profile_uuid(self.profile.get("originatee"), "originatee")

    def entry(self, field: str) -> str | None:
        last = self._flows[-1] if self._flows else {}
        return _clean(_dict(last.get("caller_profile")).get(field))

    def channel_direction(self) -> str | None:
        return _clean(_dict(self._doc.get("channel_data")).get("direction"))

    def scan_apps(self) -> dict[str, str]:
        app_log = self._doc.get("app_log")
        applications = app_log.get("applications") if isinstance(app_log, dict) else app_log
        found: dict[str, str] = {}
        if isinstance(applications, list):
            for app in applications:  # the latest entry wins
                if isinstance(app, dict):
                    name = app.get("app_name")
                    data = app.get("app_data")
                    if name in _SCANNED_APPS and isinstance(data, str):
                        found[name] = data
        return found


# --------------------------------------------------------------------------------------------
# XML


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
            value = _decoded(uuid.text)
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
    return _build(
        _XmlSource(root),
        received_at=received_at,
        call_id_hint=call_id_hint,
        a_leg_hint=a_leg_hint,
        origin_host=origin_host,
        stamp_tz=stamp_tz,
    )


# --------------------------------------------------------------------------------------------
# JSON


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
        value = _decoded(variables.get("uuid"))
        if value:
            return value
    flows = _json_callflows(doc)
    if flows:
        profile = flows[0].get("caller_profile")
        if isinstance(profile, dict):
            return _clean(profile.get("uuid"))
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
    return _build(
        _JsonSource(doc),
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
                uuid = _clean(profile.get("uuid"))
                if uuid:
                    return uuid
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# The mapping shared by both formats


def _build(
    doc: _Source,
    *,
    received_at: datetime | None,
    call_id_hint: str | None,
    a_leg_hint: bool | None,
    origin_host: str | None,
    stamp_tz: tzinfo | None,
) -> CDR:
    raw = doc.variables
    profile = doc.profile
    rare = doc.rare

    # mod_xml_cdr's query parameter is "a_<uuid>" for the A-leg when prefix-a-leg is on; accept a
    # hint that still carries the prefix (a uuid never starts with "a_").
    if call_id_hint and call_id_hint.startswith("a_"):
        call_id_hint = call_id_hint[2:]
        if a_leg_hint is None:
            a_leg_hint = True
    own_uuid = _var(raw, "uuid") or _clean(profile.get("uuid"))
    call_id = own_uuid or _clean(call_id_hint)

    # Only a True hint is evidence: with prefix-a-leg off no leg is prefixed, so a missing prefix
    # does not make a B-leg. originating_leg_uuid is set by the switch on the legs it originates
    # for an A-leg; some billing scripts set it to the channel's own uuid, which proves nothing.
    if a_leg_hint:
        leg = Leg.A
    elif (
        doc.has_originator
        or _var(raw, "originator")
        or _var(raw, "originating_leg_uuid") not in (None, call_id)
    ):
        leg = Leg.B
        if own_uuid is None:
            # A B-leg document is full of its A-leg's uuids (originator, bridge_uuid, ...): with
            # none of its own, a wrong or missing query parameter would file it as its A-leg.
            raise UnmappableRecord(
                "The CDR is a B-leg (it has an originator) but carries no uuid of its own: no "
                "uuid variable and no caller-profile uuid."
            )
    else:
        leg = Leg.A
    if not call_id:
        raise UnmappableRecord(
            "The CDR has no call id: no uuid variable, no caller-profile uuid and no uuid "
            "query parameter."
        )

    # --- times, in microseconds since the epoch (exact; datetimes only at the end)
    start_us = _instant_us(doc, "start", "created_time", stamp_tz)
    if start_us is None:
        raise UnmappableRecord(
            "The CDR has no start time (no start_uepoch/start_epoch variable and no callflow "
            "created_time)."
        )
    answer_us = _instant_us(doc, "answer", "answered_time", stamp_tz)
    end_us = _instant_us(doc, "end", "hangup_time", stamp_tz)
    _check_order(start_us, answer_us, end_us)

    duration = _seconds_variable(raw, "duration")
    if duration is None and end_us is not None:
        # FreeSWITCH's own formula: whole epoch seconds, end minus start.
        duration = _seconds_between(start_us, end_us)
    billsec = _seconds_variable(raw, "billsec")
    if billsec is None and end_us is not None:
        billsec = 0 if answer_us is None else _seconds_between(answer_us, end_us)

    hangup_cause = _var(raw, "hangup_cause")
    sip_code = _sip_code(raw)

    other_leg_id = _other_leg(doc, leg, call_id)

    # --- where the call went: the A-leg's bridge target names the far side
    apps: dict[str, str] | None = None

    def app_data(name: str) -> str | None:
        nonlocal apps
        if apps is None:  # app_log is read at most once, and only if a rule needs it
            apps = doc.scan_apps()
        return _clean(apps.get(name))

    bridge_target = _bridge_target(raw, app_data) if leg is Leg.A else None
    channel_name = raw.get("channel_name")
    gateway = (
        _var(raw, "sip_gateway_name") or _gateway_in(bridge_target) or _gateway_in(channel_name)
    )
    carrier = (
        gateway
        or _var(raw, "sofia_profile_name")
        or rare("sip_profile_name")
        or _profile_in(_decoded(channel_name))
    )

    channel_direction = (_var(raw, "direction") or doc.channel_direction() or "").lower() or None
    direction = _direction(raw, doc, leg, channel_direction, bridge_target, gateway)

    # The SIP request/To host describes the far end on a leg the switch dialled itself; only on
    # a leg that came into the switch does it name the domain (tenant) being called.
    dialled_by_switch = channel_direction == "outbound" or (
        channel_direction is None and leg is Leg.B
    )
    context = _clean(profile.get("context"))
    tenant = (
        _var(raw, "domain_name")
        or _var(raw, "dialed_domain")
        or rare("sip_invite_domain")
        or _var(raw, "domain_uuid")
    )
    if tenant is None:
        if not dialled_by_switch:
            tenant = _var(raw, "sip_req_host") or _var(raw, "sip_to_host")
        if tenant is None:
            tenant = _domain_part(rare("presence_id")) or _context_domain(context)

    disposition = _disposition(billsec, answer_us, hangup_cause, sip_code)

    # The number the caller dialled is the oldest profile's; a transfer (IVR → extension,
    # no answer → voicemail) adds a newer profile with the number it was sent on to.
    dialled = doc.entry("destination_number")
    latest_destination = _clean(profile.get("destination_number"))
    callee_number = dialled or latest_destination or rare("sip_req_user") or rare("sip_to_user")

    extra: dict[str, Any] = {}
    for name in _EXTRA_VARIABLES:
        value = _var(raw, name)
        if value is not None:
            extra[name] = value
    if context is not None:
        extra["context"] = context
    if latest_destination is not None and latest_destination != callee_number:
        extra["final_destination"] = latest_destination
    if channel_direction is not None:
        extra["channel_direction"] = channel_direction
    if doc.switchname is not None:
        extra["switchname"] = doc.switchname
    if doc.core_uuid is not None:
        extra["core_uuid"] = doc.core_uuid
    missed = _missed_call(raw, rare, leg, direction, disposition, callee_number, latest_destination)
    if missed is not None:
        extra["missed_call"] = missed

    try:
        return CDR(
            call_id=call_id,
            source=SOURCE,
            origin_host=_var(raw, "hostname") or doc.switchname or origin_host,
            leg=leg,
            other_leg_id=other_leg_id,
            direction=direction,
            caller_number=(
                _clean(profile.get("caller_id_number"))
                or _var(raw, "caller_id_number")
                or _var(raw, "origination_caller_id_number")
                or rare("effective_caller_id_number")
            ),
            caller_name=(
                _clean(profile.get("caller_id_name"))
                or _var(raw, "caller_id_name")
                or _var(raw, "origination_caller_id_name")
                or rare("effective_caller_id_name")
            ),
            callee_number=callee_number,
            account=_var(raw, "accountcode") or _var(raw, "sip_auth_username"),
            tenant=tenant,
            carrier=carrier,
            start_time=_datetime(start_us),
            answer_time=None if answer_us is None else _datetime(answer_us),
            end_time=None if end_us is None else _datetime(end_us),
            duration_s=duration,
            billsec_s=billsec,
            disposition=disposition,
            hangup_cause=hangup_cause,
            sip_code=sip_code,
            pdd_ms=_pdd_ms(doc),
            recording_path=_recording_path(raw, app_data, answer_us is not None, bridge_target),
            # FreeSWITCH sets both when the codecs are negotiated; no media, neither.
            codec=_var(raw, "read_codec") or rare("write_codec"),
            extra=extra,
            received_at=received_at,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnmappableRecord(
            f"The CDR maps to a value the model refuses ({where}: {first['msg']})."
        ) from exc


def _other_leg(doc: _Source, leg: Leg, call_id: str) -> str | None:
    raw = doc.variables
    # A B-leg's other leg is the A-leg that originated it; an A-leg's is the leg it bridged to
    # (the last one, if it tried several), else the one it originated.
    if leg is Leg.B:
        value = doc.originator_uuid()
        if value and value != call_id:
            return value
        names: tuple[str, ...] = (
            "originating_leg_uuid",
            "originator",
            "bridge_uuid",
            "signal_bond",
        )
    else:
        names = ("bridge_uuid", "signal_bond", "last_bridge_to")
    for name in names:
        value = _var(raw, name)
        if value and value != call_id:
            return value
    if leg is Leg.A:
        value = doc.originatee_uuid()
        if value and value != call_id:
            return value
    return None


def _direction(
    raw: Mapping[str, Any],
    doc: _Source,
    leg: Leg,
    channel_direction: str | None,
    bridge_target: str | None,
    gateway: str | None,
) -> Direction | None:
    # FusionPBX (and dialplans written like it) state the call's direction outright.
    stated = _var(raw, "call_direction")
    if stated is not None:
        mapped = _CALL_DIRECTIONS.get(stated.lower())
        if mapped is not None:
            return mapped
    # FreeSWITCH's own "direction" is the *channel's*: inbound = the far end called the switch,
    # outbound = the switch placed the leg. A phone dialling out is an inbound channel, so the
    # call direction follows from which side is outside (a carrier) and which is a local user.
    caller_outside: bool | None
    callee_outside: bool | None
    context = doc.entry("context")
    if leg is Leg.B:
        # A B-leg's caller profile carries the A-leg's dialplan context; "public" is where
        # FreeSWITCH puts calls that did not authenticate, i.e. calls from outside.
        caller_outside = None if context is None else context == "public"
        # The switch dialled this leg: through a gateway it leaves the switch, otherwise it
        # rings a local endpoint.
        callee_outside = gateway is not None
    else:
        if channel_direction == "outbound":
            # The switch originated this A-leg itself (API originate, click-to-call): neither
            # end is known to be the caller.
            return None
        caller_outside = (
            True
            if context == "public" or _var(raw, "sip_gateway_name")
            else (None if context is None else False)
        )
        callee_outside = None if bridge_target is None else _gateway_in(bridge_target) is not None
    if caller_outside is None or callee_outside is None:
        return None
    if caller_outside and not callee_outside:
        return Direction.INBOUND
    if callee_outside and not caller_outside:
        return Direction.OUTBOUND
    if not caller_outside and not callee_outside:
        return Direction.INTERNAL
    return None  # carrier to carrier (transit): none of the three


def _bridge_target(raw: Mapping[str, Any], app_data: Callable[[str], str | None]) -> str | None:
    for app_name, data_name in (
        ("last_app", "last_arg"),
        ("current_application", "current_application_data"),
    ):
        if _var(raw, app_name) == "bridge":
            data = _var(raw, data_name)
            if data:
                return data
    # A failed bridge followed by other apps (continue_on_fail, voicemail) leaves it in app_log.
    return app_data("bridge")


def _disposition(
    billsec: int | None, answer_us: int | None, cause: str | None, sip_code: int | None
) -> Disposition | None:
    if billsec is not None:
        if billsec > 0:
            return Disposition.ANSWERED
    elif answer_us is not None:
        return Disposition.ANSWERED  # answered, end unknown: billsec cannot be computed
    if cause is None and sip_code is None:
        return None
    # The Q.850 cause is the switch's verdict; the SIP code only decides when the cause does not
    # (e.g. NO_ANSWER arrives with sip 487 because the switch CANCELled the ringing leg).
    if cause in _BUSY_CAUSES:
        return Disposition.BUSY
    if cause in _CANCEL_CAUSES:
        return Disposition.CANCELLED
    if cause in _NO_ANSWER_CAUSES:
        return Disposition.NO_ANSWER
    if sip_code in _BUSY_SIP:
        return Disposition.BUSY
    if sip_code == _CANCEL_SIP:
        return Disposition.CANCELLED
    if sip_code in _NO_ANSWER_SIP:
        return Disposition.NO_ANSWER
    if cause == "NORMAL_CLEARING" and answer_us is None:
        # Cleared normally without ever being answered: the caller gave up or the callee never
        # picked up; nothing failed.
        return Disposition.NO_ANSWER
    return Disposition.FAILED


def _missed_call(
    raw: Mapping[str, Any],
    rare: Callable[[str], str | None],
    leg: Leg,
    direction: Direction | None,
    disposition: Disposition | None,
    callee_number: str | None,
    latest_destination: str | None,
) -> bool | None:
    stated = _var(raw, "missed_call")  # FusionPBX's dialplan sets it itself
    if stated is not None:
        return stated.lower() == "true"
    # A missed call is a property of the call, which the A-leg represents; each ring-group
    # member's B-leg is an attempt, not a call.
    if leg is not Leg.A or direction is None:
        return None
    if direction is not Direction.INBOUND:
        return False
    # FusionPBX counts a call that reached voicemail as missed (nobody took it in person), even
    # though voicemail answered it: the voicemail app stamps voicemail_answer_stamp, and
    # FusionPBX's dialplan sends unanswered calls to *99<extension>.
    if (
        rare("voicemail_answer_stamp") is not None
        or (callee_number is not None and callee_number.startswith("*99"))
        or (latest_destination is not None and latest_destination.startswith("*99"))
    ):
        return True
    return disposition is not Disposition.ANSWERED


def _sip_code(raw: Mapping[str, Any]) -> int | None:
    # The final status of this leg's own dialog first; then what the far leg's dialog ended
    # with (an A-leg bridged to a phone); then the answer to an INVITE this leg sent; then the
    # protocol cause FreeSWITCH noted when the leg hung up.
    code = _status(_var(raw, "sip_term_status"))
    if code is not None:
        return code
    code = _sip_cause(_var(raw, "last_bridge_proto_specific_hangup_cause"))
    if code is not None:
        return code
    code = _status(_var(raw, "sip_invite_failure_status"))
    if code is not None:
        return code
    return _sip_cause(_var(raw, "proto_specific_hangup_cause"))


def _sip_cause(value: str | None) -> int | None:
    # "sip:487"; other protocols ("q850:16") say nothing about SIP.
    if value is not None and value.startswith("sip:"):
        return _status(value[4:])
    return None


def _status(value: str | None) -> int | None:
    code = _int(value)
    return code if code is not None and 100 <= code <= 699 else None


def _pdd_ms(doc: _Source) -> int | None:
    # Post-dial delay: until the caller first hears something (ringing or early media),
    # whichever came first. The raw microsecond stamps are preferred over the *msec variables:
    # some versions (the 2009 fixture) report progress_mediamsec wrong while the stamps agree.
    raw = doc.variables
    start = _positive(_var(raw, "start_uepoch")) or _positive(doc.times().get("created_time"))
    progress = _var(raw, "progress_uepoch") or doc.times().get("progress_time")
    progress_media = _var(raw, "progress_media_uepoch") or doc.times().get("progress_media_time")
    if start is not None and (progress is not None or progress_media is not None):
        # The stamps are there: 0 in both means the leg never reached progress.
        deltas = [
            mark - start
            for mark in (_positive(progress), _positive(progress_media))
            if mark is not None and mark >= start
        ]
        return (min(deltas) + 500) // 1000 if deltas else None
    msecs = [
        value
        for value in (
            _positive(doc.rare("progressmsec")),
            _positive(doc.rare("progress_mediamsec")),
        )
        if value is not None
    ]
    return min(msecs) if msecs else None


def _recording_path(
    raw: Mapping[str, Any],
    app_data: Callable[[str], str | None],
    answered: bool,
    bridge_target: str | None,
) -> str | None:
    # FusionPBX's record_path/record_name is the final file it indexes.
    record_name = _var(raw, "record_name")
    if record_name is not None:
        if record_name.startswith("/"):
            return record_name
        record_path = _var(raw, "record_path")
        if record_path is not None:
            return f"{record_path.rstrip('/')}/{record_name}"
    # The path record_session actually wrote (the last one, if recording restarted). FreeSWITCH
    # sets record_samples when a session recording closes its file, so without it there is no
    # recording and app_log need not be read.
    if _var(raw, "record_samples") is not None:
        data = app_data("record_session")
        if data is None and _var(raw, "last_app") == "record_session":
            data = _var(raw, "last_arg")  # a document without app_log
        if data is not None:
            return _strip_time_limit(data)
    for name in ("cc_record_filename", "sofia_record_file"):
        value = _var(raw, name)
        if value is not None:
            return value
    # api_on_answer only runs when the call is answered: weakest evidence, last. It is set as a
    # channel variable or inside the bridge dial string ({api_on_answer='uuid_record ...'}).
    if answered:
        for command in (_var(raw, "api_on_answer"), bridge_target):
            if command is not None and "uuid_record" in command:
                match = _UUID_RECORD_RE.search(command)
                if match:
                    return match.group(1)
    return None


def _strip_time_limit(data: str) -> str:
    # record_session <path> [+<seconds>]
    head, sep, tail = data.rpartition(" ")
    if sep and tail.startswith("+") and tail[1:].isdigit():
        return head.rstrip()
    return data


def _instant_us(doc: _Source, prefix: str, callflow_name: str, tz: tzinfo | None) -> int | None:
    # The first source present decides, and 0 there means "never happened": every source is
    # derived from the same channel timestamps, so a later one cannot know better.
    value = _var(doc.variables, f"{prefix}_uepoch") or _clean(doc.times().get(callflow_name))
    if value is not None:
        return _positive(value)
    value = doc.rare(f"{prefix}_epoch")
    if value is not None:
        seconds = _positive(value)
        return None if seconds is None else seconds * _US_PER_S
    if tz is None:
        # *_stamp is local time of the switch without a zone (the 2009 fixture is UTC-5):
        # reading it as UTC would be a guess.
        return None
    stamp = doc.rare(f"{prefix}_stamp")
    if stamp is None:
        return None
    try:
        local = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError:
        return None
    return (local - _EPOCH) // timedelta(microseconds=1)


def _check_order(start_us: int, answer_us: int | None, end_us: int | None) -> None:
    # Every instant comes from the same channel clock: one out of order is a corrupt document,
    # and the durations computed from it would be nonsense.
    if answer_us is not None and answer_us < start_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: answered {_iso(answer_us)}, before it started "
            f"{_iso(start_us)}."
        )
    if end_us is not None and end_us < start_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: it ended {_iso(end_us)}, before it started "
            f"{_iso(start_us)}."
        )
    if end_us is not None and answer_us is not None and end_us < answer_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: it ended {_iso(end_us)}, before it was answered "
            f"{_iso(answer_us)}."
        )


def _iso(us: int) -> str:
    return _datetime(us).isoformat()


def _seconds_variable(raw: Mapping[str, Any], name: str) -> int | None:
    value = _var(raw, name)
    if value is None:
        return None
    seconds = _int(value)
    if seconds is None:
        raise UnmappableRecord(f"The CDR's {name} variable is not a whole number ({value[:40]!r}).")
    if seconds < 0:
        raise UnmappableRecord(f"The CDR's {name} variable is negative ({seconds}).")
    return seconds


def _domain_part(value: str | None) -> str | None:
    # presence_id is <user>@<domain>
    if value is None:
        return None
    _, at, domain = value.rpartition("@")
    return (domain.strip() or None) if at else None


# FreeSWITCH's shared contexts (public: unauthenticated calls; default: the stock dialplan).
_SHARED_CONTEXTS: Final = frozenset({"public", "default"})


def _context_domain(context: str | None) -> str | None:
    # FusionPBX names each tenant's dialplan context after its domain ("pbx.example.com").
    if context is None or context in _SHARED_CONTEXTS or "." not in context:
        return None
    return context


def _seconds_between(start_us: int, end_us: int) -> int | None:
    seconds = end_us // _US_PER_S - start_us // _US_PER_S
    return seconds if seconds >= 0 else None


def _datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _gateway_in(value: Any) -> str | None:
    # Safe on a raw (percent-encoded) value: FreeSWITCH never encodes "/" or letters, so the
    # marker is visible before decoding, and only a hit is decoded.
    if not isinstance(value, str) or "sofia/gateway/" not in value:
        return None
    match = _GATEWAY_RE.search(_decoded(value) or "")
    return match.group(1) if match else None


def _profile_in(channel_name: str | None) -> str | None:
    if channel_name is None:
        return None
    match = _PROFILE_RE.match(channel_name)
    return match.group(1) if match else None


def _var(raw: Mapping[str, Any], name: str) -> str | None:
    """A variable's value, decoded; the hot path of the mapping (called ~50 times per CDR)."""
    value = raw.get(name)
    if value is None:  # most lookups: the variable is absent
        return None
    if value.__class__ is not str:
        return _decoded(value)
    if "%" in value:
        value = _unquote(value)
    return value.strip() or None


def _child_text(element: etree._Element, child: str) -> str | None:
    for found in element.iterchildren(child):
        return _clean(found.text)
    return None


def _grandchild_text(element: etree._Element, child: str, grandchild: str) -> str | None:
    for found in element.iterchildren(child):
        for leaf in found.iterchildren(grandchild):
            return _clean(leaf.text)
        return None
    return None


def _decoded(value: Any) -> str | None:
    """A variable's value, percent-decoded when it needs it, stripped; empty → ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        value = str(value)  # a JSON writer that emitted a number
    if "%" in value:
        value = _unquote(value)
    value = value.strip()
    return value or None


_HEX_CHARS: Final = "0123456789abcdefABCDEF"
_HEX_TO_CHAR: Final[dict[str, str]] = {
    a + b: chr(int(a + b, 16)) for a in _HEX_CHARS for b in _HEX_CHARS
}


def _unquote(value: str) -> str:
    """``urllib.parse.unquote`` for the ASCII values FreeSWITCH writes, about twice as fast."""
    if not value.isascii():
        return unquote(value)  # already holds real characters: let the stdlib sort it out
    parts = value.split("%")
    out = [parts[0]]
    high = False
    for part in parts[1:]:
        char = _HEX_TO_CHAR.get(part[:2])
        if char is None:
            out.append("%")  # not an escape: keep it, as unquote does
            out.append(part)
        else:
            high = high or char > "\x7f"
            out.append(char)
            out.append(part[2:])
    text = "".join(out)
    # Escaped bytes >= 0x80 are UTF-8 sequences; each became one latin-1 char, so re-decode.
    return text.encode("latin-1").decode("utf-8", "replace") if high else text


def _clean(value: Any) -> str | None:
    """A caller-profile or attribute value (never percent-encoded), stripped; empty → ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _positive(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and number > 0 else None
