"""The rules that read a call out of a leg: the other leg, the call's direction, where it was
bridged, its disposition, whether it was missed, its SIP code, its recording, its tenant and
carrier hints. Every rule is listed in ``docs/freeswitch-mapping.md``; the comments here say why
a rule is the way it is."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from cdrmodel.record import Direction, Disposition, Leg
from tests.parser.freeswitch.former.source import Source
from tests.parser.freeswitch.former.values import as_int, decoded, var

__all__ = [
    "bridge_target",
    "call_direction",
    "context_domain",
    "disposition",
    "domain_part",
    "gateway_in",
    "missed_call",
    "other_leg",
    "profile_in",
    "recording_path",
    "sip_code",
]

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


def other_leg(doc: Source, leg: Leg, call_id: str) -> str | None:
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
        value = var(raw, name)
        if value and value != call_id:
            return value
    if leg is Leg.A:
        value = doc.originatee_uuid()
        if value and value != call_id:
            return value
    return None


def call_direction(
    raw: Mapping[str, Any],
    doc: Source,
    leg: Leg,
    channel_direction: str | None,
    bridge_target: str | None,
    gateway: str | None,
) -> Direction | None:
    # FusionPBX (and dialplans written like it) state the call's direction outright.
    stated = var(raw, "call_direction")
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
            if context == "public" or var(raw, "sip_gateway_name")
            else (None if context is None else False)
        )
        callee_outside = None if bridge_target is None else gateway_in(bridge_target) is not None
    if caller_outside is None or callee_outside is None:
        return None
    if caller_outside and not callee_outside:
        return Direction.INBOUND
    if callee_outside and not caller_outside:
        return Direction.OUTBOUND
    if not caller_outside and not callee_outside:
        return Direction.INTERNAL
    return None  # carrier to carrier (transit): none of the three


def bridge_target(raw: Mapping[str, Any], app_data: Callable[[str], str | None]) -> str | None:
    for app_name, data_name in (
        ("last_app", "last_arg"),
        ("current_application", "current_application_data"),
    ):
        if var(raw, app_name) == "bridge":
            data = var(raw, data_name)
            if data:
                return data
    # A failed bridge followed by other apps (continue_on_fail, voicemail) leaves it in app_log.
    return app_data("bridge")


def disposition(
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


def missed_call(
    raw: Mapping[str, Any],
    rare: Callable[[str], str | None],
    leg: Leg,
    direction: Direction | None,
    disposition: Disposition | None,
    callee_number: str | None,
    latest_destination: str | None,
) -> bool | None:
    stated = var(raw, "missed_call")  # FusionPBX's dialplan sets it itself
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


def sip_code(raw: Mapping[str, Any]) -> int | None:
    # The final status of this leg's own dialog first; then what the far leg's dialog ended
    # with (an A-leg bridged to a phone); then the answer to an INVITE this leg sent; then the
    # protocol cause FreeSWITCH noted when the leg hung up.
    code = _status(var(raw, "sip_term_status"))
    if code is not None:
        return code
    code = _sip_cause(var(raw, "last_bridge_proto_specific_hangup_cause"))
    if code is not None:
        return code
    code = _status(var(raw, "sip_invite_failure_status"))
    if code is not None:
        return code
    return _sip_cause(var(raw, "proto_specific_hangup_cause"))


def _sip_cause(value: str | None) -> int | None:
    # "sip:487"; other protocols ("q850:16") say nothing about SIP.
    if value is not None and value.startswith("sip:"):
        return _status(value[4:])
    return None


def _status(value: str | None) -> int | None:
    code = as_int(value)
    return code if code is not None and 100 <= code <= 699 else None


def recording_path(
    raw: Mapping[str, Any],
    app_data: Callable[[str], str | None],
    answered: bool,
    bridge_target: str | None,
) -> str | None:
    # FusionPBX's record_path/record_name is the final file it indexes.
    record_name = var(raw, "record_name")
    if record_name is not None:
        if record_name.startswith("/"):
            return record_name
        record_path = var(raw, "record_path")
        if record_path is not None:
            return f"{record_path.rstrip('/')}/{record_name}"
    # The path record_session actually wrote (the last one, if recording restarted). FreeSWITCH
    # sets record_samples when a session recording closes its file, so without it there is no
    # recording and app_log need not be read.
    if var(raw, "record_samples") is not None:
        data = app_data("record_session")
        if data is None and var(raw, "last_app") == "record_session":
            data = var(raw, "last_arg")  # a document without app_log
        if data is not None:
            return _strip_time_limit(data)
    for name in ("cc_record_filename", "sofia_record_file"):
        value = var(raw, name)
        if value is not None:
            return value
    # api_on_answer only runs when the call is answered: weakest evidence, last. It is set as a
    # channel variable or inside the bridge dial string ({api_on_answer='uuid_record ...'}).
    if answered:
        for command in (var(raw, "api_on_answer"), bridge_target):
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


def domain_part(value: str | None) -> str | None:
    # presence_id is <user>@<domain>
    if value is None:
        return None
    _, at, domain = value.rpartition("@")
    return (domain.strip() or None) if at else None


# FreeSWITCH's shared contexts (public: unauthenticated calls; default: the stock dialplan).
_SHARED_CONTEXTS: Final = frozenset({"public", "default"})


def context_domain(context: str | None) -> str | None:
    # FusionPBX names each tenant's dialplan context after its domain ("pbx.example.com").
    if context is None or context in _SHARED_CONTEXTS or "." not in context:
        return None
    return context


def gateway_in(value: Any) -> str | None:
    # Safe on a raw (percent-encoded) value: FreeSWITCH never encodes "/" or letters, so the
    # marker is visible before decoding, and only a hit is decoded.
    if not isinstance(value, str) or "sofia/gateway/" not in value:
        return None
    match = _GATEWAY_RE.search(decoded(value) or "")
    return match.group(1) if match else None


def profile_in(channel_name: str | None) -> str | None:
    if channel_name is None:
        return None
    match = _PROFILE_RE.match(channel_name)
    return match.group(1) if match else None
