"""``inline_envelope_json`` writes exactly what ``RawEnvelope.to_json`` writes (ingest's hot path
builds the JSON without the model, issue 15)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cdrmodel import Origin, PayloadKind, RawEnvelope
from cdrmodel.envelope import inline_envelope_json

# Every character class JSON escapes or might: quotes, backslash, each control character, DEL,
# the line and paragraph separators, non-ASCII, astral plane, a slash, XML as switches send it.
TEXTS = [
    "",
    'a "quoted" \\ back/slash',
    "".join(chr(c) for c in range(0x20)),
    "\x7f \u0085 \u2028 \u2029 é ü 中文 😀 \ufeff",
    '<?xml version="1.0"?>\n<cdr core-uuid="x">\t<variables><uuid>u</uuid></variables></cdr>\r\n',
    "".join(chr(c) for c in range(0x20, 0x800)),
]

ORIGINS = [
    Origin(),
    Origin(remote_addr="127.0.0.1"),
    Origin(remote_addr="::1", user='sw"itch\\é'),
    Origin(remote_addr="10.0.0.1", node="fs1", user="u"),
    Origin(node="n\n"),
]

TIMES = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 120000, tzinfo=UTC),
    datetime(2026, 6, 1, 0, 0, 0, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))),
    datetime.now(UTC),
]


def _both(**fields: object) -> tuple[bytes, bytes]:
    model = RawEnvelope(**fields).to_json()  # type: ignore[arg-type]
    return inline_envelope_json(**fields), model  # type: ignore[arg-type]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("call_id", [None, "26444af2-5f94-40b5-9578-824ce7c75ab8", 'c"\\é😀'])
@pytest.mark.parametrize("a_leg", [None, True, False])
def test_same_bytes_as_the_model(text: str, call_id: str | None, a_leg: bool | None) -> None:
    for origin, received_at, kind in itertools.product(ORIGINS, TIMES, PayloadKind):
        direct, model = _both(
            id="0123456789abcdef0123456789abcdef",
            kind=kind,
            received_at=received_at,
            source=origin,
            content_type="application/xml",
            call_id=call_id,
            a_leg=a_leg,
            payload=text,
            sha256="ab" * 32,
        )
        assert direct == model
        assert RawEnvelope.from_json(direct).to_json() == direct


def _envelope_texts() -> list[bytes | str]:
    good = RawEnvelope(
        id="e1",
        kind=PayloadKind.FREESWITCH_XML,
        received_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        source=Origin(remote_addr="10.0.0.1", node="fs1"),
        content_type="application/xml",
        call_id="c1",
        a_leg=True,
        payload="<cdr/>",
        sha256="0" * 64,
    ).to_json()
    text = good.decode()
    return [
        good,
        text,
        text.replace('"a_leg":true', '"a_leg":"yes"'),
        text.replace('"a_leg":true', '"a_leg":"maybe"'),
        text.replace('"freeswitch.xml"', '"nope"'),
        text.replace('"payload":"<cdr/>",', ""),
        text.replace('"payload":"<cdr/>"', '"payload_ref":"file:///x","payload":"<cdr/>"'),
        text.replace('"payload":"<cdr/>"', '"payload_ref":"file:///x"'),
        text.replace('"2026-01-02T03:04:05.000006Z"', '"2026-01-02 03:04:05"'),
        text.replace('"2026-01-02T03:04:05.000006Z"', "1767323045"),
        text.replace('"v":1', '"v":"1"'),
        text.replace('"v":1', '"v":1.5'),
        text.replace('"node":"fs1"', '"node":7'),
        text.replace('"id":"e1"', '"id":"e1","extra":1'),
        text[:-5],
        "[]",
        b"\xff",
        "",
    ]


def test_from_json_is_model_validate_json() -> None:
    # RawEnvelope.from_json calls the validator itself (issue 15, ninth round)
    from pydantic import ValidationError

    def refusal(exc: ValidationError) -> tuple[object, ...]:
        errors = [
            {**e, "ctx": {k: repr(v) for k, v in e.get("ctx", {}).items()}}
            for e in exc.errors(include_url=False)
        ]
        return ("refused", errors, exc.title, str(exc))

    outcomes = set()
    for text in _envelope_texts():
        try:
            want: object = RawEnvelope.model_validate_json(text)
        except ValidationError as exc:
            want = refusal(exc)
        try:
            got: object = RawEnvelope.from_json(text)
        except ValidationError as exc:
            got = refusal(exc)
        assert got == want, text
        assert type(got) is type(want)
        outcomes.add(type(got).__name__)
    assert outcomes == {"RawEnvelope", "tuple"}
