"""Recordings: streaming throughput of ``GET /v1/recordings/{id}/audio`` from the local root and
from S3 (moto), each against a plain read of the same bytes in the same run (the file read with
``open().read``; the object with one plain ``GetObject``); then the archiver's MB/s against one
plain ``PutObject`` of the same bytes and a plain file copy.

The platform runs all-in-one in a uvicorn subprocess (memory bus, SQLite); the two calls reach the
recording index the real way: FreeSWITCH JSON CDRs posted to ingest, mapped by the parser. moto
runs in this process, so the S3 figures measure cdrflow's overhead over moto more than any S3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, free_port, python, report, save, server
from cdr_parser.freeswitch import map_json
from cdr_recordings.archive import Archiver
from cdr_recordings.repository import RecordingRepository
from cdr_recordings.s3 import S3Tier
from cdr_recordings.service import RecordingsService
from cdr_recordings.settings import RecordingsSettings
from cdrkit.bus import open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.settings import load
from cdrkit.testing.s3 import CREDENTIALS, REGION, MotoS3
from cdrmodel import CDR

MiB = 1024 * 1024
STREAM_BYTES = 64 * MiB
ARCHIVE_FILES = 4
ARCHIVE_BYTES = 24 * MiB  # each: 3 parts of 8 MiB
REPEAT = 3
FIXTURE = ROOT / "tests" / "fixtures" / "freeswitch" / "freeswitch_json_cdr_cgrates_answered.json"
SWITCH_ROOT = "/var/lib/freeswitch/recordings"


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


def _best(fn: Any, nbytes: int) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - started)
        assert got == nbytes, f"read {got} bytes, expected {nbytes}"
    return _mbps(nbytes, statistics.median(times))


def _plain_read(path: Path) -> int:
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(MiB):
            total += len(chunk)
    return total


def _stream(url: str) -> int:
    total = 0
    with httpx.stream("GET", url, timeout=120) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(MiB):
            total += len(chunk)
    return total


def _cdr_doc(call_id: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FIXTURE.read_text())
    doc["variables"] |= {
        "uuid": call_id,
        "domain_name": "bench.example.com",
        "record_path": f"{SWITCH_ROOT}/bench.example.com/archive",
        "record_name": name,
    }
    return doc


def _streaming(work: Path, moto: MotoS3, bucket: str) -> dict[str, float]:
    root = work / "root"
    (root / "bench.example.com" / "archive").mkdir(parents=True)
    data = os.urandom(STREAM_BYTES)
    local_id, s3_id = str(uuid.uuid4()), str(uuid.uuid4())
    local_doc, s3_doc = _cdr_doc(local_id, "local.wav"), _cdr_doc(s3_id, "cold.wav")
    local_file = root / "bench.example.com" / "archive" / "local.wav"
    local_file.write_bytes(data)
    settings = load(RecordingsSettings, s3_bucket=bucket, s3_prefix="recordings", local_root=root)
    s3_cdr = map_json(s3_doc)
    key = S3Tier(settings).key_for(
        s3_cdr.tenant, s3_cdr.start_time, f"bench.example.com/archive/{'cold.wav'}"
    )
    client = moto.client()
    client.put_object(Bucket=bucket, Key=key, Body=data)

    port = free_port()
    env = {
        **CREDENTIALS,
        "CDRFLOW_DATA_DIR": str(work / "data"),
        "CDRFLOW_MOCK_RATE": "0",
        "CDRFLOW_LOG_LEVEL": "WARNING",
        "RECORDINGS_LOCAL_ROOT": str(root),
        # Both fixture calls are years old: local first for every call, so the local call is
        # served without a detour and the S3 call is the fallback (one stat that misses).
        "RECORDINGS_LOCAL_DAYS": "36500",
        "RECORDINGS_S3_BUCKET": bucket,
        "RECORDINGS_S3_ENDPOINT_URL": moto.endpoint_url,
        "RECORDINGS_S3_REGION": REGION,
    }
    args = [python(), "-m", "cdrflow", "run", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with server(args, port, env, log=work / "server.log"):
        for doc in (local_doc, s3_doc):
            r = httpx.post(f"{base}/v1/cdr", json=doc, timeout=30)
            r.raise_for_status()
        for call_id, where in ((local_id, "local"), (s3_id, "s3")):
            deadline = time.monotonic() + 30
            while True:
                meta = httpx.get(f"{base}/v1/recordings/{call_id}", timeout=10)
                if meta.status_code == 200:
                    assert meta.json()["location"] == where, meta.json()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"call {call_id} was not indexed: {meta.text}")
                time.sleep(0.1)
        plain_read = _best(lambda: _plain_read(local_file), STREAM_BYTES)
        plain_get = _best(
            lambda: len(client.get_object(Bucket=bucket, Key=key)["Body"].read()), STREAM_BYTES
        )
        local = _best(lambda: _stream(f"{base}/v1/recordings/{local_id}/audio"), STREAM_BYTES)
        cold = _best(lambda: _stream(f"{base}/v1/recordings/{s3_id}/audio"), STREAM_BYTES)
    return {
        "stream_bytes": STREAM_BYTES,
        "plain_read_mb_s": plain_read,
        "plain_s3_get_mb_s": plain_get,
        "local_stream_mb_s": local,
        "s3_stream_mb_s": cold,
        "local_ratio_to_plain_read": local / plain_read,
        "s3_ratio_to_plain_read": cold / plain_read,
        "s3_ratio_to_plain_get": cold / plain_get,
    }


async def _archiving(work: Path, moto: MotoS3, bucket: str) -> dict[str, float]:
    root = work / "archive-root"
    settings = load(
        RecordingsSettings,
        data_dir=work / "archive-data",
        local_root=root,
        s3_bucket=bucket,
        s3_prefix="archived",
        s3_endpoint_url=moto.endpoint_url,
        s3_region=REGION,
    )
    datas = [os.urandom(ARCHIVE_BYTES) for _ in range(ARCHIVE_FILES)]
    total = ARCHIVE_BYTES * ARCHIVE_FILES
    engine = create_engine(settings.effective_database_url)
    try:
        await migrate(engine, "cdr_recordings.migrations", "alembic_version_recordings")
        repo = RecordingRepository(session_factory(engine), engine.dialect.name)
        s3 = S3Tier(settings)
        await s3.start()
        bus = open_bus("memory://bench-recordings")
        await bus.start()
        try:
            service = RecordingsService(settings, repo, bus.producer, s3)
            start = datetime.now(UTC) - timedelta(days=30)
            rows = []
            for i, data in enumerate(datas):
                path = root / "t" / f"{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                cdr = CDR(
                    call_id=str(uuid.uuid4()),
                    source="freeswitch",
                    tenant="bench",
                    start_time=start,
                    recording_path=f"t/{i}.wav",
                )
                rows.append(service.index_row(cdr))
            await repo.add_batch(rows)
            # The plain limits first, with the same bytes: one PutObject each, a file copy.
            started = time.perf_counter()
            for i, data in enumerate(datas):
                await s3.client.put_object(Bucket=bucket, Key=f"plain/{i}", Body=data)
            plain_put = _mbps(total, time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(ARCHIVE_FILES):
                shutil.copyfile(root / "t" / f"{i}.wav", work / f"copy-{i}.wav")
            plain_copy = _mbps(total, time.perf_counter() - started)
            started = time.perf_counter()
            run = await Archiver(settings, repo, s3).run_once()
            archiver = _mbps(total, time.perf_counter() - started)
            assert (run.uploaded, run.removed, run.failed) == (ARCHIVE_FILES, ARCHIVE_FILES, 0)
        finally:
            await bus.close()
            await s3.close()
    finally:
        await engine.dispose()
    return {
        "archive_bytes": total,
        "archiver_mb_s": archiver,
        "plain_put_mb_s": plain_put,
        "plain_copy_mb_s": plain_copy,
        "archiver_ratio_to_plain_put": archiver / plain_put,
    }


def main() -> dict[str, float]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    moto = MotoS3()
    moto.start()
    try:
        with tempfile.TemporaryDirectory(prefix="cdrflow-bench-recordings-") as tmp:
            work = Path(tmp)
            bucket = moto.create_bucket()
            figures = _streaming(work, moto, bucket)
            figures.update(asyncio.run(_archiving(work, moto, bucket)))
    finally:
        moto.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report(
        "recordings",
        [
            ("streamed file", f"{STREAM_BYTES // MiB} MiB, median of {REPEAT}"),
            ("plain file read (limit)", f"{figures['plain_read_mb_s']:8.0f} MB/s"),
            (
                "GET audio, local root",
                f"{figures['local_stream_mb_s']:8.0f} MB/s = "
                f"{figures['local_ratio_to_plain_read']:.0%} of the plain read",
            ),
            ("plain GetObject from moto (limit)", f"{figures['plain_s3_get_mb_s']:8.0f} MB/s"),
            (
                "GET audio, S3 (streamed through)",
                f"{figures['s3_stream_mb_s']:8.0f} MB/s = "
                f"{figures['s3_ratio_to_plain_get']:.0%} of the plain GetObject, "
                f"{figures['s3_ratio_to_plain_read']:.0%} of the plain read",
            ),
            (
                "archiver",
                f"{figures['archiver_mb_s']:8.0f} MB/s ({ARCHIVE_FILES} x "
                f"{ARCHIVE_BYTES // MiB} MiB: hash, multipart upload, verify, delete)",
            ),
            ("plain PutObject of the same bytes (limit)", f"{figures['plain_put_mb_s']:8.0f} MB/s"),
            ("plain file copy", f"{figures['plain_copy_mb_s']:8.0f} MB/s"),
            ("archiver / plain PutObject", f"{figures['archiver_ratio_to_plain_put']:.0%}"),
        ],
    )
    save("recordings", figures)
    return figures


if __name__ == "__main__":
    main()
