"""The archiver: local recordings older than ``RECORDINGS_LOCAL_DAYS`` go to S3.

Every ``RECORDINGS_ARCHIVE_INTERVAL_S`` it takes the due rows of the index (oldest first) and,
``RECORDINGS_ARCHIVE_CONCURRENCY`` files at a time, for each:

1. reads the local file once to hash it: sha256 of the whole file and the MD5 of each part;
2. marks the row ``uploading`` (with the multipart upload id once there is one);
3. uploads it: one ``PutObject`` up to ``RECORDINGS_ARCHIVE_PART_BYTES``, a multipart upload of
   such parts above; every request carries ``Content-MD5``, so S3 refuses a corrupted body, and
   the object carries ``x-amz-meta-sha256``;
4. verifies the object with a ``HeadObject``: its size, its sha256 metadata, and its ETag, which
   S3 computes from the bytes it stored (the MD5 of the body, or for a multipart object the MD5 of
   the parts' MD5s followed by ``-<parts>``), against the same values computed from the local
   file. An ETag that is not an MD5 (SSE-KMS, some S3 APIs) is checked by reading the object back
   and hashing it instead;
5. marks the row ``verified``, then (unless ``RECORDINGS_KEEP_LOCAL``) deletes the local file if
   it is unchanged since it was hashed and marks the row ``local_removed``.

Crash safety: the local file is deleted only in step 5, after a verification in the same pass
(a row found ``verified`` is verified again before its file goes). A run that finds a row
``uploading`` resumes its multipart upload: parts already in S3 whose size and MD5 match the local
bytes are kept, the rest are uploaded; an upload S3 no longer knows is started afresh. An object
already in S3 that matches the local file is not uploaded again; one at the key that belongs
to another recording (a file of the same name, tenant and day) is never overwritten: this call's
copy goes to ``…/<dd>/<call id>-<file>`` instead. Stray multipart uploads of the
key (a crash between creating one and recording its id) are aborted. The key is a function of the
row, so there is never more than one object per recording. Failures are counted per row
(``attempts``, ``error``); after ``RECORDINGS_ARCHIVE_MAX_ATTEMPTS`` the row is left alone.

Run it in one instance at a time (the deployments use one replica); two at once stay correct
(same key, verification before delete) but may upload a file twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row

from cdr_recordings.metrics import ARCHIVE_BYTES, ARCHIVE_FILES, ARCHIVE_RUNS, LOCAL_REMOVED
from cdr_recordings.models import LOCAL_REMOVED as LOCAL_REMOVED_STATE
from cdr_recordings.models import PENDING, UPLOADING, VERIFIED
from cdr_recordings.paths import content_type, key_segment, local_file, open_local
from cdr_recordings.repository import RecordingRepository
from cdr_recordings.s3 import S3Tier, S3Unavailable, is_missing
from cdr_recordings.settings import RecordingsSettings

log = logging.getLogger(__name__)

FIRST_RUN_DELAY_S = 30.0
_READ_CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """This recording cannot be archived right now (the reason is kept on its row)."""


@dataclass(frozen=True)
class Digest:
    """What the local file looked like when it was hashed."""

    size: int
    mtime_ns: int
    sha256: str
    part_bytes: int
    part_md5s: tuple[bytes, ...]  # one per part; a single part for a simple PUT

    @property
    def multipart(self) -> bool:
        return self.size > self.part_bytes

    @property
    def etag(self) -> str:
        if not self.multipart:
            return self.part_md5s[0].hex()
        combined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(self.part_md5s)}"


def digest_file(path: Path, part_bytes: int) -> Digest:
    """Hash the file in one pass: sha256 of it all, MD5 per part (blocking: run in a thread)."""
    fd = open_local(path)
    try:
        st = os.fstat(fd)
        whole = hashlib.sha256()
        md5s: list[bytes] = []
        part = hashlib.md5(usedforsecurity=False)
        in_part = 0
        with os.fdopen(os.dup(fd), "rb", buffering=0) as fh:
            while chunk := fh.read(min(_READ_CHUNK, part_bytes - in_part)):
                whole.update(chunk)
                part.update(chunk)
                in_part += len(chunk)
                if in_part == part_bytes:
                    md5s.append(part.digest())
                    part, in_part = hashlib.md5(usedforsecurity=False), 0
        if in_part or not md5s:
            md5s.append(part.digest())
    finally:
        os.close(fd)
    return Digest(st.st_size, st.st_mtime_ns, whole.hexdigest(), part_bytes, tuple(md5s))


def _read_part(path: Path, offset: int, length: int) -> bytes:
    fd = open_local(path)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _remove_if_unchanged(path: Path, digest: Digest) -> bool:
    """Delete the file if it still is what was hashed; False (kept) otherwise."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if st.st_size != digest.size or st.st_mtime_ns != digest.mtime_ns:
        return False
    os.unlink(path)
    return True


