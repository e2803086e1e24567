"""CDRFLOW_API_TOKENS: who may read and change what, on every route of the all-in-one app."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cdrkit.auth import ApiTokens, Role, match_secret, parse_api_tokens
from cdrkit.redact import public_error
from cdrkit.settings import ConfigurationError, ServiceSettings, load
from tests.access.conftest import API_TOKENS, TOKENS, AllInOne, bearer

# (method, path, the least role that may call it)
ROUTES = [
    ("GET", "/v1/cdrs", "read"),
    ("GET", "/v1/cdrs.csv", "read"),
    ("GET", "/v1/cdrs/c-1", "read"),
    ("GET", "/v1/cdrs/c-1/raw", "read"),
    ("GET", "/v1/dead-letters", "read"),
    ("GET", "/v1/dead-letters/1", "read"),
    ("POST", "/v1/dead-letters/1/retry", "operate"),
    ("GET", "/v1/events/pending", "read"),
    ("GET", "/v1/tariffs", "read"),
    ("POST", "/v1/tariffs", "admin"),
    ("GET", "/v1/tariffs/default", "read"),
    ("PUT", "/v1/tariff-assignments/5511999990000", "admin"),
    ("GET", "/v1/charges/c-1", "read"),
    ("GET", "/v1/charges?subscriber=5511999990000", "read"),
    ("GET", "/v1/tariff-assignments/5511999990000", "read"),
    ("GET", "/console/whoami", "read"),
    ("POST", "/v1/charges/c-1/adjustments", "admin"),
    ("GET", "/v1/bills/5511999990000", "read"),
    ("GET", "/v1/buckets", "read"),
    ("GET", "/v1/alerts", "read"),
    ("DELETE", "/v1/alerts", "operate"),
    ("GET", "/v1/plugins", "read"),
    ("POST", "/v1/plugins/reload", "admin"),
    ("GET", "/v1/recordings/c-1", "read"),
    ("GET", "/v1/recordings/c-1/audio", "read"),
    ("GET", "/v1/spool", "read"),
]
ROLES = ["read", "operate", "admin"]


async def test_every_route_needs_its_role(allinone: AllInOne) -> None:
    async with allinone(api_tokens=API_TOKENS) as client:
        for method, path, least in ROUTES:
            body = {"json": {}} if method in ("POST", "PUT") else {}
            r = await client.request(method, path, **body)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == 'Bearer realm="cdrflow"'
            r = await client.request(
                method, path, headers={"Authorization": "Bearer not-a-token"}, **body
            )
            assert r.status_code == 401, (method, path)
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            for role in ROLES:
                r = await client.request(method, path, headers=bearer(role), **body)
                if ROLES.index(role) < ROLES.index(least):
                    assert r.status_code == 403, (method, path, role, r.text)
                    assert r.json()["error"] == "forbidden"
                else:
                    assert r.status_code not in (401, 403), (method, path, role, r.text)
        # The probes stay open.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


async def test_ingest_credentials_are_not_api_tokens(allinone: AllInOne) -> None:
    """A switch's token posts CDRs and reads nothing; an API token posts nothing."""
    switch = "switch-token-0123456789"
    async with allinone(api_tokens=API_TOKENS, tokens=switch) as client:
        r = await client.get("/v1/cdrs", headers={"Authorization": f"Bearer {switch}"})
        assert r.status_code == 401
        r = await client.post(
            "/v1/events", json={}, headers={"Authorization": f"Bearer {TOKENS['admin']}"}
        )
        assert r.status_code == 401
        r = await client.post("/v1/events", json=[], headers={"Authorization": f"Bearer {switch}"})
        assert r.status_code == 400  # past the credentials check: the empty list is refused


async def test_live_feed_takes_the_token_in_the_query(allinone: AllInOne) -> None:
    """EventSource and <audio src> cannot send a header: ?access_token= (RFC 6750 §2.3)."""
    async with allinone(api_tokens=API_TOKENS) as client:
        assert (await client.get("/v1/recordings/c-1/audio")).status_code == 401
        r = await client.get("/v1/recordings/c-1", params={"access_token": TOKENS["read"]})
        assert r.status_code == 404  # authorised; no such call
        r = await client.get("/v1/recordings/c-1", params={"access_token": "wrong"})
        assert r.status_code == 401
        # Only where a header cannot be sent: the CDR list ignores a query token.
        r = await client.get("/v1/cdrs", params={"access_token": TOKENS["read"]})
        assert r.status_code in (400, 401), r.text  # unknown parameter, or no token


