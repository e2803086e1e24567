"""A NUL (or a lone surrogate) in a path, a query or a body is a 4xx on every route, SQLite and
PostgreSQL alike: PostgreSQL refuses a NUL in text, and a query that carried one was a 500."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.access.conftest import AllInOne


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cdrflow.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def _operations(app: Any) -> list[tuple[str, str, list[str]]]:
    """(method, path template, query parameter names) of every documented operation."""
    return [
        (method.upper(), path, [p["name"] for p in op.get("parameters", []) if p["in"] == "query"])
        for path, item in app.openapi()["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


TARIFF: dict[str, Any] = {
    "name": "nul",
    "bands": [{"name": "all", "start": "00:00", "end": "00:00"}],
    "destinations": [{"prefix": "", "prices": {"all": "1"}}],
}


def _tariff(band: str = "all", destination: str = "") -> dict[str, Any]:
    """A valid tariff but for the names given: it reaches the database unless refused first."""
    return {
        **TARIFF,
        "bands": [{"name": band, "start": "00:00", "end": "00:00"}],
        "destinations": [{"prefix": "", "name": destination, "prices": {band: "1"}}],
    }


BODIES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/tariffs", _tariff(band="a\x00")),
    ("POST", "/v1/tariffs", _tariff(band="\ud800")),
    ("POST", "/v1/tariffs", _tariff(destination="Brasil\x00")),
    ("POST", "/v1/tariffs", _tariff(destination="\udfff")),
    ("PUT", "/v1/tariff-assignments/5511", {"tariff": "default\x00"}),
    ("POST", "/v1/charges/c-1/adjustments", {"amount": "1", "reason": "bad\x00reason"}),
]


async def test_a_nul_anywhere_is_a_4xx_on_every_route(
    allinone: AllInOne, database_url: str
) -> None:
    async with allinone(database_url=database_url) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        operations = _operations(app)
        assert len(operations) >= 20
        for method, template, query in operations:
            if "{" in template:
                await _expect_4xx(client, method, re.sub(r"\{[^}]+\}", "a%00b", template), json={})
            plain = re.sub(r"\{[^}]+\}", "x", template)
            for name in query:
                await _expect_4xx(client, method, plain, params={name: "a\x00b"}, json={})
        for method, path, body in BODIES:
            await _expect_4xx(client, method, path, json=body)


async def _expect_4xx(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> None:
    body = kw.pop("json", None)
    if method in ("POST", "PUT", "PATCH"):
        # json.dumps escapes a lone surrogate as \udfff: what a hostile client sends
        kw["content"] = json.dumps(body).encode()
        kw["headers"] = {"content-type": "application/json"}
    r = await client.request(method, path, **kw)
    assert r.status_code in (400, 404, 422), (method, path, kw, r.status_code, r.text)
    assert set(r.json()) >= {"error", "detail"}
