"""Drawing one mock call: who called whom, through which carrier and tenant, how it ended and
when. Everything is drawn from ``rng``, so a seeded ``random.Random`` gives the same calls every
run; :mod:`cdrflow.mock.render` turns a call into the document the switch would post."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["Call", "Carrier", "Outcome", "Tenant", "caller_host"]


@dataclass(frozen=True, slots=True)
class Carrier:
    gateway: str  # the sofia gateway name
    host: str  # its SIP proxy


@dataclass(frozen=True, slots=True)
class Tenant:
    domain: str
    domain_uuid: str
    area_code: str  # the tenant's DIDs live in this area
    extensions: tuple[str, ...]
    fusionpbx: bool  # FusionPBX-hosted tenants get call_direction, domain_uuid, record_path…


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: str  # what cdrflow should map it to (documentation only)
    hangup_cause: str
    q850: int
    sip_code: int | None


_CARRIERS: Final = (
    Carrier("vivo-sip", "sip.vivo-trunk.example.net"),
    Carrier("embratel-gw1", "200.244.10.17"),
    Carrier("algar-sbc", "sbc.algar.example.com"),
    Carrier("tim-ip", "189.40.12.9"),
    Carrier("voxbone-br", "br.voxbone.example.com"),
)
_CARRIER_WEIGHTS: Final = (35, 25, 15, 15, 10)

_TENANTS: Final = (
    Tenant(
        "acme.pbx.example.com",
        "2b3c1d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d",
        "11",
        ("1001", "1002", "1003", "1004", "1010", "1020"),
        True,
    ),
    Tenant(
        "pizzaria-roma.pbx.example.com",
        "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "21",
        ("2001", "2002", "2003"),
        True,
    ),
    Tenant(
        "clinica-sorriso.pbx.example.com",
        "0a1b2c3d-4e5f-4607-9819-2a3b4c5d6e7f",
        "31",
        ("3001", "3002", "3003", "3004"),
        False,
    ),
    Tenant(
        "transportes-sul.pbx.example.com",
        "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
        "51",
        ("4001", "4002"),
        False,
    ),
)
_TENANT_WEIGHTS: Final = (40, 25, 20, 15)

_SWITCHES: Final = ("fs-sp-01", "fs-sp-02", "fs-rj-01")
_AREA_CODES: Final = ("11", "21", "31", "41", "47", "51", "61", "71", "81", "85", "91")
_NAMES: Final = (
    "João Silva",
    "Maria Souza",
    "Ana Paula Lima",
    "Carlos Pereira",
    "Fernanda Costa",
    "Luís Gonçalves",
    "Recepção",
    "Suporte Técnico",
)
_USER_AGENTS: Final = (
    "Yealink SIP-T46S 66.86.0.15",
    "Grandstream GXP2170 1.0.11.23",
    "Zoiper rv2.10.20.4",
    "Linphone/5.2.1 (belle-sip/5.2.0)",
    "Cisco-SIPGateway/IOS-15.x",
    "MicroSIP/3.21.3",
)
_CODECS: Final = (("PCMA", 8000), ("PCMA", 8000), ("PCMU", 8000), ("G729", 8000), ("opus", 48000))

_ANSWERED: Final = Outcome("answered", "NORMAL_CLEARING", 16, 200)
# A small carrier-connected PBX on a good day: ASR around 55 %, failures that are everyday
# (busy, no answer, cancelled, unallocated number: SIP codes the stats service expects), and a
# rare carrier trouble (5xx, 603, 480...) so the demo raises a handful of alerts an hour, not one
# per carrier and bucket (tests/cdrflow/test_mock_demo.py).
_OUTCOMES: Final[tuple[tuple[Outcome, int], ...]] = (
    (_ANSWERED, 550),
    (Outcome("no_answer", "NO_ANSWER", 19, None), 110),  # rang out: we cancelled
    (Outcome("no_answer", "NORMAL_CLEARING", 16, None), 20),  # caller hung up while ringing
    (Outcome("no_answer", "ALLOTTED_TIMEOUT", 602, None), 10),
    (Outcome("busy", "USER_BUSY", 17, 486), 100),
    (Outcome("cancelled", "ORIGINATOR_CANCEL", 487, 487), 100),
    (Outcome("failed", "UNALLOCATED_NUMBER", 1, 404), 35),
    # Carrier trouble: about 3 calls in 1000.
    (Outcome("failed", "NORMAL_TEMPORARY_FAILURE", 41, 503), 1),
    (Outcome("failed", "NETWORK_OUT_OF_ORDER", 38, 502), 1),
    (Outcome("no_answer", "NO_USER_RESPONSE", 18, 408), 1),
)

# The switch's local zone: *_stamp variables are written in it (São Paulo, UTC-3, no DST).


@dataclass(slots=True)
class Call:
    kind: str  # outbound | inbound | internal
    b_leg: bool
    outcome: Outcome
    tenant: Tenant
    carrier: Carrier
    extension: str
    other_extension: str
    caller_number: str
    caller_name: str
    callee_number: str
    a_uuid: str
    b_uuid: str
    leg_uuid: str
    switchname: str
    core_uuid: str
    sip_call_id: str
    user_agent: str
    codec: str
    rate: int
    start_us: int
    progress_us: int  # 0 = never
    progress_media_us: int
    answer_us: int
    end_us: int
    recorded: bool

    @classmethod
    def draw(cls, rng: random.Random, now: datetime) -> Call:
        tenant = rng.choices(_TENANTS, _TENANT_WEIGHTS)[0]
        carrier = rng.choices(_CARRIERS, _CARRIER_WEIGHTS)[0]
        outcome = rng.choices([o for o, _ in _OUTCOMES], [w for _, w in _OUTCOMES])[0]
        kind = rng.choices(("outbound", "inbound", "internal"), (55, 35, 10))[0]
        b_leg = rng.random() < 0.15
        extension, other_extension = rng.sample(tenant.extensions, 2)
        external = _e164(rng)
        if kind == "outbound":
            caller_number, callee_number = extension, external
        elif kind == "inbound":
            caller_number = external
            callee_number = f"55{tenant.area_code}3{rng.randrange(10**7):07d}"  # a DID
        else:
            caller_number, callee_number = extension, other_extension
        codec, rate = rng.choice(_CODECS)

        # Timeline, in microseconds; the CDR is posted seconds after hangup.
        end = now - timedelta(seconds=rng.uniform(0.5, 60.0))
        end_us = _to_us(end)
        pdd_us = int(rng.uniform(0.3, 4.0) * 1e6)
        disposition = outcome.disposition
        if disposition == "answered":
            ring_us = pdd_us + int(rng.uniform(1.0, 20.0) * 1e6)
            # Call lengths are roughly log-normal: many short calls, a long tail.
            talk_us = int(min(max(rng.lognormvariate(4.2, 1.1), 1.0), 3600.0) * 1e6)
        elif disposition == "no_answer":
            ring_us = rng.choice((30, 45, 60)) * 1_000_000 + rng.randrange(400_000)
            if outcome.hangup_cause == "NORMAL_CLEARING":
                ring_us = pdd_us + int(rng.uniform(2.0, 25.0) * 1e6)
            talk_us = 0
        elif disposition == "cancelled":
            ring_us, talk_us = pdd_us + int(rng.uniform(1.0, 25.0) * 1e6), 0
        elif disposition == "busy":
            ring_us, talk_us = int(rng.uniform(0.3, 2.5) * 1e6), 0
        else:
            ring_us, talk_us = int(rng.uniform(0.05, 3.0) * 1e6), 0
        start_us = end_us - ring_us - talk_us
        answered = disposition == "answered"
        reached_progress = disposition in ("answered", "no_answer", "cancelled")
        progress_us = start_us + pdd_us if reached_progress else 0
        early_media = reached_progress and kind != "internal" and rng.random() < 0.6
        progress_media_us = start_us + pdd_us + rng.randrange(20_000) if early_media else 0

        a_uuid, b_uuid = _uuid(rng), _uuid(rng)
        return cls(
            kind=kind,
            b_leg=b_leg,
            outcome=outcome,
            tenant=tenant,
            carrier=carrier,
            extension=extension,
            other_extension=other_extension,
            caller_number=caller_number,
            caller_name=rng.choice(_NAMES) if kind != "inbound" else caller_number,
            callee_number=callee_number,
            a_uuid=a_uuid,
            b_uuid=b_uuid,
            leg_uuid=b_uuid if b_leg else a_uuid,
            switchname=rng.choice(_SWITCHES),
            core_uuid=_uuid(rng),
            sip_call_id=f"{rng.getrandbits(64):016x}@{caller_host(kind, tenant, carrier)}",
            user_agent=rng.choice(_USER_AGENTS),
            codec=codec,
            rate=rate,
            start_us=start_us,
            progress_us=progress_us,
            progress_media_us=progress_media_us,
            answer_us=start_us + ring_us if answered else 0,
            end_us=end_us,
            recorded=answered and tenant.fusionpbx and rng.random() < 0.5,
        )


def caller_host(kind: str, tenant: Tenant, carrier: Carrier) -> str:
    return carrier.host if kind == "inbound" else tenant.domain


def _e164(rng: random.Random) -> str:
    area = rng.choice(_AREA_CODES)
    if rng.random() < 0.7:  # mobile: 9 + 8 digits
        return f"55{area}9{rng.randrange(10**8):08d}"
    return f"55{area}{rng.randrange(2, 6)}{rng.randrange(10**7):07d}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _to_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
