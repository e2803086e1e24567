"""The mapping shared by both formats: one :class:`Source` → one :class:`cdrmodel.CDR`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from pydantic import ValidationError

from cdrmodel.errors import UnmappableRecord
from cdrmodel.record import CDR, SCHEMA_VERSION, Leg
from tests.parser.freeswitch.former import rules
from tests.parser.freeswitch.former.source import Source
from tests.parser.freeswitch.former.times import as_datetime, call_times, pdd_ms
from tests.parser.freeswitch.former.values import clean, decoded, var

__all__ = ["SOURCE", "build"]

SOURCE: Final = "freeswitch"

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


def build(
    doc: Source,
    *,
    received_at: datetime | None,
    call_id_hint: str | None,
    a_leg_hint: bool | None,
    origin_host: str | None,
    stamp_tz: tzinfo | None,
) -> CDR:
    """Map one leg; raises ``UnmappableRecord`` with the reason when it cannot."""
    raw = doc.variables
    profile = doc.profile
    rare = doc.rare

    call_id, leg = _identity(doc, call_id_hint, a_leg_hint)
    times = call_times(doc, stamp_tz)
    hangup_cause = var(raw, "hangup_cause")
    sip_code = rules.sip_code(raw)

    # --- where the call went: the A-leg's bridge target names the far side
    apps = _AppLog(doc)
    bridge_target = rules.bridge_target(raw, apps.data) if leg is Leg.A else None
    channel_name = raw.get("channel_name")
    gateway = (
        var(raw, "sip_gateway_name")
        or rules.gateway_in(bridge_target)
        or rules.gateway_in(channel_name)
    )
    channel_direction = (var(raw, "direction") or doc.channel_direction() or "").lower() or None
    direction = rules.call_direction(raw, doc, leg, channel_direction, bridge_target, gateway)
    context = clean(profile.get("context"))
    disposition = rules.disposition(times.billsec_s, times.answer_us, hangup_cause, sip_code)

    # The number the caller dialled is the oldest profile's; a transfer (IVR → extension,
    # no answer → voicemail) adds a newer profile with the number it was sent on to.
    dialled = doc.entry("destination_number")
    latest_destination = clean(profile.get("destination_number"))
    callee_number = dialled or latest_destination or rare("sip_req_user") or rare("sip_to_user")

    extra = _extra(doc, context, latest_destination, callee_number, channel_direction)
    missed = rules.missed_call(
        raw, rare, leg, direction, disposition, callee_number, latest_destination
    )
    if missed is not None:
        extra["missed_call"] = missed

    return _cdr(
        {
            "schema_version": SCHEMA_VERSION,
            "call_id": call_id,
            "source": SOURCE,
            "origin_host": var(raw, "hostname") or doc.switchname or origin_host,
            "leg": leg,
            "other_leg_id": rules.other_leg(doc, leg, call_id),
            "direction": direction,
            "caller_number": _caller(doc, "caller_id_number"),
            "caller_name": _caller(doc, "caller_id_name"),
            "callee_number": callee_number,
            "account": var(raw, "accountcode") or var(raw, "sip_auth_username"),
            "tenant": _tenant(doc, leg, channel_direction, context),
            "carrier": _carrier(raw, rare, gateway, channel_name),
            "start_time": as_datetime(times.start_us),
            "answer_time": None if times.answer_us is None else as_datetime(times.answer_us),
            "end_time": None if times.end_us is None else as_datetime(times.end_us),
            "duration_s": times.duration_s,
            "billsec_s": times.billsec_s,
            "disposition": disposition,
            "hangup_cause": hangup_cause,
            "sip_code": sip_code,
            "pdd_ms": pdd_ms(doc),
            "recording_path": rules.recording_path(
                raw, apps.data, times.answer_us is not None, bridge_target
            ),
            # FreeSWITCH sets both when the codecs are negotiated; no media, neither.
            "codec": var(raw, "read_codec") or rare("write_codec"),
            "extra": extra,
            "received_at": received_at,
        }
    )


# The fields a validated CDR(**fields) marks as set: every one build() passes.
_FIELDS_SET: Final = frozenset(CDR.model_fields) - {"schema_version"}
_new = CDR.__new__
_set = object.__setattr__


def _cdr(fields: dict[str, Any]) -> CDR:
    """The CDR of ``fields`` (every model field, in the model's order), as ``CDR(**fields)``
    builds it, without pydantic's validation when the fields are what it would accept as they
    are (issue 15: validation was ~65,000 instructions of the ~550,000 the mapping costs).

    Every value build() computes has the model's type by construction (``clean``, ``var`` and
    ``decoded`` give ``str | None``; the enums are the model's; times are ``datetime`` in UTC
    from ``as_datetime``; ``sip_code`` is 100-699 (``rules._status``), durations and
    ``pdd_ms`` never negative, ``extra`` a dict keyed by text). What it cannot know by
    construction is checked here: the call id's length and the hints from the envelope (a
    ``received_at`` the model converts to UTC or refuses, an ``origin_host``). Anything else
    goes through the model's validation, whose verdict (and message) is then what it was.
    ``tests/parser/freeswitch/conftest.py`` holds every mapping of the tests to
    ``CDR(**fields)``, field by field and type by type."""
    call_id = fields["call_id"]
    received_at = fields["received_at"]
    origin_host = fields["origin_host"]
    if (
        call_id.__class__ is str
        and 0 < len(call_id) <= 128
        and (origin_host is None or origin_host.__class__ is str)
        and (received_at is None or received_at.__class__ is datetime)
    ):
        if received_at is not None and received_at.tzinfo is not UTC:
            if received_at.tzinfo is None:
                return _validated(fields)  # refused: times must carry a timezone
            fields["received_at"] = received_at.astimezone(UTC)  # what the model does
        cdr = _new(CDR)
        _set(cdr, "__dict__", fields)
        _set(cdr, "__pydantic_fields_set__", set(_FIELDS_SET))
        _set(cdr, "__pydantic_extra__", None)
        _set(cdr, "__pydantic_private__", None)
        return cdr
    return _validated(fields)


def _validated(fields: dict[str, Any]) -> CDR:
    """``CDR(**fields)``, pydantic's validation and all; a refusal is ``UnmappableRecord``."""
    try:
        return CDR(**{name: value for name, value in fields.items() if name != "schema_version"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnmappableRecord(
            f"The CDR maps to a value the model refuses ({where}: {first['msg']})."
        ) from exc


class _AppLog:
    """The document's app_log, read at most once and only if a rule needs it."""

    __slots__ = ("_apps", "_doc")

    def __init__(self, doc: Source) -> None:
        self._doc = doc
        self._apps: dict[str, str] | None = None

    def data(self, name: str) -> str | None:
        if self._apps is None:
            self._apps = self._doc.scan_apps()
        return clean(self._apps.get(name))


def _identity(doc: Source, call_id_hint: str | None, a_leg_hint: bool | None) -> tuple[str, Leg]:
    """The leg's call id and whether it is the A- or the B-leg."""
    raw = doc.variables
    # mod_xml_cdr's query parameter is "a_<uuid>" for the A-leg when prefix-a-leg is on; accept a
    # hint that still carries the prefix (a uuid never starts with "a_").
    if call_id_hint and call_id_hint.startswith("a_"):
        call_id_hint = call_id_hint[2:]
        if a_leg_hint is None:
            a_leg_hint = True
    own_uuid = var(raw, "uuid") or clean(doc.profile.get("uuid"))
    call_id = own_uuid or clean(call_id_hint)

    # Only a True hint is evidence: with prefix-a-leg off no leg is prefixed, so a missing prefix
    # does not make a B-leg. originating_leg_uuid is set by the switch on the legs it originates
    # for an A-leg; some billing scripts set it to the channel's own uuid, which proves nothing.
    if a_leg_hint:
        leg = Leg.A
    elif (
        doc.has_originator
        or var(raw, "originator")
        or var(raw, "originating_leg_uuid") not in (None, call_id)
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
    return call_id, leg


def _caller(doc: Source, field: str) -> str | None:
    # field is caller_id_number or caller_id_name: the profile, then the variables.
    raw = doc.variables
    return (
        clean(doc.profile.get(field))
        or var(raw, field)
        or var(raw, f"origination_{field}")
        or doc.rare(f"effective_{field}")
    )


def _carrier(
    raw: Mapping[str, Any],
    rare: Callable[[str], str | None],
    gateway: str | None,
    channel_name: Any,
) -> str | None:
    return (
        gateway
        or var(raw, "sofia_profile_name")
        or rare("sip_profile_name")
        or rules.profile_in(decoded(channel_name))
    )


def _tenant(
    doc: Source, leg: Leg, channel_direction: str | None, context: str | None
) -> str | None:
    raw = doc.variables
    rare = doc.rare
    tenant = (
        var(raw, "domain_name")
        or var(raw, "dialed_domain")
        or rare("sip_invite_domain")
        or var(raw, "domain_uuid")
    )
    if tenant is not None:
        return tenant
    # The SIP request/To host describes the far end on a leg the switch dialled itself; only on
    # a leg that came into the switch does it name the domain (tenant) being called.
    dialled_by_switch = channel_direction == "outbound" or (
        channel_direction is None and leg is Leg.B
    )
    if not dialled_by_switch:
        tenant = var(raw, "sip_req_host") or var(raw, "sip_to_host")
    if tenant is None:
        tenant = rules.domain_part(rare("presence_id")) or rules.context_domain(context)
    return tenant


def _extra(
    doc: Source,
    context: str | None,
    latest_destination: str | None,
    callee_number: str | None,
    channel_direction: str | None,
) -> dict[str, Any]:
    raw = doc.variables
    extra: dict[str, Any] = {}
    get = raw.get
    for name in _EXTRA_VARIABLES:
        value = get(name)
        if value is None:
            continue
        # var()'s own steps for a plain text, without its call (~700 instructions a variable)
        value = (
            value.strip() or None if value.__class__ is str and "%" not in value else var(raw, name)
        )
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
    return extra
