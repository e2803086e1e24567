"""Resolution by age, fallbacks, HTTP Range on both tiers, content types, downloads, tokens."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.recordings.conftest import Rec, RecFactory, audio_bytes, cdr, new_call_id, old, young

SIZE = 200_000


async def _local_call(rec: Rec, start: datetime, name: str = "x.wav") -> tuple[str, bytes]:
    call_id = new_call_id()
    data = audio_bytes(SIZE)
    rel = f"acme.example.com/archive/2026/Nov/25/{call_id}-{name}"
    rec.write(rel, data)
    await rec.index(cdr(call_id, start=start, recording_path=rec.switch_path(rel)))
    return call_id, data


async def _s3_call(rec: Rec, start: datetime, name: str = "x.wav") -> tuple[str, bytes]:
    call_id = new_call_id()
    data = audio_bytes(SIZE)
    rel = f"acme.example.com/archive/2026/Nov/25/{call_id}-{name}"
    rec.put_s3(rec.key("acme.example.com", start, rel), data)
    await rec.index(cdr(call_id, start=start, recording_path=rec.switch_path(rel)))
    return call_id, data


async def test_young_call_is_served_from_the_local_root(rec: Rec) -> None:
    call_id, data = await _local_call(rec, young())
    meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
    assert meta["location"] == "local"
    assert meta["fallback"] is False
    assert meta["size"] == SIZE
    assert meta["format"] == "wav"
    assert meta["state"] == "pending"
    assert 3000 < meta["age_s"] < 4000
    r = await rec.client.get(meta["audio_url"])
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["x-recording-location"] == "local"


async def test_old_call_is_served_from_s3(rec: Rec) -> None:
    start = old()
    call_id, data = await _s3_call(rec, start)
    meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
    assert meta["location"] == "s3"
    assert meta["fallback"] is False
    assert meta["s3_key"].startswith(f"recordings/acme.example.com/{start:%Y/%m/%d}/")
    r = await rec.client.get(f"/v1/recordings/{call_id}/audio")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["x-recording-location"] == "s3"


async def test_young_call_missing_locally_falls_back_to_s3(rec: Rec) -> None:
    call_id, data = await _s3_call(rec, young())
    meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
    assert (meta["location"], meta["fallback"]) == ("s3", True)
    assert (await rec.client.get(f"/v1/recordings/{call_id}/audio")).content == data


async def test_old_call_not_yet_archived_falls_back_to_local(rec: Rec) -> None:
    call_id, data = await _local_call(rec, old())
    meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
    assert (meta["location"], meta["fallback"]) == ("local", True)
    assert (await rec.client.get(f"/v1/recordings/{call_id}/audio")).content == data


async def test_neither_tier_is_a_404_with_a_sentence(rec: Rec) -> None:
    call_id = new_call_id()
    await rec.index(cdr(call_id, recording_path=rec.switch_path("acme/gone.wav")))
    for path in (f"/v1/recordings/{call_id}", f"/v1/recordings/{call_id}/audio"):
        r = await rec.client.get(path)
        assert r.status_code == 404
        body = r.json()
        assert body["error"] == "not_found"
        assert "found neither under the local root" in body["detail"]
        assert "nor in s3://" in body["detail"]
    r = await rec.client.get(f"/v1/recordings/{new_call_id()}")
    assert r.status_code == 404
    assert "no recording is indexed" in r.json()["detail"]


@pytest.mark.parametrize("tier", ["local", "s3"])
async def test_range_requests(rec: Rec, tier: str) -> None:
    call_id, data = await (_local_call(rec, young()) if tier == "local" else _s3_call(rec, old()))
    url = f"/v1/recordings/{call_id}/audio"
    cases = {
        "bytes=0-99": (0, 99),  # first bytes
        "bytes=1000-1999": (1000, 1999),  # middle
        "bytes=-500": (SIZE - 500, SIZE - 1),  # suffix
        "bytes=150000-": (150000, SIZE - 1),  # open-ended
        f"bytes=199990-{SIZE + 5000}": (199990, SIZE - 1),  # past the end: clamped
        f"bytes=-{SIZE * 2}": (0, SIZE - 1),  # suffix longer than the file
    }
    for header, (first, last) in cases.items():
        r = await rec.client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{SIZE}", header
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.headers["x-recording-location"] == tier
        assert r.content == data[first : last + 1], header
    for header in (f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"):
        r = await rec.client.get(url, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{SIZE}"
        assert r.json()["error"] == "range_not_satisfiable"
    # not a single byte range: ignored, the whole file (RFC 9110 allows it)
    for header in ("bytes=0-1,5-9", "items=0-5", "bytes=9-3"):
        r = await rec.client.get(url, headers={"Range": header})
        assert r.status_code == 200, header
        assert r.content == data


@pytest.mark.parametrize("tier", ["local", "s3"])
async def test_browser_audio_fetch_sequence(rec: Rec, tier: str) -> None:
    """What <audio> does: HEAD sometimes, `Range: bytes=0-`, then seeks with open ranges."""
    call_id, data = await (_local_call(rec, young()) if tier == "local" else _s3_call(rec, old()))
    url = f"/v1/recordings/{call_id}/audio"
    head = await rec.client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(SIZE)
    assert head.headers["accept-ranges"] == "bytes"
    assert head.content == b""
    first = await rec.client.get(url, headers={"Range": "bytes=0-"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    assert first.content == data
    seek = await rec.client.get(url, headers={"Range": "bytes=123456-"})
    assert seek.status_code == 206
    assert seek.headers["content-range"] == f"bytes 123456-{SIZE - 1}/{SIZE}"
    assert seek.content == data[123456:]
    ranged_head = await rec.client.head(url, headers={"Range": "bytes=-100"})
    assert ranged_head.status_code == 206
    assert ranged_head.headers["content-length"] == "100"


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("a.wav", "audio/wav"),
        ("b.mp3", "audio/mpeg"),
        ("c.ogg", "audio/ogg"),
        ("d.MP3", "audio/mpeg"),
    ],
)
async def test_content_type_and_download(rec: Rec, name: str, ctype: str) -> None:
    call_id, data = await _local_call(rec, young(), name)
    r = await rec.client.get(f"/v1/recordings/{call_id}/audio")
    assert r.headers["content-type"] == ctype
    assert "content-disposition" not in r.headers
    r = await rec.client.get(f"/v1/recordings/{call_id}/audio", params={"download": "1"})
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{call_id}-{name}"')


async def test_s3_redirect_to_a_presigned_url(recordings: RecFactory) -> None:
    async with recordings(s3_redirect=True, s3_presign_expires_s=60) as rec:
        call_id, data = await _s3_call(rec, old(), "r.mp3")
        r = await rec.client.get(f"/v1/recordings/{call_id}/audio", params={"download": "1"})
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith(rec.moto.endpoint_url)
        assert "X-Amz-Expires=60" in location
        # The presigned URL works without any credentials, with Range, and says attachment.
        async with httpx.AsyncClient() as plain:
            got = await plain.get(location, headers={"Range": "bytes=10-19"})
        assert got.status_code == 206
        assert got.content == data[10:20]
        assert got.headers["content-type"] == "audio/mpeg"
        assert got.headers["content-disposition"].startswith("attachment")
        # A young call found locally is still streamed, never redirected.
        local_id, local = await _local_call(rec, young())
        r = await rec.client.get(f"/v1/recordings/{local_id}/audio")
        assert (r.status_code, r.content) == (200, local)


async def test_tokens(recordings: RecFactory) -> None:
    first, second = "read-token-0123456789", "admin-token-0123456789"
    async with recordings(api_tokens=f"read:{first},admin:{second}") as rec:
        call_id, data = await _local_call(rec, young())
        url = f"/v1/recordings/{call_id}/audio"
        r = await rec.client.get(url)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith('Bearer realm="cdrflow"')
        r = await rec.client.get(url, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        r = await rec.client.get(url, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert r.status_code == 401
        r = await rec.client.get(f"/v1/recordings/{call_id}")
        assert r.status_code == 401
        for token in (first, second):
            r = await rec.client.get(url, headers={"Authorization": f"Bearer {token}"})
            assert (r.status_code, r.content) == (200, data)
        # <audio src> cannot send a header: the RFC 6750 query parameter works too
        r = await rec.client.get(url, params={"access_token": second})
        assert (r.status_code, r.content) == (200, data)
        r = await rec.client.get(url, params={"access_token": "nope"})
        assert r.status_code == 401
        # health and metrics stay open
        assert (await rec.client.get("/healthz")).status_code == 200
        assert (await rec.client.get("/metrics")).status_code == 200


async def test_the_default_root_is_made_and_a_configured_one_only_reported(
    recordings: RecFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded default (the data dir's recordings/, `make run`) is made at start, so a
    first run warns of nothing; a configured root that is missing (an unmounted share) is
    reported and left alone."""
    caplog.set_level(logging.WARNING, logger="cdr_recordings")
    async with recordings(local_root=None):
        assert (tmp_path / "data" / "recordings").is_dir()
    assert not [r for r in caplog.records if "local root" in r.getMessage()]
    missing = tmp_path / "share" / "recordings"
    async with recordings(local_root=missing):
        assert not missing.exists()
    assert [r.getMessage() for r in caplog.records if "local root" in r.getMessage()] == [
        f"recordings: the local root {missing} is not a directory (yet)"
    ]
