"""Who may post a CDR: HTTP Basic (mod_xml_cdr ``cred``), bearer tokens, or anyone when unset."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from cdr_ingest.settings import IngestSettings
from cdrkit.settings import ConfigurationError, load
from tests.ingest.conftest import INCOMING, IngestFactory, published

XML = {"content-type": "text/xml"}
BASIC = "switch-a:s3cret:with:colons,switch-b:other"
TOKENS = "tok-one,tok-two"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {**XML, "authorization": f"Basic {token}"}


def _rejections(reason: str) -> float:
    value = REGISTRY.get_sample_value("cdrflow_ingest_auth_rejections_total", {"reason": reason})
    return value or 0.0


def _assert_401(resp: httpx.Response, *schemes: str) -> None:
    assert resp.status_code == 401, resp.text
    answer = resp.json()
    assert set(answer) == {"error", "detail"}
    assert answer["error"] == "unauthorized"
    challenge = resp.headers["www-authenticate"]
    for scheme in schemes:
        assert f'{scheme} realm="cdrflow"' in challenge


async def test_open_access_when_nothing_is_configured_and_a_warning_at_start(
    ingest: IngestFactory, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = (fixtures_dir / INCOMING).read_bytes()
    with caplog.at_level(logging.WARNING, logger="cdr_ingest.auth"):
        async with ingest() as (app, client):
            assert any("from anyone" in r.getMessage() for r in caplog.records)
            resp = await client.post("/v1/cdr", content=doc, headers=XML)
            assert resp.status_code == 200, resp.text
            [envelope] = await published(app, 1)
    assert envelope.source.user is None


async def test_basic_credentials_of_mod_xml_cdr_cred(
    ingest: IngestFactory, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = (fixtures_dir / INCOMING).read_bytes()
    with caplog.at_level(logging.INFO, logger="cdr_ingest.auth"):
        async with ingest(basic_auth=BASIC) as (app, client):
            assert not any(
                r.levelno >= logging.WARNING for r in caplog.records if r.name == "cdr_ingest.auth"
            )
            missing, invalid = _rejections("missing"), _rejections("invalid")

            # curl with auth-scheme "any" first posts without credentials and needs a challenge.
            _assert_401(await client.post("/v1/cdr", content=doc, headers=XML), "Basic")
            assert _rejections("missing") == missing + 1
            wrong = await client.post("/v1/cdr", content=doc, headers=_basic("switch-a", "s3cret"))
            _assert_401(wrong, "Basic")
            # Another user's password is not this user's.
            _assert_401(
                await client.post("/v1/cdr", content=doc, headers=_basic("switch-a", "other")),
                "Basic",
            )
            _assert_401(
                await client.post("/v1/cdr", content=doc, headers=_basic("nobody", "other")),
                "Basic",
            )
            assert _rejections("invalid") == invalid + 3

            ok_a = await client.post(
                "/v1/cdr", content=doc, headers=_basic("switch-a", "s3cret:with:colons")
            )
            ok_b = await client.post("/v1/cdr", content=doc, headers=_basic("switch-b", "other"))
            assert (ok_a.status_code, ok_b.status_code) == (200, 200), ok_a.text
            envelopes = await published(app, 2)
            # Health and metrics stay open: only the ingest POST routes need credentials.
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
    assert sorted(e.source.user or "" for e in envelopes) == ["switch-a", "switch-b"]


async def test_bearer_tokens(ingest: IngestFactory, fixtures_dir: Path) -> None:
    doc = (fixtures_dir / INCOMING).read_bytes()
    async with ingest(tokens=TOKENS) as (app, client):
        malformed = _rejections("malformed")
        _assert_401(
            await client.post(
                "/v1/cdr", content=doc, headers={**XML, "authorization": "Bearer tok-three"}
            ),
            "Bearer",
        )
        # Basic is not configured, so Basic credentials are not accepted.
        _assert_401(
            await client.post("/v1/cdr", content=doc, headers=_basic("tok-one", "x")), "Bearer"
        )
        _assert_401(
            await client.post("/v1/cdr", content=doc, headers={**XML, "authorization": "Bearer"}),
            "Bearer",
        )
        assert _rejections("malformed") == malformed + 1
        resp = await client.post(
            "/v1/cdr", content=doc, headers={**XML, "authorization": "Bearer tok-two"}
        )
        assert resp.status_code == 200, resp.text
        [envelope] = await published(app, 1)
    # The token itself never reaches the envelope: its position in INGEST_TOKENS does.
    assert envelope.source.user == "token#2"


async def test_basic_and_bearer_together(ingest: IngestFactory, fixtures_dir: Path) -> None:
    doc = (fixtures_dir / INCOMING).read_bytes()
    async with ingest(basic_auth=BASIC, tokens=TOKENS) as (_app, client):
        _assert_401(await client.post("/v1/cdr", content=doc, headers=XML), "Basic", "Bearer")
        _assert_401(
            await client.post(
                "/v1/cdr", content=doc, headers={**XML, "authorization": "Basic !!!"}
            ),
            "Basic",
        )
        for headers in (
            _basic("switch-b", "other"),
            {**XML, "authorization": "bearer tok-one"},  # scheme names are case-insensitive
        ):
            resp = await client.post("/v1/cdr", content=doc, headers=headers)
            assert resp.status_code == 200, resp.text


async def test_a_refused_post_is_never_published(ingest: IngestFactory, fixtures_dir: Path) -> None:
    doc = (fixtures_dir / INCOMING).read_bytes()
    async with ingest(tokens=TOKENS) as (app, client):
        for _ in range(3):
            resp = await client.post("/v1/cdr", content=doc, headers=XML)
            assert resp.status_code == 401
        ok = await client.post(
            "/v1/cdr", content=doc, headers={**XML, "authorization": "Bearer tok-one"}
        )
        assert ok.status_code == 200
        envelopes = await published(app, 1)
    assert [e.id for e in envelopes] == [ok.json()["id"]]


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("basic_auth", "switch-a-topsecret", "INGEST_BASIC_AUTH"),
        ("basic_auth", "a:topsecret,,b:x", "INGEST_BASIC_AUTH"),
        ("basic_auth", ":topsecret", "INGEST_BASIC_AUTH"),
        ("tokens", "topsecret,,x", "INGEST_TOKENS"),
    ],
)
def test_malformed_credentials_stop_start_up_without_echoing_them(
    tmp_path: Path, field: str, value: str, variable: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        load(IngestSettings, data_dir=tmp_path, **{field: value})
    message = str(info.value)
    assert variable in message
    assert "topsecret" not in message


def test_credentials_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_BASIC_AUTH", "fs1:pw1")
    monkeypatch.setenv("INGEST_TOKENS", "t1")
    settings = load(IngestSettings, data_dir=tmp_path)
    assert settings.basic_auth is not None
    assert settings.basic_auth.get_secret_value() == "fs1:pw1"
    assert "pw1" not in repr(settings)
    monkeypatch.setenv("INGEST_BASIC_AUTH", "  ")  # blank means unset
    assert load(IngestSettings, data_dir=tmp_path).basic_auth is None
