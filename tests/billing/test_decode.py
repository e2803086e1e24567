"""Billing's decode (``cdr_billing.decode.decode_facts``, issue 15 ninth round) against what it
replaces, ``facts(CDR.from_json(value))``: the same facts (the same times, zone and fold) or the
same ``ValidationError`` for random messages and mutations of them, times of every form around
the one the fast path reads included."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cdr_billing import decode
from cdr_billing.decode import decode_facts, facts
from cdrmodel import CDR
from cdrmodel.record import Direction, Disposition, Leg

ALPHABET = ["a", "Z", "0", "7", " ", '"', "\\", "\n", "é", "中", "\ud800", "😀", "٣"]


def text(rng: random.Random, most: int = 8, alphabet: list[str] = ALPHABET) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))


def plain(rng: random.Random) -> str:
    return text(rng, 8, ALPHABET[:-3] + ALPHABET[-2:])  # no lone surrogate: CDR(...) takes it


def a_time(rng: random.Random) -> str:
    """A time written in the fast path's form, valid or not as a date, or near that form."""
    y = rng.choice([rng.randint(0, 9999), 2024, 2026, 1, 9999, 0, 1900, 2000, 2100])
    mo, d = rng.choice([rng.randint(0, 13), 2, 12, 1]), rng.choice([rng.randint(0, 32), 29, 30])
    h, mi, s = rng.randint(0, 25), rng.randint(0, 60), rng.randint(0, 60)
    frac = rng.choice(["", "", f".{rng.randint(0, 10**6 - 1):06d}", "." + "1" * rng.randint(1, 8)])
    zone = rng.choice(["Z", "Z", "+00:00", "-00:00", "+01:00", "-03:00", "z", "", "+0000"])
    core = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
    if rng.random() < 0.1:
        core = rng.choice([core.replace("T", " "), core.replace("T", "t"), core[:10], " " + core])
        core = rng.choice([core, core.replace("2", "٢"), core + "\n", core[:-1]])
    return core


def a_document(rng: random.Random, i: int) -> dict[str, Any]:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        seconds=rng.randint(-(10**8), 10**8), microseconds=rng.choice([0, rng.randint(0, 10**6)])
    )
    answer = start + timedelta(seconds=rng.randint(0, 30), microseconds=rng.randint(0, 10**6))
    end = answer + timedelta(seconds=rng.randint(0, 4000))
    cdr = CDR(
        call_id=f"c{i}" + plain(rng),
        source=rng.choice(["freeswitch", "call.event", plain(rng)]),
        leg=rng.choice([None, *Leg]),
        direction=rng.choice([None, *Direction]),
        caller_number=rng.choice([None, "", "11999998888", plain(rng)]),
        callee_number=rng.choice([None, "", "1133334444", "IMSI901550000000072", plain(rng)]),
        account=rng.choice([None, "", "1000", plain(rng)]),
        start_time=start,
        answer_time=rng.choice([None, answer]),
        end_time=rng.choice([None, end, end]),
        duration_s=rng.choice([None, 0, rng.randint(0, 10**6)]),
        billsec_s=rng.choice([None, 0, rng.randint(0, 10**6)]),
        disposition=rng.choice([None, *Disposition]),
        sip_code=rng.choice([None, 200, 487]),
        extra=rng.choice([{}, {"a": plain(rng), "n": [1, {"x": None}]}]),
        received_at=rng.choice([None, end]),
    )
    doc: dict[str, Any] = json.loads(cdr.to_json())
    for name in ("caller_number", "callee_number", "account", "tenant"):  # any text, surrogates too
        if rng.random() < 0.2:
            doc[name] = text(rng)
    return doc


MUTATIONS: list[tuple[str, list[Any]]] = [
    ("call_id", ["", "x" * 128, "x" * 129, 5, None]),
    ("source", [None, 1, ""]),
    ("duration_s", [-1, "5", 5.0, 5.5, True, 2**70]),
    ("billsec_s", [-1, "0", 0.0, False]),
    ("sip_code", [99, 700, "200", 200.0]),
    ("pdd_ms", [-5, "x"]),
    ("disposition", ["weird", "ANSWERED", 1, ""]),
    ("leg", ["c", "A"]),
    ("direction", ["up"]),
    ("extra", [[], "x", None, {"k": float("inf")}]),
    ("schema_version", ["1", 1.0, None, 2]),
    ("caller_number", [5, ["1"]]),
    ("unknown_field", [1, None]),
]


