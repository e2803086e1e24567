"""The recording path inside a CDR is untrusted: whatever it says, nothing outside the local root
is ever read. Refusals are kept in the index with their reason and answered 403."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cdr_recordings.paths import RecordingRefused, relative_path
from tests.recordings.conftest import SWITCH_ROOT, Rec, cdr, new_call_id

SECRET = b"root:x:0:0:secret outside the recordings root\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.wav"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def test_mapping_of_switch_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok = {
        f"{SWITCH_ROOT}/acme/archive/2026/Nov/25/u.wav": "acme/archive/2026/Nov/25/u.wav",
        f"{SWITCH_ROOT}//acme/./u.wav": "acme/u.wav",
        f"{root}/acme/u.wav": "acme/u.wav",  # already the local path
        "acme/u.mp3": "acme/u.mp3",  # relative: relative to the local root
    }
    for given, expected in ok.items():
        assert relative_path(given, SWITCH_ROOT, root) == expected
    refused = [
        "",
        f"{SWITCH_ROOT}/../../../etc/passwd",
        f"{SWITCH_ROOT}/acme/%2e%2e/%2E%2E/etc/passwd",
        "../outside.wav",
        "acme/..\\..\\x.wav",
        "/etc/passwd",
        "/var/lib/freeswitch/recordings-other/u.wav",
        SWITCH_ROOT,
        f"{SWITCH_ROOT}/acme/",
        "acme/u\x00.wav",
    ]
    for given in refused:
        with pytest.raises(RecordingRefused):
            relative_path(given, SWITCH_ROOT, root)


async def test_traversal_attempts_are_refused_and_logged(
    rec: Rec, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a symlink inside the root that points outside it
    (rec.root / "acme").mkdir()
    (rec.root / "acme" / "link.wav").symlink_to(outside)
    (rec.root / "dirlink").symlink_to(outside.parent, target_is_directory=True)
    attempts = {
        "dotdot": f"{SWITCH_ROOT}/../../../{outside}",
        "absolute elsewhere": str(outside),
        "relative dotdot": f"../outside/{outside.name}",
        "encoded dots": f"{SWITCH_ROOT}/%2e%2e/%2e%2e/{outside}",
        "symlink file": f"{SWITCH_ROOT}/acme/link.wav",
        "symlink dir": f"{SWITCH_ROOT}/dirlink/{outside.name}",
    }
    ids = {what: new_call_id() for what in attempts}
    with caplog.at_level(logging.WARNING, logger="cdr_recordings"):
        await rec.index(*(cdr(ids[w], recording_path=p) for w, p in attempts.items()))
    for what, call_id in ids.items():
        row = await rec.row(call_id)
        assert row.state == "refused", what
        assert row.error, what
        assert row.relative_path is None, what
        for path in (f"/v1/recordings/{call_id}", f"/v1/recordings/{call_id}/audio"):
            r = await rec.client.get(path)
            assert r.status_code == 403, what
            assert r.json()["error"] == "recording_refused"
            assert SECRET not in r.content
    assert sum("recording refused" in m for m in caplog.messages) >= len(attempts)


async def test_symlink_planted_after_indexing_is_refused_when_served(
    rec: Rec, outside: Path
) -> None:
    call_id = new_call_id()
    await rec.index(cdr(call_id, recording_path=f"{SWITCH_ROOT}/acme/later.wav"))
    (rec.root / "acme").mkdir()
    (rec.root / "acme" / "later.wav").symlink_to(outside)
    for path in (f"/v1/recordings/{call_id}", f"/v1/recordings/{call_id}/audio"):
        r = await rec.client.get(path)
        assert r.status_code == 403
        assert "resolves outside the local root" in r.json()["detail"]


async def test_url_encoded_call_ids_do_not_traverse(rec: Rec) -> None:
    for path in (
        "/v1/recordings/..%2F..%2F..%2Fetc%2Fpasswd/audio",
        "/v1/recordings/%2e%2e/audio",
        "/v1/recordings/..%252F..%252Fetc%252Fpasswd/audio",
        "/v1/recordings/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    ):
        r = await rec.client.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()
        assert b"root:" not in r.content
