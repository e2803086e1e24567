"""Decoding FreeSWITCH values: percent-encoded variables, stripped text, numbers.

mod_xml_cdr and mod_json_cdr percent-encode variable values (``url-encode`` is on by default);
caller-profile fields and attributes are written as they are.
"""

from __future__ import annotations

from binascii import a2b_qp
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["as_int", "clean", "decoded", "positive", "var"]


def var(raw: Mapping[str, Any], name: str) -> str | None:
    """A variable's value, decoded; the hot path of the mapping (called ~50 times per CDR)."""
    value = raw.get(name)
    if value is None:  # most lookups: the variable is absent
        return None
    if value.__class__ is not str:
        return decoded(value)
    if "%" in value:
        value = _unquote(value)
    return value.strip() or None


def decoded(value: Any) -> str | None:
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
    # Quoted-printable is the same escape with "=" for "%", and binascii decodes it in C (as
    # ingest's form_unquote): exact when the value has no "=" or line break of its own and
    # every "%" starts a valid escape, which the length proves (each one shrinks it by two).
    # ~21,000 -> ~12,000 instructions for a value of six escapes (issue 15, eighth round).
    # binascii takes an ASCII str as it is: no bytes copy first (issue 15, ninth round).
    if "=" not in value and "\n" not in value and "\r" not in value:
        unescaped = a2b_qp(value.replace("%", "="))
        if len(value) - len(unescaped) == 2 * value.count("%"):
            return unescaped.decode("utf-8", "replace")
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


def clean(value: Any) -> str | None:
    """A caller-profile or attribute value (never percent-encoded), stripped; empty → ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def as_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def positive(value: Any) -> int | None:
    number = as_int(value)
    return number if number is not None and number > 0 else None