async def test_a_write_leaves_one_audit_line_without_the_secret(
    allinone: AllInOne, caplog: pytest.LogCaptureFixture
) -> None:
    async with allinone(api_tokens=API_TOKENS) as client:
        with caplog.at_level(logging.INFO, logger="cdrflow.audit"):
            r = await client.put(
                "/v1/tariff-assignments/5511999990000",
                json={"tariff": "default"},
                headers=bearer("admin"),
            )
            assert r.status_code == 200, r.text
            await client.get("/v1/cdrs", headers=bearer("admin"))  # a read: no audit line
    lines = [r.getMessage() for r in caplog.records if r.name == "cdrflow.audit"]
    assert lines == [
        "audit: admin token#3 PUT /v1/tariff-assignments/{subscriber} subscriber='5511999990000'"
    ]
    assert not any(token in caplog.text for token in TOKENS.values())


async def test_open_without_tokens_and_warned_at_start(
    allinone: AllInOne, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cdrkit.auth"):
        async with allinone() as client:
            assert (await client.get("/v1/cdrs")).status_code == 200
            assert (await client.delete("/v1/alerts")).status_code == 200
    assert any("CDRFLOW_API_TOKENS" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("reader:abcdefghijklmnopqrstuv", "has the role 'reader'"),
        ("read:short-secret", "at least 16 characters"),
        ("read:abcdefghijklmnopqrstuv,", "entry 2 is not role:token"),
        ("admin:abcdefghijklmnopqrstuv,read:abcdefghijklmnopqrstuv", "repeats the token"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_no_secret(value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(ServiceSettings, api_tokens=value)
    message = str(caught.value)
    assert "CDRFLOW_API_TOKENS" in message
    assert problem in message
    assert "abcdefghijklmnopqrstuv" not in message
    assert "short-secret" not in message


def test_roles_are_ordered_and_every_token_is_compared() -> None:
    tokens = parse_api_tokens(API_TOKENS)
    assert isinstance(tokens, ApiTokens)
    principal = tokens.identify(TOKENS["operate"])
    assert principal is not None
    assert (principal.role, principal.position) == (Role.OPERATE, 2)
    assert Role.READ < Role.OPERATE < Role.ADMIN
    assert tokens.identify(TOKENS["operate"][:-1]) is None
    # The last entry wins the position only if it matches; all entries are looked at.
    assert match_secret(b"b", [b"a", b"b", b"c"]) == 2
    assert match_secret(b"", [b"a"]) is None


async def test_readyz_never_shows_sql_or_parameters(tmp_path: object) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO calls VALUES (:n)"), {"n": "+5511999990000"})
    except Exception as exc:
        shown = public_error(exc)
    finally:
        await engine.dispose()
    assert "OperationalError" in shown
    assert "5511999990000" not in shown
    assert "INSERT" not in shown


# Open on purpose: the probes, and the posts of switches, pullers and edge agents (which use the
# ingest credentials, never API tokens).
OPEN = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/readyz/consumers"),
    ("POST", "/v1/cdr"),
    ("POST", "/v1/events"),
    ("POST", "/v1/pexip/history"),
    ("POST", "/v1/pexip/events"),
    ("POST", "/v1/pexip/pulls"),
    ("POST", "/v1/edge/records"),
    ("POST", "/v1/edge/checkin"),
}


async def test_no_route_is_open_by_accident(allinone: AllInOne) -> None:
    """Every documented operation but the open ones needs a token: a route added without its
    role dependency fails here."""
    async with allinone(api_tokens=API_TOKENS) as client:
        doc = (await client.get("/openapi.json")).json()
        for path, item in doc["paths"].items():
            for method, op in item.items():
                key = (method.upper(), path)
                if key in OPEN:
                    assert not op.get("security"), key
                    continue
                assert op.get("security"), key
                url = path.replace("{", "").replace("}", "")
                r = await client.request(key[0], url)
                assert r.status_code == 401, (key, r.status_code)
