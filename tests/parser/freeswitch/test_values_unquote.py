"""``values._unquote`` (binascii's quoted-printable decoder where it is exact, issue 15's eighth
round) against ``urllib.parse.unquote`` (what the mapping has always meant by it) and against the
loop it replaced, on every kind of ASCII value: valid and broken escapes, a "%" at the end, raw
"=" and line breaks, escaped UTF-8 and invalid UTF-8."""

from __future__ import annotations

import random
from urllib.parse import unquote

from cdr_parser.freeswitch.values import _HEX_TO_CHAR, _unquote


def _loop(value: str) -> str:
    """The decoder before the eighth round, for ASCII values."""
    parts = value.split("%")
    out = [parts[0]]
    high = False
    for part in parts[1:]:
        char = _HEX_TO_CHAR.get(part[:2])
        if char is None:
            out.append("%")
            out.append(part)
        else:
            high = high or char > "\x7f"
            out.append(char)
            out.append(part[2:])
    text = "".join(out)
    return text.encode("latin-1").decode("utf-8", "replace") if high else text


CASES = [
    "OpenBTS%204.0TRUNK%20Build%20Date%20Aug%2019%202014",
    "sofia/internal/1000%40192.168.6.32",
    "caf%C3%A9",
    "caf%c3%a9",
    "%FF%FE",
    "%e2%82",
    "100%",
    "100%2",
    "%%41",
    "%zz%41",
    "%4g",
    "a=b%20c",
    "=41%41",
    "line%0Abreak",
    "raw\nline%20",
    "raw\r%20",
    "%3D%0D%0A",
    "under_score%20",
    "tab\t%20 trailing ",
    "%20%20",
    "",
    "%",
]


def test_unquote_is_urllibs_on_known_values() -> None:
    for value in CASES:
        assert _unquote(value) == unquote(value) == _loop(value), value


def test_unquote_is_urllibs_on_random_ascii_values() -> None:
    rng = random.Random(15)
    alphabet = "%%%%0123456789abcdefABCDEFgz=_ \t\n\r~/"
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        assert _unquote(value) == unquote(value) == _loop(value), repr(value)
    for _ in range(5_000):  # escaped bytes, valid UTF-8 or not
        value = "".join(
            rng.choice("%x=") + f"{rng.randrange(256):02X}" for _ in range(rng.randrange(6))
        )
        assert _unquote(value) == unquote(value) == _loop(value), repr(value)
