"""Claim check: a payload over the inline maximum travels as ``payload_ref`` + sha256, the parser
fetches and verifies it, and a missing or altered object is a dead letter, never a crash or a loss.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from bench.bench_large import inflate_cdr
from cdr_ingest.documents import Document
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdr_parser.models import raw_payloads
from cdr_parser.rows import stored_payload
from cdrflow.platform import create_allinone_app, create_service_app
from cdrkit.bus import open_bus
from cdrkit.db import create_engine
from cdrkit.objects import open_object_store
from cdrkit.testing.s3 import CREDENTIALS, MotoS3
from cdrmodel import Origin, RawEnvelope, topics
from cdrmodel.envelope import PayloadKind
from tests.e2e.conftest import serving, wait_for
from tests.metrics import sample

TINY_2009 = "freeswitch/freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"  # 11.6 KB
INCOMING = "freeswitch/freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"  # 14.1 KB
JSON_CDR = "freeswitch/freeswitch_json_cdr_cgrates_answered.json"  # 12.7 KB
TINY_CALL = "91353230-461f-11de-aa7f-b10b4edc0c92"


async def _post(client: httpx.AsyncClient, body: bytes, ctype: str) -> str:
    resp = await client.post("/v1/cdr", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    call_id: str = resp.json()["call_id"]
    return call_id


async def _raw_rows(db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(raw_payloads))).all()
    await engine.dispose()
    return {r.call_id: r for r in rows}


@pytest.mark.integration
async def test_a_5mb_cdr_travels_as_a_claim_check_on_kafka_postgres_and_s3(
    fresh_pg_url: str, fresh_tansu: Any, s3_store_url: str, moto_s3: MotoS3, fixtures_dir: Path
) -> None:
    big = inflate_cdr((fixtures_dir / TINY_2009).read_bytes())
    assert len(big) >= 5_000_000
    common = {
        "database_url": fresh_pg_url,
        "bus_url": fresh_tansu.url,
        "object_store_url": s3_store_url,
    }
    ingest, parser = create_service_app("ingest", **common), create_service_app("parser", **common)
    async with serving(ingest) as icli, serving(parser) as pcli:
        call_id = await _post(icli, big, "text/xml")
        assert call_id == TINY_CALL

        async def stored() -> bool:
            return (await pcli.get(f"/v1/cdrs/{call_id}")).status_code == 200

        await wait_for(stored, what="the 5 MB CDR stored", timeout=60)
        cdr = (await pcli.get(f"/v1/cdrs/{call_id}")).json()
        assert cdr["caller_number"] == "1000"
        assert cdr["hangup_cause"] == "ORIGINATOR_CANCEL"
        raw = await pcli.get(f"/v1/cdrs/{call_id}/raw")
        assert raw.status_code == 200
        assert raw.content == big
        assert "cdrflow_ingest_claim_checks_total" in (await icli.get("/metrics")).text

    rows = await _raw_rows(fresh_pg_url)
    assert rows[call_id].payload is None
    assert rows[call_id].payload_lz4 is None
    ref = rows[call_id].payload_ref
    assert ref.startswith(s3_store_url.split("?", maxsplit=1)[0] + "/cdr-raw/")
    # The object really is in S3, byte for byte.
    obj = moto_s3.client().get_object(Bucket=urlsplit(ref).netloc, Key=urlsplit(ref).path[1:])
    assert obj["Body"].read() == big

    # The message on cdr.raw is a small envelope pointing at the object.
    bus = open_bus(fresh_tansu.url)
    await bus.start()
    consumer = await bus.consumer([topics.RAW], f"check-{uuidlib.uuid4().hex}")
    ours: list[bytes] = []
    for _ in range(60):
        for msg in await consumer.getmany(timeout_s=0.5, max_records=1000):
            if RawEnvelope.from_json(msg.value).payload_ref == ref:
                ours.append(msg.value)
        if ours:
            break
    await consumer.close()
    await bus.close()
    assert len(ours) == 1
    envelope = RawEnvelope.from_json(ours[0])
    assert envelope.payload is None
    assert envelope.sha256 == rows[call_id].sha256
    assert len(ours[0]) < 4096


async def test_the_inline_maximum_is_a_setting(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_INLINE_MAX_BYTES", "12000")
    app = create_allinone_app(data_dir=tmp_path, bus_url=f"memory://{uuidlib.uuid4().hex}")
    docs = {
        "inline": ((fixtures_dir / TINY_2009).read_bytes(), "text/xml"),
        "xml_ref": ((fixtures_dir / INCOMING).read_bytes(), "application/xml"),
        "json_ref": ((fixtures_dir / JSON_CDR).read_bytes(), "application/json"),
    }
    checks, check_bytes = (
        sample("cdrflow_ingest_claim_checks_total"),
        sample("cdrflow_ingest_claim_check_bytes_total"),
    )
    async with serving(app) as client:
        ids = {name: await _post(client, body, ctype) for name, (body, ctype) in docs.items()}

        async def stored() -> bool:
            return len((await client.get("/v1/cdrs")).json()["items"]) == 3

        await wait_for(stored, what="3 CDRs stored")
        for name, call_id in ids.items():
            raw = await client.get(f"/v1/cdrs/{call_id}/raw")
            assert raw.content == docs[name][0], name
        assert sample("cdrflow_ingest_claim_checks_total") == checks + 2
        referenced = len(docs["xml_ref"][0]) + len(docs["json_ref"][0])
        assert sample("cdrflow_ingest_claim_check_bytes_total") == check_bytes + referenced

    rows = await _raw_rows(f"sqlite+aiosqlite:///{tmp_path / 'cdrflow.db'}")
    assert stored_payload(rows[ids["inline"]]) == docs["inline"][0].decode()
    assert rows[ids["inline"]].payload_ref is None
    for name in ("xml_ref", "json_ref"):
        row = rows[ids[name]]
        assert row.payload is None
        assert row.payload_lz4 is None
        path = Path(urlsplit(row.payload_ref).path)
        assert path.is_relative_to(tmp_path / "objects" / "cdr-raw")
        assert path.read_bytes() == docs[name][0]  # noqa: ASYNC240


async def test_an_altered_or_missing_object_is_a_dead_letter_with_its_reason(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    common = {
        "data_dir": tmp_path,
        "bus_url": f"memory://{uuidlib.uuid4().hex}",
        "inline_max_bytes": 1024,
    }
    ingest = create_service_app("ingest", **common)
    async with serving(ingest) as client:
        altered = await _post(client, (fixtures_dir / TINY_2009).read_bytes(), "text/xml")
        missing = await _post(client, (fixtures_dir / INCOMING).read_bytes(), "text/xml")
        intact = await _post(client, (fixtures_dir / JSON_CDR).read_bytes(), "application/json")
    objects = sorted((tmp_path / "objects").rglob("*"), key=lambda p: p.stat().st_mtime_ns)
    files = [p for p in objects if p.is_file()]
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes().replace(b"ORIGINATOR_CANCEL", b"NORMAL_CLEARING"))
    files[1].unlink()

    parser = create_service_app("parser", **common)
    async with serving(parser) as client:

        async def settled() -> bool:
            letters = (await client.get("/v1/dead-letters")).json()["items"]
            return len(letters) == 2 and (await client.get(f"/v1/cdrs/{intact}")).is_success

        await wait_for(settled, what="2 dead letters and 1 CDR")
        letters = {d["call_id"]: d for d in (await client.get("/v1/dead-letters")).json()["items"]}
        assert letters[altered]["error"] == "payload_checksum"
        assert "sha256" in letters[altered]["reason"]
        assert "altered" in letters[altered]["reason"]
        assert letters[missing]["error"] == "object_not_found"
        assert "does not exist" in letters[missing]["reason"]
        assert letters[missing]["stage"] == "fetch"
        for call_id in (altered, missing):
            assert (await client.get(f"/v1/cdrs/{call_id}")).status_code == 404
        assert (await client.get("/readyz")).status_code == 200


async def test_an_unreachable_store_pauses_the_parser_and_loses_nothing(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = MotoS3()  # a server of this test's own: it goes down
    s3.start()
    try:
        store_url = s3.store_url(s3.create_bucket())
        bus_url = f"memory://{uuidlib.uuid4().hex}"
        parser = create_service_app(
            "parser", data_dir=tmp_path, bus_url=bus_url, object_store_url=store_url
        )
        async with serving(parser) as client:
            # Ingest's half, by hand, so the object is written while S3 is up and the envelope
            # published once it is down.
            bus = open_bus(bus_url)
            await bus.start()
            settings = IngestSettings(bus_url=bus_url, inline_max_bytes=0)
            async with open_object_store(store_url) as store:
                ingest = IngestService(settings, bus.producer, store=store)
                doc = Document(
                    (fixtures_dir / TINY_2009).read_text(), PayloadKind.FREESWITCH_XML, "text/xml"
                )
                env = await ingest.seal(doc, TINY_CALL, True, Origin())
            assert env.payload_ref is not None
            s3.stop()
            retries = sample("cdrflow_bus_handler_retries_total", group="parser")
            await bus.producer.send(topics.RAW, env.to_json(), key=TINY_CALL.encode())
            await bus.close()

            # The parser retries the batch with backoff meanwhile (each attempt waits out the S3
            # client's own connect retries): at least two failed attempts, nothing stored.
            async def retried() -> bool:
                return sample("cdrflow_bus_handler_retries_total", group="parser") >= retries + 2

            await wait_for(retried, what="the parser retrying the batch", timeout=60)
            assert (await client.get(f"/v1/cdrs/{TINY_CALL}")).status_code == 404
            assert (await client.get("/v1/dead-letters")).json()["items"] == []
            assert (await client.get("/readyz")).status_code == 200  # paused, not stopped

            s3.start()  # same port; moto keeps its objects in this process

            async def stored() -> bool:
                return (await client.get(f"/v1/cdrs/{TINY_CALL}")).status_code == 200

            await wait_for(stored, what="the CDR stored once S3 is back", timeout=60)
            raw = await client.get(f"/v1/cdrs/{TINY_CALL}/raw")
            assert raw.content == (fixtures_dir / TINY_2009).read_bytes()
            assert (await client.get("/v1/dead-letters")).json()["items"] == []
    finally:
        s3.stop()
