"""The parser's per-CDR work on a FreeSWITCH XML document, in process, deterministic: the
seventh round's harness for the mapping (docs/performance.md, "The parser's mapping
(h7parser)"). Not part of ``make bench``.

The three XML fixtures of ``tests/fixtures/freeswitch`` (as the e2e bench sends them, moved to a
fixed instant), each with 20 sets of fixed uuids, as ingest's inline envelopes: a pool of 60
messages, cycled. Per CDR, what ``ParserService._handle_batch`` does for an inline XML envelope:
``RawEnvelope.from_json``, the raw row's check, ``outcome_of`` (parse, map, the call's length),
``cdr_row`` and its check, the raw row's call id, ``conference_link`` and ``CDR.to_json``.

* ``python -m bench.parser_mapping N``: that work for N CDRs (after a warm-up of the pool), for
  instruction counts: run it under ``PYTHONHASHSEED=0 valgrind --tool=callgrind
  --callgrind-out-file=/dev/null .venv/bin/python -m bench.parser_mapping N`` for N and 2N and
  take (I(2N) - I(N)) / N.
* ``python -m bench.parser_mapping --instr N [stage ...]``: each stage on its own (after a warm-up)
  on N and on 2N CDRs in ``bench.callgrind`` regions of one callgrind run, instructions per CDR.
* ``python -m bench.parser_mapping --split [rounds]``: ``time.thread_time`` per CDR of each
  stage over the pool (best and median of ``rounds``), and of the whole path.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from bench import callgrind
from bench.bench_e2e import templates
from cdr_parser.freeswitch import build as build_module
from cdr_parser.freeswitch.build import build
from cdr_parser.freeswitch.xml_cdr import XmlSource, map_xml, parse_xml
from cdr_parser.outcomes import conference_link, outcome_of
from cdr_parser.rows import CDR_TEXT, RAW_TEXT, cdr_row, raw_row, unstorable
from cdrmodel import CDR, Origin, PayloadKind, RawEnvelope
from cdrmodel.envelope import inline_envelope_json

NOW = 1_764_000_000  # the instant the fixtures are moved to (fixed: same input every run)
RECEIVED = datetime(2025, 11, 24, 16, 0, 0, 123456, tzinfo=UTC)
STORED = datetime(2025, 11, 24, 16, 0, 1, 654321, tzinfo=UTC)
SETS = 20
MAX_CALL_S = 7 * 86_400.0


def pool() -> list[bytes]:
    forms = [(unquote_plus(body[4:]), count) for body, count in templates(NOW)]
    out = []
    for k in range(SETS):
        for f, (template, count) in enumerate(forms):
            xml = template
            for j in range(count):
                u = str(uuid.UUID(int=(k * 1_000 + f * 100 + j + 1) * 0x1_0000_0001))
                xml = xml.replace(f"@@U{j}@@", u)
            first = str(uuid.UUID(int=(k * 1_000 + f * 100 + 1) * 0x1_0000_0001))
            out.append(
                inline_envelope_json(
                    id=uuid.UUID(int=k * 1_000 + f + 7).hex,
                    kind=PayloadKind.FREESWITCH_XML,
                    received_at=RECEIVED,
                    source=Origin(remote_addr="127.0.0.1"),
                    content_type="application/x-www-form-urlencoded",
                    call_id=first,
                    a_leg=None,
                    payload=xml,
                    sha256=hashlib.sha256(xml.encode()).hexdigest(),
                )
            )
    return out


def one(value: bytes) -> bytes:
    """One message through the parser's per-CDR path (an inline XML envelope)."""
    env = RawEnvelope.from_json(value)
    raw = raw_row(env, "", STORED)
    assert unstorable(raw, RAW_TEXT) is None
    cdr = outcome_of(env, None, MAX_CALL_S)
    assert isinstance(cdr, CDR)
    row = cdr_row(cdr, STORED)
    assert unstorable(row, CDR_TEXT) is None
    raw["call_id"] = cdr.call_id  # the checked row, as ParserService (ninth round)
    conference_link(cdr)
    return cdr.to_json()


def run(n: int) -> None:
    messages = pool()
    for value in messages:  # warm-up: every document once
        one(value)
    size = len(messages)
    for i in range(n):
        one(messages[i % size])


def _timed(fn: Callable[[], Any], rounds: int, count: int) -> tuple[float, float]:
    figures = []
    for _ in range(rounds):
        started = time.thread_time()
        fn()
        figures.append((time.thread_time() - started) / count * 1e6)
    return min(figures), statistics.median(figures)


def _inputs(
    messages: list[bytes],
) -> tuple[list[RawEnvelope], list[str], list[Any], list[dict[str, Any]]]:
    """The messages' envelopes, documents, parsed roots and the mapping's hints from each."""
    envs = [RawEnvelope.from_json(m) for m in messages]
    texts = [e.payload or "" for e in envs]
    roots = [parse_xml(t) for t in texts]
    hints = [
        {
            "received_at": e.received_at,
            "call_id_hint": e.call_id,
            "a_leg_hint": e.a_leg,
            "origin_host": e.source.node,
        }
        for e in envs
    ]
    return envs, texts, roots, hints


