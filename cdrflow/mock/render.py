"""Rendering a drawn :class:`~cdrflow.mock.draw.Call` as FreeSWITCH's mod_xml_cdr would post it.

The shape follows the real documents in ``tests/fixtures/freeswitch/`` (FreeSWITCH 1.4-1.10):
``<cdr core-uuid switchname>`` with ``channel_data``, percent-encoded ``variables``, ``app_log``
and a ``callflow`` whose caller profile carries ``<originatee>`` (A-leg) or ``<originator>``
(B-leg). The random details (codecs' statistics, SIP ids, app stamps) come from ``rng`` too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Final
from urllib.parse import quote

from cdrflow.mock.draw import Call, caller_host

__all__ = ["render_cdr"]

# The switch's local zone: *_stamp variables are written in it (São Paulo, UTC-3, no DST).
_SWITCH_TZ: Final = timezone(timedelta(hours=-3))
_LOCAL_IP: Final = "10.20.0.5"
_PUBLIC_IP: Final = "177.70.12.34"


def render_cdr(call: Call, rng: random.Random, size_bytes: int | None = None) -> str:
    """The mod_xml_cdr document of ``call`` (``size_bytes``: see ``cdrflow.mock.generate_cdr``)."""
    state = rng.getstate()
    xml = _render(call, rng, size_bytes, lean=False)
    if size_bytes is not None and len(xml.encode()) > size_bytes:
        rng.setstate(state)  # the same random details, only fewer of them
        xml = _render(call, rng, size_bytes, lean=True)
    return xml


def _render(call: Call, rng: random.Random, size_bytes: int | None, *, lean: bool) -> str:
    head = [
        '<?xml version="1.0"?>\n',
        f'<cdr core-uuid="{call.core_uuid}" switchname="{call.switchname}">\n',
        "  <channel_data>\n    <state>CS_REPORTING</state>\n",
        f"    <direction>{'outbound' if call.b_leg else 'inbound'}</direction>\n",
        "    <state_number>11</state_number>\n",
        "    <flags>0=1;1=1;3=1;36=1;37=1;39=1;42=1;47=1;52=1;73=1;112=1;113=1</flags>\n",
        "    <caps>1=1;2=1;3=1;4=1;5=1;6=1</caps>\n  </channel_data>\n",
        "  <variables>\n",
    ]
    head.extend(
        f"    <{name}>{_fs_encode(value)}</{name}>\n" for name, value in _variables(call, rng, lean)
    )
    head.append("  </variables>\n")
    # A B-leg runs no dialplan, so it has no app_log (unless padding needs one).
    apps = [] if call.b_leg else _app_log(call)
    entries = []
    stamp = call.start_us + 15_000
    for name, data in apps:
        stamp += rng.randrange(200, 3_000)
        entries.append(_app_entry(name, data, stamp))
    tail = _callflow(call, [] if lean else apps)
    if size_bytes is not None:
        wrapper = 0 if entries else len("  <app_log>\n  </app_log>\n")
        current = sum(len(part.encode()) for part in (*head, *entries, tail)) + wrapper
        entries.extend(_padding(call, size_bytes - current))
    app_log = ["  <app_log>\n", *entries, "  </app_log>\n"] if entries else []
    return "".join((*head, *app_log, tail))


def _padding(call: Call, missing: int) -> list[str]:
    # An IVR that loops (hold music, position announcements) is what makes real CDRs reach
    # megabytes: thousands of app_log entries.
    entries: list[str] = []
    stamp = call.end_us - 1_000_000
    loop = (
        ("playback", "local_stream://moh"),
        ("playback", "ivr/ivr-please_hold_while_party_contacted.wav"),
        ("set", "ivr_menu_attempt={n}"),
        ("log", "INFO queue position for {uuid}: {n}"),
        ("play_and_get_digits", "1 1 3 5000 # ivr/ivr-welcome.wav ivr/ivr-invalid.wav choice \\d"),
    )
    n = 0
    while missing > 0:
        name, data = loop[n % len(loop)]
        entry = _app_entry(name, data.format(n=n // len(loop), uuid=call.a_uuid), stamp + n)
        size = len(entry.encode())
        if size > missing and entries:
            break  # stop short rather than overshoot: within one entry of the target
        entries.append(entry)
        missing -= size
        n += 1
    return entries


def _app_entry(name: str, data: str, stamp: int) -> str:
    return (
        f'    <application app_name="{name}" app_data="{_xml_attr(data)}" '
        f'app_stamp="{stamp}"></application>\n'
    )


def _variables(call: Call, rng: random.Random, lean: bool) -> list[tuple[str, str]]:
    tenant, carrier = call.tenant, call.carrier
    outcome = call.outcome
    b = call.b_leg
    leg_uuid = call.leg_uuid
    from_host = caller_host(call.kind, tenant, carrier)
    # Which SIP endpoint this leg talks to, and through which sofia profile.
    leg_to_carrier = (call.kind == "inbound" and not b) or (call.kind == "outbound" and b)
    if leg_to_carrier:
        profile = "external"
        far_user = call.caller_number if not b else call.callee_number
        channel_name = f"sofia/external/{far_user}@{carrier.host}"
    else:
        profile = "internal"
        far_user = call.extension if not b else call.callee_number
        channel_name = f"sofia/internal/{far_user}@{tenant.domain}"

    v: list[tuple[str, str]] = [
        ("direction", "outbound" if b else "inbound"),
        ("uuid", leg_uuid),
        ("session_id", str(rng.randrange(1, 90_000))),
    ]
    if b:
        v += [("is_outbound", "true"), ("originator", call.a_uuid)]
    v += [
        ("sip_from_user", call.caller_number),
        ("sip_from_uri", f"{call.caller_number}@{from_host}"),
        ("sip_from_host", from_host),
        ("channel_name", channel_name),
        ("sip_call_id", call.sip_call_id),
        ("sip_local_network_addr", _PUBLIC_IP if leg_to_carrier else _LOCAL_IP),
        ("sip_network_ip", carrier.host if leg_to_carrier else "10.20.30.41"),
        ("sip_network_port", "5060"),
        ("sip_via_protocol", "udp"),
        ("sofia_profile_name", profile),
        ("recovery_profile_name", profile),
    ]
    if leg_to_carrier:
        v.append(("sip_gateway_name", carrier.gateway))
    else:
        if not b:  # the phone placed this call and authenticated; a B-leg is placed to it
            v += [
                ("sip_authorized", "true"),
                ("sip_auth_username", call.extension),
                ("sip_auth_realm", tenant.domain),
            ]
        v.append(("sip_user_agent", call.user_agent))
    if not b:
        v += [
            ("sip_req_user", call.callee_number),
            ("sip_req_uri", f"{call.callee_number}@{tenant.domain}"),
            ("sip_req_host", tenant.domain if not leg_to_carrier else _PUBLIC_IP),
        ]
    v += [
        ("sip_to_user", call.callee_number),
        ("sip_to_uri", f"{call.callee_number}@{tenant.domain}"),
        ("sip_to_host", tenant.domain),
        ("sip_full_from", f'"{call.caller_name}" <sip:{call.caller_number}@{from_host}>;tag=a1'),
        ("max_forwards", "69"),
        ("presence_id", f"{call.extension}@{tenant.domain}"),
        ("domain_name", tenant.domain),
        ("accountcode", f"{tenant.domain.split('.')[0]}-{call.extension}"),
        ("effective_caller_id_name", call.caller_name),
        ("effective_caller_id_number", call.caller_number),
        ("outbound_caller_id_number", f"55{tenant.area_code}30040000"),
        ("hangup_after_bridge", "true"),
        ("continue_on_fail", "true"),
    ]
    if tenant.fusionpbx:
        v += [
            ("domain_uuid", tenant.domain_uuid),
            ("call_direction", "local" if call.kind == "internal" else call.kind),
            ("user_context", tenant.domain),
        ]
    reached_media = call.answer_us or call.progress_media_us
    if reached_media:
        if not lean:
            v.append(("switch_r_sdp", _sdp(call, rng)))
        v += [
            ("rtp_use_codec_name", call.codec),
            ("rtp_use_codec_rate", str(call.rate)),
            ("read_codec", call.codec),
            ("read_rate", str(call.rate)),
            ("write_codec", call.codec),
            ("write_rate", str(call.rate)),
            ("remote_media_ip", carrier.host if leg_to_carrier else "10.20.30.41"),
            ("remote_media_port", str(rng.randrange(16384, 32768, 2))),
        ]
    if reached_media:
        v.append(("endpoint_disposition", "ANSWER" if call.answer_us else "EARLY MEDIA"))
    bridge_data = _bridge_data(call)
    if not b:
        v += [
            ("current_application_data", bridge_data),
            ("current_application", "bridge"),
            ("originate_disposition", outcome.hangup_cause if not call.answer_us else "SUCCESS"),
        ]
    if call.answer_us or not b:
        other = call.a_uuid if b else call.b_uuid
        v += [("signal_bond", other)]
        if call.answer_us:
            v += [
                ("bridge_channel", _other_channel(call)),
                ("bridge_uuid", other),
                ("last_bridge_to", other),
            ]
    if b:
        v.append(("originating_leg_uuid", call.a_uuid))
    if outcome.sip_code is not None and outcome.sip_code != 200:
        v += [
            ("sip_term_status", str(outcome.sip_code)),
            ("proto_specific_hangup_cause", f"sip:{outcome.sip_code}"),
            ("sip_term_cause", str(outcome.q850)),
        ]
    elif call.answer_us:
        v.append(("last_bridge_proto_specific_hangup_cause", "sip:200"))
    if call.recorded:
        stamp = _local(call.start_us)
        v += [
            (
                "record_path",
                f"/var/lib/freeswitch/recordings/{tenant.domain}/archive/{stamp:%Y/%b/%d}",
            ),
            ("record_name", f"{call.a_uuid}.wav"),
            ("record_samples", str((call.end_us - call.answer_us) * call.rate // 1_000_000)),
            ("record_seconds", str((call.end_us - call.answer_us) // 1_000_000)),
            ("record_ms", str((call.end_us - call.answer_us) // 1000)),
        ]
    v += [
        ("hangup_cause", outcome.hangup_cause),
        ("hangup_cause_q850", str(outcome.q850)),
        ("digits_dialed", "none"),
    ]
    v += _time_variables(call)
    if not b:
        v += [("last_app", "bridge"), ("last_arg", bridge_data)]
    v += [
        ("caller_id", f'"{call.caller_name}" <{call.caller_number}>'),
        *_duration_variables(call),
        ("sip_hangup_disposition", _hangup_disposition(call, rng)),
    ]
    if reached_media and not lean:
        v += _rtp_stats(call, rng)
    return v


def _hangup_disposition(call: Call, rng: random.Random) -> str:
    # Which side ended the SIP dialog, and how.
    disposition = call.outcome.disposition
    if disposition == "answered":
        return rng.choice(("recv_bye", "send_bye"))
    if disposition == "cancelled":
        return "send_cancel" if call.b_leg else "recv_cancel"
    if disposition == "no_answer":
        # The caller giving up is a CANCEL received; a ring timeout is one the switch sends.
        caller_gave_up = not call.b_leg and call.outcome.hangup_cause == "NORMAL_CLEARING"
        return "recv_cancel" if caller_gave_up else "send_cancel"
    return "recv_refuse" if call.b_leg else "send_refuse"


def _time_variables(call: Call) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    marks = (
        ("start", call.start_us),
        ("profile_start", call.start_us),
        ("answer", call.answer_us),
        ("progress", call.progress_us),
        ("progress_media", call.progress_media_us),
        ("end", call.end_us),
    )
    for name, us in marks:
        if us:
            out.append((f"{name}_stamp", f"{_local(us):%Y-%m-%d %H:%M:%S}"))
    for name, us in marks:
        out.append((f"{name}_epoch", str(us // 1_000_000)))
        out.append((f"{name}_uepoch", str(us)))
    return out


def _duration_variables(call: Call) -> list[tuple[str, str]]:
    # FreeSWITCH computes the *sec values from whole epoch seconds, the *msec/*usec from the
    # microsecond stamps.
    start, answer, end = call.start_us, call.answer_us, call.end_us

    def spans(us_from: int, us_to: int) -> tuple[int, int, int]:
        if not us_from or not us_to:
            return 0, 0, 0
        return us_to // 1_000_000 - us_from // 1_000_000, (us_to - us_from) // 1000, us_to - us_from

    duration = spans(start, end)
    bill = spans(answer, end)
    progress = spans(start, call.progress_us)
    progress_media = spans(start, call.progress_media_us)
    answer_wait = spans(start, answer)
    out: list[tuple[str, str]] = []
    for unit, i in (("sec", 0), ("msec", 1), ("usec", 2)):
        out += [
            ("duration" if unit == "sec" else f"{unit[0]}duration", str(duration[i])),
            (f"bill{unit}", str(bill[i])),
            (f"progress{unit}", str(progress[i])),
            (f"answer{unit}", str(answer_wait[i])),
            (f"progress_media{unit}", str(progress_media[i])),
        ]
    return out


def _rtp_stats(call: Call, rng: random.Random) -> list[tuple[str, str]]:
    media_s = max((call.end_us - (call.answer_us or call.progress_media_us)) / 1e6, 0.0)
    packets = int(media_s * 50)
    return [
        ("rtp_audio_in_raw_bytes", str(packets * 172)),
        ("rtp_audio_in_media_bytes", str(packets * 160)),
        ("rtp_audio_in_packet_count", str(packets)),
        ("rtp_audio_in_skip_packet_count", str(rng.randrange(0, 40))),
        ("rtp_audio_in_jitter_max_variance", f"{rng.uniform(0, 40):.2f}"),
        ("rtp_audio_in_mos", f"{rng.uniform(3.6, 4.5):.2f}"),
        ("rtp_audio_out_raw_bytes", str(packets * 172)),
        ("rtp_audio_out_packet_count", str(packets)),
    ]


def _sdp(call: Call, rng: random.Random) -> str:
    port = rng.randrange(16384, 32768, 2)
    return (
        f"v=0\r\no=- {rng.randrange(10**9)} 1 IN IP4 10.20.30.41\r\ns=-\r\n"
        f"c=IN IP4 10.20.30.41\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 0 18 101\r\n"
        f"a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=ptime:20\r\n"
    )


def _other_channel(call: Call) -> str:
    # The channel on the other side of the bridge, named as sofia names it.
    if call.b_leg:
        if call.kind == "inbound":
            return f"sofia/external/{call.caller_number}@{call.carrier.host}"
        return f"sofia/internal/{call.extension}@10.20.30.41"
    if call.kind == "outbound":
        return f"sofia/external/{call.callee_number}@{call.carrier.host}"
    target = call.other_extension if call.kind == "internal" else call.extension
    return f"sofia/internal/{target}@10.20.30.42"


def _bridge_data(call: Call) -> str:
    if call.kind == "outbound":
        return (
            f"{{sip_cid_type=pid,origination_caller_id_number=55{call.tenant.area_code}30040000}}"
            f"sofia/gateway/{call.carrier.gateway}/{call.callee_number}"
        )
    target = call.other_extension if call.kind == "internal" else call.extension
    return f"user/{target}@{call.tenant.domain}"


def _app_log(call: Call) -> list[tuple[str, str]]:
    tenant = call.tenant
    apps: list[tuple[str, str]] = [
        ("set", f"domain_name={tenant.domain}"),
        ("set", "hangup_after_bridge=true"),
        ("set", "continue_on_fail=true"),
        ("hash", f"insert/{tenant.domain}-last_dial/{call.caller_number}/{call.callee_number}"),
    ]
    if tenant.fusionpbx:
        apps.append(
            ("export", f"call_direction={'local' if call.kind == 'internal' else call.kind}")
        )
    if call.recorded:
        apps.append(("set", "record_session=true"))
        apps.append(
            (
                "record_session",
                f"/var/lib/freeswitch/recordings/{tenant.domain}/archive/"
                f"{_local(call.start_us):%Y/%b/%d}/{call.a_uuid}.wav",
            )
        )
    apps.append(("bridge", _bridge_data(call)))
    return apps


def _callflow(call: Call, apps: Sequence[tuple[str, str]]) -> str:
    tenant = call.tenant
    context = "public" if call.kind == "inbound" else tenant.domain
    profile = _profile_fields(
        call,
        uuid=call.leg_uuid,
        chan_name=(
            f"sofia/external/{call.caller_number}@{call.carrier.host}"
            if call.kind == "inbound" and not call.b_leg
            else f"sofia/internal/{call.extension}@{tenant.domain}"
        ),
        context=context,
    )
    if call.b_leg:
        nested = _profile_fields(
            call,
            uuid=call.a_uuid,
            chan_name=f"sofia/internal/{call.extension}@{tenant.domain}",
            context=context,
            indent="          ",
        )
        profile += (
            "      <originator>\n        <originator_caller_profile>\n"
            f"{nested}        </originator_caller_profile>\n      </originator>\n"
        )
    else:
        nested = _profile_fields(
            call,
            uuid=call.b_uuid,
            chan_name=f"sofia/gateway/{call.carrier.gateway}/{call.callee_number}",
            context=context,
            indent="          ",
        )
        profile += (
            "      <originatee>\n        <originatee_caller_profile>\n"
            f"{nested}        </originatee_caller_profile>\n      </originatee>\n"
        )
    extension = ""
    if apps:
        lines = "".join(
            f'      <application app_name="{name}" app_data="{_xml_attr(data)}"></application>\n'
            for name, data in apps
        )
        extension = (
            f'    <extension name="{"inbound-route" if call.kind == "inbound" else "outbound"}" '
            f'number="{_xml_attr(call.callee_number)}">\n{lines}    </extension>\n'
        )
    times = (
        f"      <created_time>{call.start_us}</created_time>\n"
        f"      <profile_created_time>{call.start_us}</profile_created_time>\n"
        f"      <progress_time>{call.progress_us}</progress_time>\n"
        f"      <progress_media_time>{call.progress_media_us}</progress_media_time>\n"
        f"      <answered_time>{call.answer_us}</answered_time>\n"
        f"      <bridged_time>{call.answer_us}</bridged_time>\n"
        f"      <hangup_time>{call.end_us}</hangup_time>\n"
        "      <resurrect_time>0</resurrect_time>\n"
        "      <transfer_time>0</transfer_time>\n"
    )
    return (
        f'  <callflow dialplan="XML" unique-id="{call.core_uuid}" profile_index="1">\n'
        f"{extension}    <caller_profile>\n{profile}    </caller_profile>\n"
        f"    <times>\n{times}    </times>\n  </callflow>\n</cdr>\n"
    )


def _profile_fields(
    call: Call, *, uuid: str, chan_name: str, context: str, indent: str = "      "
) -> str:
    fields = (
        ("username", call.caller_number),
        ("dialplan", "XML"),
        ("caller_id_name", call.caller_name),
        ("caller_id_number", call.caller_number),
        ("callee_id_name", ""),
        ("callee_id_number", ""),
        ("ani", call.caller_number),
        ("aniii", ""),
        ("network_addr", call.carrier.host if call.kind == "inbound" else "10.20.30.41"),
        ("rdnis", ""),
        ("destination_number", call.callee_number),
        ("uuid", uuid),
        ("source", "mod_sofia"),
        ("context", context),
        ("chan_name", chan_name),
    )
    return "".join(f"{indent}<{k}>{_xml_text(v)}</{k}>\n" for k, v in fields)


def _local(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC).astimezone(_SWITCH_TZ) + timedelta(microseconds=us)


def _fs_encode(value: str) -> str:
    # mod_xml_cdr url-encodes every variable value; "/" and "," stay as they are (see fixtures).
    return quote(value, safe="/,")


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(value: str) -> str:
    return _xml_text(value).replace('"', "&quot;")
