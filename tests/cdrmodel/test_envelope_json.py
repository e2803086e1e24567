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