def split(rounds: int) -> None:
    messages = pool() * 10
    count = len(messages)
    envs, texts, roots, hints = _inputs(messages)
    sources = [XmlSource(r) for r in roots]
    # The fields build() gives the model (captured once, to time the model alone).
    captured: list[dict[str, Any]] = []
    real = build_module._cdr
    build_module._cdr = captured.append  # type: ignore[assignment]
    try:
        for s, h in zip(sources, hints, strict=True):
            build(s, stamp_tz=None, **h)
    finally:
        build_module._cdr = real
    cdrs = [map_xml(r, **h) for r, h in zip(roots, hints, strict=True)]  # type: ignore[arg-type]

    def whole() -> None:
        for m in messages:
            one(m)

    def build_without_model() -> None:
        build_module._cdr = len  # type: ignore[assignment]
        try:
            for s, h in zip(sources, hints, strict=True):
                build(s, stamp_tz=None, **h)
        finally:
            build_module._cdr = real

    def rows() -> None:
        for e, c in zip(envs, cdrs, strict=True):
            raw = raw_row(e, "", STORED)
            unstorable(raw, RAW_TEXT)
            unstorable(cdr_row(c, STORED), CDR_TEXT)
            raw["call_id"] = c.call_id
            conference_link(c)

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("envelope: RawEnvelope.from_json", lambda: [RawEnvelope.from_json(m) for m in messages]),
        ("parse: parse_xml (tree built and freed)", lambda: [parse_xml(t) for t in texts]),
        ("read: XmlSource", lambda: [XmlSource(r) for r in roots]),
        ("rules: build without the model", build_without_model),
        ("model: build._cdr(fields)", lambda: [real(dict(kw)) for kw in captured]),
        (
            "map: map_xml (read + rules + model)",
            lambda: [
                map_xml(r, **h)
                for r, h in zip(roots, hints, strict=True)  # type: ignore[arg-type]
            ],
        ),
        ("to_json: CDR.to_json", lambda: [c.to_json() for c in cdrs]),
        ("rows: raw_row, cdr_row, checks", rows),
        ("whole path (one())", whole),
    ]
    print(f"µs per CDR, time.thread_time, {count} CDRs a round, best / median of {rounds}")
    for name, fn in stages:
        fn()
        best, median = _timed(fn, rounds, count)
        print(f"  {name:45s} {best:7.2f} / {median:7.2f}")


def _stage_functions() -> list[tuple[str, Callable[[int], Any]]]:
    """Each stage as a function of a count n: that stage on n CDRs (the pool, cycled)."""
    messages = pool()
    size = len(messages)
    envs, texts, roots, hints = _inputs(messages)
    cdrs = [map_xml(r, **h) for r, h in zip(roots, hints, strict=True)]  # type: ignore[arg-type]
    # The fields build() gives the model (captured once, to time the model alone).
    captured: list[dict[str, Any]] = []
    real = build_module._cdr
    build_module._cdr = captured.append  # type: ignore[assignment]
    try:
        for r, h in zip(roots, hints, strict=True):
            build(XmlSource(r), stamp_tz=None, **h)
    finally:
        build_module._cdr = real

    def cycle(fn: Callable[[int], Any]) -> Callable[[int], None]:
        def go(n: int) -> None:
            for i in range(n):
                fn(i % size)

        return go

    def rules(i: int) -> None:
        build_module._cdr = len  # type: ignore[assignment]
        try:
            build(XmlSource(roots[i]), stamp_tz=None, **hints[i])
        finally:
            build_module._cdr = real

    def rows(i: int) -> None:
        e, c = envs[i], cdrs[i]
        raw = raw_row(e, "", STORED)
        unstorable(raw, RAW_TEXT)
        unstorable(cdr_row(c, STORED), CDR_TEXT)
        raw["call_id"] = c.call_id
        conference_link(c)

    return [
        ("whole", cycle(lambda i: one(messages[i]))),
        ("envelope", cycle(lambda i: RawEnvelope.from_json(messages[i]))),
        ("parse", cycle(lambda i: parse_xml(texts[i]))),
        ("read", cycle(lambda i: XmlSource(roots[i]))),
        ("read+rules", cycle(rules)),
        ("model", cycle(lambda i: real(dict(captured[i])))),
        ("map", cycle(lambda i: map_xml(roots[i], **hints[i]))),  # type: ignore[arg-type]
        ("to_json", cycle(lambda i: cdrs[i].to_json())),
        ("rows", cycle(rows)),
    ]


def instr_child(n: int, only: list[str]) -> None:
    import gc

    stages = [(name, fn) for name, fn in _stage_functions() if not only or name in only]
    for _, fn in stages:
        fn(60)  # warm: every document once through each stage
    gc.collect()
    callgrind.n_and_2n(stages, n)


def instr(n: int, only: list[str]) -> None:
    """Instructions per CDR of each stage, one callgrind run: (I(2n) - I(n)) / n."""
    counts = callgrind.count("-m", "bench.parser_mapping", "--instr-child", str(n), *only)
    print(f"callgrind, instructions per CDR, (I({2 * n}) - I({n})) / {n}")
    for name, per in callgrind.per_item(counts).items():
        print(f"  {name:12s} {per:12,.0f}   (I(n)/n {counts[f'{name}@{n}'] / n:12,.0f})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--instr-child"]:
        instr_child(int(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["--instr"]:
        instr(int(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["--split"]:
        split(int(sys.argv[2]) if len(sys.argv) > 2 else 15)
    else:
        run(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