def mutated(rng: random.Random, doc: dict[str, Any]) -> bytes | str:
    doc = dict(doc)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        what = rng.random()
        if what < 0.5:  # a time, in or near the fast path's form, or of another type
            name = rng.choice(decode.TIMES)
            doc[name] = rng.choice([a_time(rng)] * 6 + [None, 1_700_000_000, 1.5e9, "", "now"])
        elif what < 0.6:
            doc.pop(rng.choice([*decode.TIMES, "call_id", "source", "extra"]), None)
        else:
            name, values = rng.choice(MUTATIONS)
            doc[name] = rng.choice(values)
    value = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    kind = rng.random()
    if kind < 0.03:
        value = value[: rng.randint(0, len(value))]
    elif kind < 0.05:
        return value.encode("utf-8", "surrogatepass")
    elif kind < 0.07:
        return b"\xef\xbb\xbf" + value.encode("utf-8", "surrogatepass")
    return value.encode("utf-8", "surrogatepass") if rng.random() < 0.8 else value


def outcome(function: Any, value: bytes | str) -> Any:
    try:
        got = function(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)  # ctx: exception objects
        return ("refused", exc.error_count(), errors, exc.title, str(exc))
    times = (got.start_time, got.answer_time, got.end_time)
    return (
        got,
        [None if t is None else (type(t), t.tzinfo, t.fold, t.timetuple()) for t in times],
    )


def test_decode_gives_what_cdr_from_json_gives() -> None:
    """8,000 messages: the fixtures' form, times of every form and validity, fields of wrong
    types and ranges, fields missing or unknown, broken JSON; the fast path reads most of the
    valid ones (it is not only the fallback that is compared)."""
    rng = random.Random(15)
    fast = accepted = refused = 0
    for i in range(8000):
        value = mutated(rng, a_document(rng, i))
        new = outcome(decode_facts, value)
        assert new == outcome(lambda v: facts(CDR.from_json(v)), value), value
        if new[0] == "refused":
            refused += 1
            continue
        accepted += 1
        try:
            decode._FAST.validate_json(value)
            fast += 1
        except ValidationError:
            pass
    assert refused > 1500, refused
    assert accepted > 2500, accepted
    assert fast > 0.7 * accepted, (fast, accepted)


def test_every_time_of_the_fast_form_reads_as_cdr_reads_it() -> None:
    """Times that match the fast path's form (valid dates or not, leap days, the ends of the
    calendar), in each of the four fields: the same verdict and value as ``CDR``'s."""
    rng = random.Random(16)
    base = a_document(rng, 0)
    base.update(answer_time=None, end_time=None, received_at=None)
    read = 0
    for i in range(6000):
        y = rng.choice([rng.randint(0, 9999), 0, 1, 4, 100, 400, 1900, 2000, 2024, 9999])
        mo, d = rng.randint(0, 13), rng.choice([rng.randint(0, 31), 28, 29, 30, 31])
        h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        frac = rng.choice(["", "." + str(rng.randint(0, 999_999)).zfill(rng.randint(1, 6))])
        zone = rng.choice(["Z", "+00:00"])
        doc = {**base, "call_id": f"t{i}"}
        doc[decode.TIMES[i % 4]] = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
        value = json.dumps(doc).encode()
        new = outcome(decode_facts, value)
        assert new == outcome(lambda v: facts(CDR.from_json(v)), value), value
        read += new[0] != "refused"
    assert 2000 < read < 5900


def test_a_validator_method_on_the_model_refuses_the_copy() -> None:
    """The copy carries CDR's fields only: a validator method added to CDR later would be lost,
    and the copy would accept what CDR refuses. Building it then fails instead."""
    from pydantic import model_validator

    from cdr_billing.decode import _fast_model

    class Checked(CDR):
        @model_validator(mode="after")
        def _ends_after_start(self) -> Checked:
            return self

    _fast_model(CDR)  # CDR itself has none
    with pytest.raises(RuntimeError, match="validator"):
        _fast_model(Checked)
