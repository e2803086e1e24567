"""What the mapping reads from one document, whichever format (XML or JSON) it came in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

__all__ = [
    "PROFILE_FIELDS",
    "RARE_VARIABLES",
    "SCANNED_APPS",
    "TIMES_FIELDS",
    "VARIABLES",
    "Source",
]

# The variables the mapping (or ``extra``) reads on every CDR. ``iterchildren(*names)`` matches
# tags in C and builds Python proxies only for these instead of for all ~200 variables. Its cost
# grows with the number of names (lxml prepares each one on every call, ~0.2 us) and with how
# many of them the document holds (a proxy each), hence RARE_VARIABLES.
VARIABLES: Final[tuple[str, ...]] = (
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
RARE_VARIABLES: Final[tuple[str, ...]] = (
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

# Caller-profile and <times> children the mapping reads (iterchildren matches them in C).
PROFILE_FIELDS: Final[tuple[str, ...]] = (
    "uuid",
    "caller_id_number",
    "caller_id_name",
    "destination_number",
    "context",
    "originator",
    "originatee",
)
TIMES_FIELDS: Final[tuple[str, ...]] = (
    "created_time",
    "answered_time",
    "hangup_time",
    "progress_time",
    "progress_media_time",
)
# app_log applications the mapping looks for: the bridge target and the recording file.
SCANNED_APPS: Final = frozenset({"bridge", "record_session"})


class Source(Protocol):
    """What the mapping needs from one document, whichever format it came in.

    Attributes are read for every CDR; methods are fallbacks, evaluated only when a rule
    reaches them (most CDRs never need most of them).
    """

    variables: Mapping[str, Any]  # raw (still percent-encoded) variable values
    profile: Mapping[str, Any]  # the first (latest) callflow's caller profile, flat fields
    has_originator: bool  # the caller profile has an <originator>
    switchname: str | None
    core_uuid: str | None

    def rare(self, name: str) -> str | None: ...  # decoded value of one of RARE_VARIABLES
    def times(self) -> Mapping[str, Any]: ...  # the first callflow's <times>, microseconds
    def originator_uuid(self) -> str | None: ...
    def originatee_uuid(self) -> str | None: ...
    def entry(self, field: str) -> str | None: ...  # a field of the oldest callflow's profile
    def channel_direction(self) -> str | None: ...  # channel_data/direction
    def scan_apps(self) -> dict[str, str]: ...  # {app: data of its latest app_log entry}
