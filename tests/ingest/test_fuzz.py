"""Thousands of mutated real CDRs posted through the ingest app: every answer is a 200 or a 4xx
with ``{"error", "detail"}``, never a 5xx (which would make a switch retry a CDR forever)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import serving
from tests.ingest.conftest import ALL_CDRS, ingest_app
from tests.ingest.test_api import ENCODINGS

EXAMPLES = 3000
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Fragments that reach the dangerous corners: entities, escapes, broken encodings, boundaries.
SPICY = [
    b"<!DOCTYPE cdr [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
    b'<!DOCTYPE cdr [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    b"&x;",
    b"&b;",
    b"%",
    b"%zz",
    b"%C3",
    b"&",
    b"=",
    b"+",
    b"cdr=",
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
    b"]]>",
    b"<![CDATA[",
    b"\r\n--cdrflow-b0undary\r\n",
    b"--cdrflow-b0undary--",
    b'Content-Disposition: form-data; name="cdr"\r\n\r\n',
    b"{",
    b"[",
    b'"',
    b"\\u0000",
    b"\\ud800",
    b"<?xml version='1.0' encoding='ISO-8859-1'?>",
    b"<?xml version='1.0' encoding='UTF-16'?>",
]

# Call ids that cannot be a bus key as they are (JSON escapes of surrogates and NUL, blanks, huge).
ODD_IDS = [b"\\ud800", b"\\udfff\\ud800", b"\\u0000", b"\x01", b"", b"  ", b"x" * 4000, b"%00"]

CONTENT_TYPES = [
    "text/xml",
    "application/xml",
    "application/json",
    "text/json",
    "application/x-www-form-urlencoded",
    "application/x-www-form-base64-encoded",
    "application/x-www-form-plaintext",
    "multipart/form-data; boundary=cdrflow-b0undary",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="other"',
    "application/json; charset=utf-16",
    "text/plain",
    "",
    "text/xml; charset=latin-1",
]


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        pos = draw(st.integers(0, size))
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate", "uuid"]))
        if op == "uuid":  # the call id (the bus key) becomes something strange
            fragment = draw(st.sampled_from(ODD_IDS) | st.binary(max_size=12))
            count = draw(st.integers(0, 3))  # 0: every occurrence
            data = _UUID.sub(fragment.replace(b"\\", b"\\\\"), data, count=count)  # literal
        elif op == "truncate":
            data = data[:pos]
        elif op == "flip" and pos < size:
            flipped = data[pos] ^ draw(st.integers(1, 255))
            data = data[:pos] + bytes([flipped]) + data[pos + 1 :]
        elif op == "insert":
            fragment = draw(st.sampled_from(SPICY) | st.binary(min_size=1, max_size=12))
            data = data[:pos] + fragment + data[pos:]
        elif op == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 64)) :]
        elif op == "duplicate":
            data = data[:pos] + data[pos : pos + draw(st.integers(1, 256))] * 2 + data[pos:]
    return data


@st.composite
def posts(draw: st.DrawFn, documents: dict[str, bytes]) -> tuple[bytes, str, str | None]:
    doc = documents[draw(st.sampled_from(sorted(documents)))]
    if draw(st.booleans()):
        doc = draw(_mutated(doc))
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    body, ctype = ENCODINGS[encoding](doc)
    if draw(st.integers(0, 3)) == 0:  # header swap: another (or a broken) content type
        ctype = draw(st.sampled_from(CONTENT_TYPES))
    if draw(st.booleans()):
        body = draw(_mutated(body))
    uuid = draw(st.none() | st.sampled_from(["a_", "a_x", "abc", "%00", "a_" * 50]))
    return body, ctype, uuid


def test_mutated_cdrs_never_get_a_5xx(tmp_path: Path, fixtures_dir: Path) -> None:
    documents = {name: (fixtures_dir / name).read_bytes() for name in ALL_CDRS}
    app = ingest_app(tmp_path, max_body_bytes=64 * 1024)
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    client: httpx.AsyncClient = loop.run_until_complete(stack.enter_async_context(serving(app)))
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(posts(documents))
    def post_one(post: tuple[bytes, str, str | None]) -> None:
        body, ctype, uuid = post
        params = {"uuid": uuid} if uuid is not None else {}
        headers = {"content-type": ctype} if ctype else {}
        resp = loop.run_until_complete(
            client.post("/v1/cdr", content=body, headers=headers, params=params)
        )
        statuses[resp.status_code] += 1
        answer = resp.json()
        if resp.status_code == 200:
            # A mutation can leave the document (and call id) unchanged: the second copy of a
            # document ingest acknowledged already is answered "duplicate".
            assert answer["status"] in ("accepted", "duplicate")
            assert answer["id"]
        else:
            assert 400 <= resp.status_code < 500, (resp.status_code, answer, ctype, body[:200])
            assert set(answer) == {"error", "detail"}, answer
            assert isinstance(answer["detail"], str)
            assert answer["detail"]

    started = time.monotonic()
    try:
        post_one()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
    elapsed = time.monotonic() - started
    print(f"\n{sum(statuses.values())} posts in {elapsed:.1f}s: {dict(sorted(statuses.items()))}")
    # The mutations must reach both sides, or the test proves little.
    assert statuses[200] > 50
    assert sum(n for code, n in statuses.items() if code != 200) > 500