@dataclass
class ArchiveRun:
    uploaded: int = 0
    already_in_s3: int = 0
    removed: int = 0
    failed: int = 0
    bytes: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def handled(self) -> int:
        return self.uploaded + self.already_in_s3 + self.failed


class Archiver:
    def __init__(self, settings: RecordingsSettings, repo: RecordingRepository, s3: S3Tier) -> None:
        self.settings = settings
        self.repo = repo
        self.s3 = s3
        self.local_root = settings.effective_local_root
        self.last_run: datetime | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def run_once(self, now: datetime | None = None) -> ArchiveRun:
        """One pass over the due rows (at most ``RECORDINGS_ARCHIVE_BATCH``)."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.local_days)
        rows = await self.repo.due_for_archive(
            cutoff,
            keep_local=self.settings.keep_local,
            max_attempts=self.settings.archive_max_attempts,
            limit=self.settings.archive_batch,
        )
        run = ArchiveRun()
        self._locks.clear()  # runs never overlap; the locks of the last one are free
        gate = asyncio.Semaphore(self.settings.archive_concurrency)

        async def one(row: Row[Any]) -> None:
            async with gate:
                await self._one(row, run, now)

        await asyncio.gather(*(one(row) for row in rows))
        ARCHIVE_RUNS.labels("failed" if run.failed else "ok").inc()
        if rows:
            log.info(
                "archiver: %d uploaded (%d bytes), %d already in S3, %d local copies removed, "
                "%d failed",
                run.uploaded,
                run.bytes,
                run.already_in_s3,
                run.removed,
                run.failed,
            )
        self.last_run = now
        return run

    async def run_forever(self) -> None:
        delay = min(FIRST_RUN_DELAY_S, self.settings.archive_interval_s)
        while True:
            await asyncio.sleep(delay)
            delay = self.settings.archive_interval_s
            try:
                run = await self.run_once()
                # A full batch that made progress: there is probably more, go on at once.
                if run.handled >= self.settings.archive_batch and run.failed < run.handled:
                    delay = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                ARCHIVE_RUNS.labels("failed").inc()
                log.exception("archiver run failed; retrying on the next run")

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        # Two calls (the legs of one call) may name the same file: one upload at a time per key.
        async with self._locks.setdefault(key, asyncio.Lock()):
            yield

    async def _one(self, row: Row[Any], run: ArchiveRun, now: datetime) -> None:
        key = row.s3_key or self.s3.key_for(row.tenant, row.start_time, row.relative_path)
        try:
            async with self._key_lock(key):
                await self._archive(row, key, run, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            run.failed += 1
            reason = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, ArchiveError) else str(exc)
            )
            run.errors[row.call_id] = reason
            ARCHIVE_FILES.labels("failed").inc()
            log.warning("archiver: call %s (%s) not archived: %s", row.call_id, key, reason)
            with contextlib.suppress(Exception):
                await self.repo.failed(row.call_id, reason)

    async def _archive(self, row: Row[Any], key: str, run: ArchiveRun, now: datetime) -> None:
        path = local_file(self.local_root, row.relative_path)
        try:
            digest = await asyncio.to_thread(digest_file, path, self.settings.archive_part_bytes)
        except FileNotFoundError:
            await self._local_missing(row, key, run)
            return
        head = await self.s3.head(key)
        if (
            head is not None
            and row.s3_key is None
            and head.get("Metadata", {}).get("sha256") != digest.sha256
            and not await self._matches(key, head, digest)
        ):
            # Another recording's object (a file of the same name, tenant and day): never
            # overwrite it; this call's copy goes to a key of its own.
            key = own_key(key, row.call_id)
            head = await self.s3.head(key)
        if head is not None and await self._matches(key, head, digest):
            run.already_in_s3 += 1
            ARCHIVE_FILES.labels("already_in_s3").inc()
            await self._abort_stray_uploads(key, keep=None)
        else:
            await self._upload(row, key, path, digest, run)
            head = await self.s3.head(key)
            if head is None or not await self._matches(key, head, digest):
                await self.repo.update(row.call_id, state=PENDING, upload_id=None)
                raise ArchiveError(
                    f"the uploaded object s3://{self.s3.bucket}/{key} does not match the local "
                    "file (size, sha256 or ETag); the local copy is kept"
                )
            run.uploaded += 1
            ARCHIVE_FILES.labels("uploaded").inc()
        await self.repo.update(
            row.call_id,
            state=VERIFIED,
            s3_key=key,
            sha256=digest.sha256,
            size_bytes=digest.size,
            upload_id=None,
            error=None,
            archived_at=now,
        )
        if self.settings.keep_local:
            return
        if await asyncio.to_thread(_remove_if_unchanged, path, digest):
            await self.repo.update(row.call_id, state=LOCAL_REMOVED_STATE)
            run.removed += 1
            LOCAL_REMOVED.inc()
        else:
            # Verified, but the file changed since: leave it; the next run compares again.
            await self.repo.update(row.call_id, state=PENDING)
            raise ArchiveError(f"{path} changed while it was archived; it is kept")

    async def _local_missing(self, row: Row[Any], key: str, run: ArchiveRun) -> None:
        head = await self.s3.head(key)
        if head is None:
            raise ArchiveError(
                f"the recording is neither under the local root ({row.relative_path}) nor in "
                f"s3://{self.s3.bucket}/{key}"
            )
        # Archived already (by another row naming the same file, or a run that crashed after
        # deleting): nothing local is left to remove.
        await self.repo.update(
            row.call_id,
            state=LOCAL_REMOVED_STATE,
            s3_key=key,
            size_bytes=int(head["ContentLength"]),
            sha256=head.get("Metadata", {}).get("sha256"),
            upload_id=None,
            error=None,
        )
        run.already_in_s3 += 1
        ARCHIVE_FILES.labels("already_in_s3").inc()

    async def _matches(self, key: str, head: dict[str, Any], digest: Digest) -> bool:
        if int(head.get("ContentLength", -1)) != digest.size:
            return False
        if head.get("Metadata", {}).get("sha256") != digest.sha256:
            return False
        etag = str(head.get("ETag", "")).strip('"')
        if etag == digest.etag:
            return True
        md5_like = len(etag.split("-")[0]) == 32 and all(
            c in "0123456789abcdef" for c in etag.split("-")[0]
        )
        if md5_like:
            return False
        return await self._read_back_sha256(key) == digest.sha256

    async def _read_back_sha256(self, key: str) -> str:
        resp = await self.s3.client.get_object(Bucket=self.s3.bucket, Key=key)
        sha = hashlib.sha256()
        async with resp["Body"] as body:
            async for chunk in body.iter_chunks(_READ_CHUNK):
                sha.update(chunk)
        return sha.hexdigest()

    async def _upload(
        self, row: Row[Any], key: str, path: Path, digest: Digest, run: ArchiveRun
    ) -> None:
        client, bucket = self.s3.client, self.s3.bucket
        extra = {"Metadata": {"sha256": digest.sha256}, "ContentType": content_type(row.format)}
        if not digest.multipart:
            await self.repo.set_uploading(row.call_id, None, s3_key=key)
            data = await asyncio.to_thread(_read_part, path, 0, digest.size)
            await client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentMD5=_b64(digest.part_md5s[0]), **extra
            )
            run.bytes += len(data)
            ARCHIVE_BYTES.inc(len(data))
            await self._abort_stray_uploads(key, keep=None)
            return
        upload_id = row.upload_id if row.state == UPLOADING else None
        done: dict[int, str] | None = None
        if upload_id:
            done = await self._resumable_parts(key, upload_id, digest)
        if done is None or not upload_id:
            created = await client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
            upload_id = str(created["UploadId"])
            done = {}
        await self.repo.set_uploading(row.call_id, upload_id, s3_key=key)
        if done:
            log.info("archiver: resuming %s with %d part(s) already uploaded", key, len(done))
        parts = []
        for number, md5 in enumerate(digest.part_md5s, start=1):
            if number not in done:
                offset = (number - 1) * digest.part_bytes
                length = min(digest.part_bytes, digest.size - offset)
                data = await asyncio.to_thread(_read_part, path, offset, length)
                if hashlib.md5(data, usedforsecurity=False).digest() != md5:
                    raise ArchiveError(f"{path} changed while it was archived; it is kept")
                resp = await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_b64(md5),
                )
                done[number] = str(resp["ETag"])
                run.bytes += length
                ARCHIVE_BYTES.inc(length)
            parts.append({"ETag": done[number], "PartNumber": number})
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        await self._abort_stray_uploads(key, keep=None)

    async def _resumable_parts(
        self, key: str, upload_id: str, digest: Digest
    ) -> dict[int, str] | None:
        """Parts of the unfinished upload that match the local file; ``None`` when S3 no longer
        knows the upload (completed, aborted or expired)."""
        client, bucket = self.s3.client, self.s3.bucket
        parts: dict[int, str] = {}
        marker = 0
        try:
            while True:
                resp = await client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
                for part in resp.get("Parts", []):
                    number = int(part["PartNumber"])
                    if not 1 <= number <= len(digest.part_md5s):
                        continue
                    expected = min(
                        digest.part_bytes, digest.size - (number - 1) * digest.part_bytes
                    )
                    etag = str(part["ETag"])
                    if (
                        int(part["Size"]) == expected
                        and etag.strip('"') == digest.part_md5s[number - 1].hex()
                    ):
                        parts[number] = etag
                if not resp.get("IsTruncated"):
                    return parts
                marker = int(resp["NextPartNumberMarker"])
        except Exception as exc:
            if is_missing(exc):
                return None
            raise S3Unavailable(f"S3 list parts of {key} failed: {exc}") from exc

    async def _abort_stray_uploads(self, key: str, keep: str | None) -> None:
        """Abort unfinished multipart uploads of exactly this key (left by a crash)."""
        client, bucket = self.s3.client, self.s3.bucket
        try:
            resp = await client.list_multipart_uploads(Bucket=bucket, Prefix=key)
        except Exception:
            log.warning("archiver: could not list multipart uploads of %s", key, exc_info=True)
            return
        for upload in resp.get("Uploads", []):
            if upload.get("Key") == key and upload.get("UploadId") != keep:
                with contextlib.suppress(Exception):
                    await client.abort_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    log.info("archiver: aborted a stray multipart upload of %s", key)


def own_key(key: str, call_id: str) -> str:
    """``key`` with the call id before the file name: the key of a recording whose usual key
    holds another recording."""
    folder, _, name = key.rpartition("/")
    own = f"{key_segment(call_id, 'call')}-{name}"
    return f"{folder}/{own}" if folder else own


def _b64(md5: bytes) -> str:
    return base64.b64encode(md5).decode()
