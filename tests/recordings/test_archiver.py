"""The archiver moves old recordings to S3, verifies them, and only then removes the local copy;
it resumes after a crash and never deletes a file whose S3 copy is not verified."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cdr_recordings.archive import Archiver
from tests.e2e.conftest import wait_for
from tests.metrics import sample
from tests.recordings.conftest import Rec, RecFactory, audio_bytes, cdr, new_call_id, old, young

MiB = 1024 * 1024
PART = 5 * MiB
TENANT = "acme.example.com"


@pytest.fixture
async def rec(recordings: RecFactory) -> AsyncIterator[Rec]:
    async with recordings(archive_part_bytes=PART) as running:
        yield running


def _archiver(rec: Rec) -> Archiver:
    archiver = rec.component.archiver
    assert archiver is not None
    return archiver


async def _call(
    rec: Rec, size: int, start: datetime, name: str = "rec.wav"
) -> tuple[str, bytes, Path, str]:
    """A recording on the local root, indexed: (call id, bytes, local path, S3 key)."""
    call_id = new_call_id()
    data = audio_bytes(size)
    rel = f"{TENANT}/archive/2026/Nov/25/{call_id}-{name}"
    path = rec.write(rel, data)
    await rec.index(cdr(call_id, start=start, recording_path=rec.switch_path(rel), tenant=TENANT))
    return call_id, data, path, rec.key(TENANT, start, rel)


def _object(rec: Rec, key: str) -> tuple[bytes, dict[str, Any]]:
    got = rec.s3().get_object(Bucket=rec.bucket, Key=key)
    return got["Body"].read(), got


def _objects(rec: Rec) -> list[str]:
    listed = rec.s3().list_objects_v2(Bucket=rec.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def _unfinished_uploads(rec: Rec) -> list[str]:
    return [u["Key"] for u in rec.s3().list_multipart_uploads(Bucket=rec.bucket).get("Uploads", [])]


async def test_archiver_moves_and_verifies(rec: Rec) -> None:
    small_id, small, small_path, small_key = await _call(rec, 300_000, old(10))
    big_id, big, big_path, big_key = await _call(rec, 2 * PART + 123_457, old(6))
    young_id, _, young_path, young_key = await _call(rec, 1000, young())

    uploaded = sample("cdrflow_recordings_archive_files_total", outcome="uploaded")
    sent = sample("cdrflow_recordings_archive_bytes_total")
    run = await _archiver(rec).run_once()
    assert (run.uploaded, run.removed, run.failed) == (2, 2, 0)
    assert run.bytes == len(small) + len(big)

    # Checked with a client of our own: content, size, sha256 metadata, ETag.
    for key, data, parts in ((small_key, small, 1), (big_key, big, 3)):
        body, obj = _object(rec, key)
        assert body == data
        assert obj["ContentLength"] == len(data)
        assert obj["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert obj["ContentType"] == "audio/wav"
        assert obj["ETag"].strip('"').endswith("-3") == (parts == 3)
    assert sorted(_objects(rec)) == sorted([small_key, big_key])
    assert _unfinished_uploads(rec) == []
    assert not small_path.exists()
    assert not big_path.exists()
    assert young_path.exists()  # young: stays local
    assert young_key not in _objects(rec)
    for call_id, data in ((small_id, small), (big_id, big)):
        row = await rec.row(call_id)
        assert row.state == "local_removed"
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.archived_at is not None
        meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
        assert (meta["location"], meta["state"], meta["fallback"]) == ("s3", "local_removed", False)
        r = await rec.client.get(f"/v1/recordings/{call_id}/audio", headers={"Range": "bytes=-7"})
        assert (r.status_code, r.content) == (206, data[-7:])
    assert (await rec.row(young_id)).state == "pending"

    # Idempotent: a second run has nothing to do.
    again = await _archiver(rec).run_once()
    assert (again.uploaded, again.already_in_s3, again.failed) == (0, 0, 0)
    assert sample("cdrflow_recordings_archive_files_total", outcome="uploaded") == uploaded + 2
    assert sample("cdrflow_recordings_archive_bytes_total") == sent + len(small) + len(big)


async def test_keep_local(recordings: RecFactory) -> None:
    async with recordings(keep_local=True, archive_part_bytes=PART) as rec:
        call_id, data, path, key = await _call(rec, 100_000, old())
        run = await _archiver(rec).run_once()
        assert (run.uploaded, run.removed) == (1, 0)
        assert path.read_bytes() == data
        assert _object(rec, key)[0] == data
        assert (await rec.row(call_id)).state == "verified"
        # old: served from S3 by the rule, even though a local copy is kept
        meta = (await rec.client.get(f"/v1/recordings/{call_id}")).json()
        assert meta["location"] == "s3"
        again = await _archiver(rec).run_once()
        assert again.handled == 0


async def test_resume_after_a_crash_mid_multipart_upload(rec: Rec) -> None:
    """State as a crash leaves it: `uploading`, a multipart upload with its first part in S3."""
    call_id, data, path, key = await _call(rec, 2 * PART + 1000, old())
    s3 = rec.s3()
    created = s3.create_multipart_upload(
        Bucket=rec.bucket,
        Key=key,
        Metadata={"sha256": hashlib.sha256(data).hexdigest()},
        ContentType="audio/wav",
    )
    upload_id = created["UploadId"]
    s3.upload_part(Bucket=rec.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data[:PART])
    # and a stray upload of the same key whose id never reached the index
    s3.create_multipart_upload(Bucket=rec.bucket, Key=key)
    await rec.component.service.repo.set_uploading(call_id, upload_id, s3_key=key)
    assert path.exists()

    run = await _archiver(rec).run_once()
    assert (run.uploaded, run.removed, run.failed) == (1, 1, 0)
    assert run.bytes == len(data) - PART  # part 1 was kept, not sent again
    assert _objects(rec) == [key]  # exactly one object
    assert _unfinished_uploads(rec) == []
    assert _object(rec, key)[0] == data
    assert not path.exists()
    assert (await rec.row(call_id)).state == "local_removed"


async def test_killed_archiver_then_rerun(rec: Rec) -> None:
    """Cancel a run while it uploads; the local file stays until a later run verified it."""
    call_id, data, path, key = await _call(rec, 3 * PART, old())
    archiver = _archiver(rec)
    task = asyncio.create_task(archiver.run_once())

    async def uploading() -> bool:
        return task.done() or (await rec.row(call_id)).state == "uploading"

    await wait_for(uploading, timeout=20, what="the upload to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await rec.row(call_id)
    if row.state != "local_removed":
        assert path.read_bytes() == data  # never deleted before verification
    run = await archiver.run_once()
    assert run.failed == 0
    assert _objects(rec) == [key]
    assert _object(rec, key)[0] == data
    assert _unfinished_uploads(rec) == []
    assert not path.exists()
    assert (await rec.row(call_id)).state == "local_removed"


async def test_unverified_copies_never_cost_the_local_file(rec: Rec) -> None:
    # 1. the index says verified, but the object is gone: uploaded again before deleting
    gone_id, gone, gone_path, gone_key = await _call(rec, 50_000, old())
    await rec.component.service.repo.update(gone_id, state="verified", s3_key=gone_key)
    # 2. an object of the right size and a forged sha256 but other bytes: the ETag tells
    _, bad, bad_path, bad_key = await _call(rec, 60_000, old())
    rec.s3().put_object(
        Bucket=rec.bucket,
        Key=bad_key,
        Body=audio_bytes(len(bad)),
        Metadata={"sha256": hashlib.sha256(bad).hexdigest()},
    )
    run = await _archiver(rec).run_once()
    assert (run.uploaded, run.failed) == (2, 0)
    for key, data, path in ((gone_key, gone, gone_path), (bad_key, bad, bad_path)):
        assert _object(rec, key)[0] == data
        assert not path.exists()


async def test_missing_files(rec: Rec) -> None:
    # gone locally but in S3 already (the other leg's row archived it): nothing to do but note it
    moved_id, moved, moved_path, moved_key = await _call(rec, 10_000, old())
    rec.put_s3(moved_key, moved)
    moved_path.unlink()
    # gone everywhere: a failure with its reason, retried up to the limit
    lost_id, _, lost_path, _ = await _call(rec, 10_000, old())
    lost_path.unlink()
    run = await _archiver(rec).run_once()
    assert (run.already_in_s3, run.failed) == (1, 1)
    assert (await rec.row(moved_id)).state == "local_removed"
    lost = await rec.row(lost_id)
    assert lost.state == "pending"
    assert lost.attempts == 1
    assert "neither under the local root" in lost.error
    r = await rec.client.get(f"/v1/recordings/{lost_id}")
    assert r.status_code == 404


async def test_two_legs_naming_one_file(rec: Rec) -> None:
    start = old()
    data = audio_bytes(40_000)
    rel = f"{TENANT}/archive/shared.wav"
    path = rec.write(rel, data)
    a, b = new_call_id(), new_call_id()
    await rec.index(
        *(cdr(c, start=start, recording_path=rec.switch_path(rel), tenant=TENANT) for c in (a, b))
    )
    run = await _archiver(rec).run_once()
    assert run.failed == 0
    assert run.uploaded == 1
    assert _objects(rec) == [rec.key(TENANT, start, rel)]
    assert not path.exists()
    for call_id in (a, b):
        r = await rec.client.get(f"/v1/recordings/{call_id}/audio")
        assert r.content == data


async def test_index_and_archive_on_postgresql(recordings: RecFactory, pg_url: str) -> None:
    async with recordings(database_url=pg_url, archive_part_bytes=PART) as rec:
        call_id, data, path, key = await _call(rec, PART + 10, old())
        await rec.index(cdr(call_id, start=old(), recording_path="ignored.wav"))  # redelivery
        run = await _archiver(rec).run_once()
        assert (run.uploaded, run.removed, run.failed) == (1, 1, 0)
        assert _object(rec, key)[0] == data
        assert not path.exists()
        assert (await rec.row(call_id)).state == "local_removed"


async def test_two_files_of_one_name_keep_both_recordings(rec: Rec) -> None:
    """Two different recordings of one tenant and day whose files share a name (other
    directories) map to one S3 key: the second must not overwrite the first's archived copy
    (whose local file is gone by then), and each call must keep serving its own audio."""
    start = old()
    first_data, second_data = audio_bytes(30_000), audio_bytes(31_000)
    first_rel = f"{TENANT}/1001/rec.wav"
    second_rel = f"{TENANT}/1002/rec.wav"
    first_path = rec.write(first_rel, first_data)
    first_id = new_call_id()
    await rec.index(
        cdr(first_id, start=start, recording_path=rec.switch_path(first_rel), tenant=TENANT)
    )
    run = await _archiver(rec).run_once()
    assert (run.uploaded, run.removed, run.failed) == (1, 1, 0)
    assert not first_path.exists()

    second_path = rec.write(second_rel, second_data)
    second_id = new_call_id()
    await rec.index(
        cdr(second_id, start=start, recording_path=rec.switch_path(second_rel), tenant=TENANT)
    )
    run = await _archiver(rec).run_once()
    assert (run.uploaded, run.failed) == (1, 0)
    assert not second_path.exists()
    assert len(_objects(rec)) == 2
    for call_id, data in ((first_id, first_data), (second_id, second_data)):
        r = await rec.client.get(f"/v1/recordings/{call_id}/audio")
        assert (r.status_code, r.content) == (200, data)
