"""cdr_ingest.hot_path answers the hot POST routes exactly as the app's own routes do."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cdr_ingest.hot_path import HotPosts
from cdrmodel import Origin
from tests.e2e.conftest import serving
from tests.ingest.conftest import INCOMING, ingest_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FORM = "application/x-www-form-urlencoded"
UUID = "26444af2-5f94-40b5-9578-824ce7c75ab8"


def _doc() -> bytes:
    return (FIXTURES / INCOMING).read_bytes()


def _form(doc: bytes) -> bytes:
    return b"cdr=" + quote(doc, safe="").encode()


_EVENT = {
    "type": "call.end",
    "call_id": "hot-path-1",
    "start": "2026-01-01T10:00:00Z",
    "end": "2026-01-01T10:01:00Z",
}

# (method, url, body, headers): the same requests to both apps.
REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("POST", f"/v1/cdr?uuid=a_{UUID}", _form(_doc()), {"content-type": FORM}),
    ("POST", f"/v1/cdr?uuid={UUID}", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr?uuid=", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr?uuid=a_", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr?uuid=first&uuid=a_second", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr?%75uid=a_escaped&other=1", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr?uuid=x%00y", _form(_doc()), {"content-type": FORM}),
    ("POST", "/v1/cdr", _doc(), {"content-type": "text/xml"}),
    ("POST", "/v1/cdr", b"", {"content-type": FORM}),
    ("POST", "/v1/cdr", b"cdr=%3Cnot-xml", {"content-type": FORM}),
    ("POST", "/v1/cdr", b"cdr=%3Croot%2F%3E", {"content-type": FORM}),
    ("POST", "/v1/cdr", _doc(), {"content-type": "application/pdf"}),
    ("POST", "/v1/cdr", _doc(), {}),
    ("POST", "/v1/cdr", b"x" * 5000, {"content-type": FORM}),
    ("POST", "/v1/cdr/", _form(_doc()), {"content-type": FORM}),
    ("GET", "/v1/cdr", b"", {}),
    ("PUT", "/v1/cdr", b"", {}),
    ("POST", "/v1/events", json.dumps(_EVENT).encode(), {"content-type": "application/json"}),
    (
        "POST",
        "/v1/events",
        json.dumps([_EVENT, {"x": 1}]).encode(),
        {"content-type": "application/json"},
    ),
    ("POST", "/v1/events", b"[]", {"content-type": "application/json"}),
    ("POST", "/v1/events", b"{", {"content-type": "application/json"}),
    ("POST", "/v1/events", b"{}", {"content-type": "text/plain"}),
]

_VOLATILE = re.compile(r'"id":"[0-9a-f]{32}"')


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
    return (
        response.status_code,
        sorted(response.headers.items()),
        _VOLATILE.sub('"id":"-"', response.text),
    )


def _counted() -> dict[str, float]:
    """cdrflow_ingest_requests_total per label set (the registry is the process's: compared as
    differences)."""
    return {
        str(sorted(sample.labels.items())): sample.value
        for family in REGISTRY.collect()
        if family.name == "cdrflow_ingest_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def _answers(app: FastAPI, **auth: str) -> list[Any]:
    out: list[Any] = []
    before = _counted()
    async with serving(app) as client:
        for method, url, body, headers in REQUESTS:
            response = await client.request(method, url, content=body, headers={**headers, **auth})
            out.append(_answer(response))
    after = _counted()
    out.append({k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)})
    return out


def _without_hot_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not HotPosts]
    return app


@pytest.mark.parametrize("auth", [{}, {"authorization": "Basic bm86bm8="}])
async def test_the_same_answers_as_the_routes(tmp_path: Path, auth: dict[str, str]) -> None:
    settings: dict[str, Any] = {"max_body_bytes": 4096 + 1024 * 1024}
    if auth:
        settings["basic_auth"] = "switch:secret"
    hot = await _answers(ingest_app(tmp_path / "hot", **settings), **auth)
    routed = await _answers(_without_hot_path(ingest_app(tmp_path / "routed", **settings)), **auth)
    for request, a, b in zip([*REQUESTS, ("metrics",)], hot, routed, strict=True):
        assert a == b, request[:2]
    if not auth:
        assert [a[0] for a in hot[:3]] == [200, 200, 200]


async def test_the_hot_path_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = ingest_app(tmp_path)
    assert sum(m.cls is HotPosts for m in app.user_middleware) == 1
    assert app.user_middleware[-1].cls is HotPosts  # innermost: every other middleware applies
    taken: list[str] = []
    original = HotPosts.__call__

    async def spy(self: HotPosts, scope: Any, receive: Any, send: Any) -> None:
        taken.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(HotPosts, "__call__", spy)
    async with serving(app) as client:
        response = await client.post(
            f"/v1/cdr?uuid=a_{UUID}", content=_form(_doc()), headers={"content-type": FORM}
        )
    assert response.status_code == 200
    assert taken == ["/v1/cdr"]


@pytest.mark.parametrize(
    "content",
    [
        {"id": "0" * 32, "call_id": UUID, "status": "accepted"},
        {"id": "0" * 32, "call_id": None, "status": "duplicate"},
        {"id": "0" * 32, "call_id": 'c"\\é😀\u2028\x01', "status": "accepted"},
    ],
)
def test_answer_response_is_json_response(content: dict[str, Any]) -> None:
    from fastapi.responses import JSONResponse

    from cdr_ingest.api import AnswerResponse

    ours, theirs = AnswerResponse(content), JSONResponse(content)
    assert (ours.body, ours.raw_headers, ours.status_code) == (
        theirs.body,
        theirs.raw_headers,
        theirs.status_code,
    )


QUERIES = [
    b"",
    b"uuid=" + UUID.encode(),
    b"uuid=a_" + UUID.encode(),
    b"uuid=",
    b"uuid",
    b"uuid&uuid=x",
    b"uuid=x&uuid",
    b"uuid=first&uuid=a_second",
    b"other=1&uuid=u&x",
    b"&&uuid=u&&",
    b"uuid=a=b",
    b"=uuid&uuid2=x&UUID=y",
    b"uuid=x;uuid=y",
    b"uuid=caf\xc3\xa9\xff",
    b"%75uid=a_escaped&other=1",
    b"uuid=x%00y",
    b"uuid=a+b",
    b"uu+id=a",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_param_is_query_params(query: bytes) -> None:
    from starlette.datastructures import QueryParams

    from cdr_ingest.api import query_param

    assert query_param(query, "uuid") == QueryParams(query).get("uuid")


def test_origins_are_shared_and_bounded() -> None:
    from cdr_ingest import api

    first = api.origin_of("10.0.0.1", "switch")
    assert first == Origin(remote_addr="10.0.0.1", user="switch")
    assert api.origin_of("10.0.0.1", "switch") is first
    assert api.origin_of("10.0.0.1", None) == Origin(remote_addr="10.0.0.1")
    for i in range(api._ORIGINS_MAX + 5):
        assert api.origin_of(f"10.1.{i // 256}.{i % 256}", None).remote_addr is not None
    assert len(api._ORIGINS) <= api._ORIGINS_MAX


def test_accepted_answer_is_the_json_response_of_its_dict() -> None:
    """``AnswerResponse.accepted`` (its body written directly) against ``JSONResponse`` of the
    dict the route answered with before, over random ids, call ids (None, ASCII, non-ASCII,
    quotes, backslashes, controls, U+2028, astral characters, lone surrogates) and statuses."""
    import random

    from fastapi.responses import JSONResponse

    from cdr_ingest.api import AnswerResponse

    rng = random.Random(15)
    alphabet = 'aZ09-_ "\\/é\u2028\u2029\x00\x01\x1f\x7f😀\ud800<>&'

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))

    for _ in range(5_000):
        envelope_id = rng.choice([f"{rng.getrandbits(128):032x}", text()])
        call_id = rng.choice([None, UUID, text()])
        status = rng.choice(["accepted", "duplicate", text()])
        content = {"id": envelope_id, "call_id": call_id, "status": status}
        try:
            theirs = JSONResponse(content)
        except UnicodeEncodeError:
            with pytest.raises(UnicodeEncodeError):
                AnswerResponse.accepted(envelope_id, call_id, status)
            continue
        ours = AnswerResponse.accepted(envelope_id, call_id, status)
        assert (ours.body, ours.raw_headers, ours.status_code, ours.background) == (
            theirs.body,
            theirs.raw_headers,
            theirs.status_code,
            theirs.background,
        )
